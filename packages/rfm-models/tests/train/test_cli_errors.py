"""rfm-train answers --help and user errors with a message and exit status, never a traceback."""

from __future__ import annotations

import pytest

from rfm_models.train.cli import main, presets


def test_help_lists_the_presets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "clip_cxr" in out and "+experiment=" in out
    assert set(presets()) >= {"clip_cxr", "test_clip_cxr", "unicl_cxr", "must_cxr"}


@pytest.mark.parametrize("args", [["+experiment=no_such_preset"], ["train.no_such_field=1"], []])
def test_user_errors_exit_2_naming_the_problem(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("rfm-train: error:") and "presets:" in err
