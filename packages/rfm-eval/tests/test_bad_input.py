"""Bad input gives a clear message (ConfigError; exit code 2 from the CLI), never a traceback."""

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from rfm_data.errors import ConfigError
from rfm_eval.cli import main
from rfm_eval.evaluate import EvalConfig, evaluate
from rfm_eval.handle import open_model


def test_missing_model_files_are_named(tiny_model_dir: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        open_model(str(tmp_path / "nowhere"))
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match=r"no model\.safetensors"):
        open_model(str(broken))
    (broken / "config.json").unlink()
    with pytest.raises(ConfigError, match=r"no config\.json"):
        open_model(str(broken))


def test_cli_reports_user_errors_with_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", str(tmp_path / "nowhere"), "--dataset", str(tmp_path), "--out", str(tmp_path / "o")])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["compare", str(tmp_path), "--out", str(tmp_path / "c")]) == 2


def test_unknown_task_and_dataset_are_named(quick_config: Callable[..., EvalConfig],
        tiny_model_dir: str, sample_dataset: str, tmp_path: Path) -> None:
    with pytest.raises(KeyError, match=r"known: .*zeroshot"):
        evaluate(tiny_model_dir, sample_dataset, str(tmp_path / "a"), quick_config(tasks=["zero_shot"]))
    with pytest.raises(ConfigError, match=r"no dataset\.json"):
        evaluate(tiny_model_dir, str(tmp_path / "missing"), str(tmp_path / "b"), quick_config())


def test_cli_lists_registries(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "linear_probe" in out and "pediatric_pneumonia_kermany" in out and "quick" in out
