"""The ``segmentation`` task through rfm-eval's task registry and runner, on a real exported model dir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("monai", reason="segmentation needs the rfm-eval[segmentation] extra (MONAI)")

from rfm_data.errors import ConfigError
from rfm_eval.handle import open_model
from rfm_eval.protocol import Protocol
from rfm_eval.tasks import TaskContext, TaskStatus, run_task, tasks
from rfm_models.export import save_pretrained
from rfm_models.model import ModelConfig, build_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    config = ModelConfig(image_encoder="test_resnet", text_encoder="test_bert", embed_dim=16, image_size=64)
    directory = str(tmp_path_factory.mktemp("model"))
    save_pretrained(build_model(config, seed=0), directory)
    return directory


def test_segmentation_task_runs_through_registry(model_dir: str, shared_data: Path, tmp_path: Path) -> None:
    root = shared_data / "covid_chestxray_ieee8023"
    if not root.exists():
        pytest.skip("covid_chestxray_ieee8023 not available")
    task = tasks.create("segmentation", data_root=str(root), image_size=64, epochs=2, max_train=16, max_eval=8,
                        width=8)
    ctx = TaskContext(model=open_model(model_dir), dataset="", split="test", train_split="train",
                      protocol=Protocol(observations=("Pneumonia",)), out=str(tmp_path),
                      features=lambda split: pytest.fail("segmentation must not use cached features"))
    result = run_task(task, ctx, n_boot=100)
    assert result.status is TaskStatus.OK and result.n == 8
    dice = result.headline["dice_lungs"]
    assert 0.0 < dice.value <= 1.0 and dice.low <= dice.value <= dice.high
    assert result.headline["hd95_lungs"].value > 0
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["details"]["config"]["eval_split"] == "test"
    assert (tmp_path / "overlays.png").stat().st_size > 0


def test_segmentation_task_rejects_bad_options(shared_data: Path) -> None:
    with pytest.raises(ConfigError, match="data_root"):
        tasks.create("segmentation")
    with pytest.raises(ConfigError, match="unknown source"):
        tasks.create("segmentation", data_root="x", source="ranzcr_tubes")
    with pytest.raises(ConfigError, match=r"does not take.*learning_rate"):
        tasks.create("segmentation", data_root="x", learning_rate=0.1)
