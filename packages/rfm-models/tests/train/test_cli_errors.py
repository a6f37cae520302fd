"""rfm-train answers --help and user errors with a message and exit status, never a traceback; every preset
composes into configs that validate."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from rfm_models.model import ModelConfig
from rfm_models.train.cli import compose, main, presets
from rfm_models.train.config import train_config_from_dict


def test_help_lists_the_presets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "clip_cxr" in out and "+experiment=" in out
    assert set(presets()) >= {"clip_cxr", "test_clip_cxr", "unicl_cxr", "must_cxr", "study_clip_cxr",
                              "study_clip_cxr_chexficient"}
    assert "study_clip_cxr_chexficient" in out


@pytest.mark.parametrize("preset", presets())
def test_every_preset_composes_into_valid_configs(preset: str) -> None:
    container = OmegaConf.to_container(compose([f"+experiment={preset}", "data.url=memory://unused"]), resolve=True)
    assert isinstance(container, dict)
    train_config_from_dict(container["train"]).validate()
    ModelConfig.from_dict(container["model"])


def test_study_presets_lock_the_text_tower_and_differ_only_by_the_selector() -> None:
    plain, online = (OmegaConf.to_container(compose([f"+experiment={name}", "data.url=memory://unused"]))
                     for name in ("study_clip_cxr", "study_clip_cxr_chexficient"))
    assert isinstance(plain, dict) and isinstance(online, dict)
    assert plain["model"]["freeze_text"] is True and plain["selector"]["name"] is None
    assert online["selector"]["name"] == "prototype"
    assert {k: v for k, v in online.items() if k != "selector"} == {k: v for k, v in plain.items() if k != "selector"}


@pytest.mark.parametrize("args", [["+experiment=no_such_preset"], ["train.no_such_field=1"], []])
def test_user_errors_exit_2_naming_the_problem(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("rfm-train: error:") and "presets:" in err
