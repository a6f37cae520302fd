"""Fixtures of rfm-eval's tests: a tiny vision-language model directory (test_vit + test_bert, 32 px) and its
evaluation on the bundled sample (``sample_dataset`` comes from the repository's root conftest)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from rfm_eval.evaluate import EvalConfig, EvalResult, evaluate
from rfm_models.export import save_pretrained
from rfm_models.model import ModelConfig, build_model

OBSERVATIONS = ["No Finding", "Pneumonia", "Bacterial", "Viral", "COVID-19"]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A saved test_vit + test_bert CLIP model (fresh weights from seed 1: evaluation is what is tested)."""
    cfg = ModelConfig(image_encoder="test_vit", text_encoder="test_bert", embed_dim=16, image_size=32,
                      observations=list(OBSERVATIONS))
    directory = str(tmp_path_factory.mktemp("model") / "tiny")
    save_pretrained(build_model(cfg, seed=1), directory)
    return directory


def _quick_config(**overrides: object) -> EvalConfig:
    """A fast quick-suite config for tests (val split: the sample's test split has no reports)."""
    base: dict[str, object] = {"suite": "quick", "split": "val", "n_boot": 30, "batch_size": 16, "progress": False,
                               "benchmark": "sample"}
    base.update(overrides)
    return EvalConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def quick_config() -> Callable[..., EvalConfig]:
    """``quick_config(**overrides)``: a fast quick-suite EvalConfig for tests."""
    return _quick_config


@pytest.fixture(scope="session")
def sample_run(tiny_model_dir: str, sample_dataset: str, tmp_path_factory: pytest.TempPathFactory) -> EvalResult:
    """The quick suite of the tiny model on the sample, written to a temporary folder."""
    out = str(tmp_path_factory.mktemp("runs") / "tiny")
    return evaluate(tiny_model_dir, sample_dataset, out, _quick_config(cache_dir=str(Path(out).parent / "cache")))
