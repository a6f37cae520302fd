"""The equal-compute budget ``train.budget.flops_of_steps``: a run stops once its counted FLOPs reach what that
many plain optimizer steps cost, so online selection (which scores every sample and trains on a part of each
batch) takes more steps for the same compute. Real model, real CXRs and reports, the real CheXficient preset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rfm_models.model import ModelConfig, build_model
from rfm_models.train import TrainConfig, train
from rfm_models.train.cli import main
from rfm_models.train.config import BudgetConfig, OptimizerConfig, ScheduleConfig
from rfm_models.train.logging import read_jsonl

BATCH = 16


def _cli_args(data: str, out: Path, steps_of_compute: int | str) -> list[str]:
    args = {"+experiment": "test_clip_cxr_chexficient", "data.url": data, "data.split": "null",
            "data.batch_size": str(BATCH), "train.output_dir": str(out), "train.budget.max_epochs": "null",
            "train.budget.max_steps": "400", "train.budget.flops_of_steps": str(steps_of_compute),
            "train.schedule.total_steps": "40", "train.log_every": "1", "train.deterministic": "true",
            "train.tensorboard": "false", "train.progress": "false"}
    return [f"{k}={v}" for k, v in args.items()]


def _plain_steps_cost(record: dict[str, Any], steps: int) -> float:
    """What ``steps`` plain steps cost at the mean measured training FLOPs per sample of ``record``."""
    return steps * BATCH * record["train_flops"] / record["kept_samples"]


def test_a_plain_run_stops_after_exactly_that_many_steps(cxr_dataset: str, make_loader: Any, tmp_path: Path) -> None:
    model = build_model(ModelConfig(image_encoder="test_vit", text_encoder="test_bert", embed_dim=16, image_size=32))
    cfg = TrainConfig(output_dir=str(tmp_path), optimizer=OptimizerConfig(lr=3e-3),
                      schedule=ScheduleConfig(total_steps=20), budget=BudgetConfig(max_steps=20, flops_of_steps=5),
                      progress=False, tensorboard=False)
    result = train(cfg, model, make_loader(cxr_dataset))
    assert (result.step, result.stop_reason) == (5, "flops_of_steps")
    assert result.counters.flops == pytest.approx(result.counters.train_flops)  # no scoring pass


def test_online_selection_takes_more_steps_for_the_same_compute(cxr_dataset: str, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    k = 6
    assert main(_cli_args(cxr_dataset, tmp_path, k)) == 0
    assert "by flops_of_steps" in capsys.readouterr().out
    records = read_jsonl(str(tmp_path / "metrics.jsonl"))
    before, last = records[-2], records[-1]
    assert last["steps"] > k and last["scored_samples"] > 0 and last["kept_samples"] < last["samples"]
    target = _plain_steps_cost(last, k)
    # It stopped at the first step that reached the budget: within one step's cost of it.
    assert before["flops"] < _plain_steps_cost(before, k)
    assert target <= last["flops"] < target + (last["flops"] - before["flops"])


def test_flops_of_steps_below_one_is_refused_by_name(cxr_dataset: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_cli_args(cxr_dataset, tmp_path, 0)) == 2
    assert "budget.flops_of_steps must be >= 1" in capsys.readouterr().err


def test_the_lr_schedule_follows_the_flops_spent(cxr_dataset: str, tmp_path: Path) -> None:
    """Without schedule.total_steps the cosine horizon is the FLOP budget: the LR has decayed to its floor when
    the FLOPs run out, however many optimizer steps that took (a 400-step cap would leave it near its peak)."""
    k = 6
    args = [a for a in _cli_args(cxr_dataset, tmp_path, k) if not a.startswith("train.schedule.total_steps")]
    assert main([*args, "train.schedule.warmup_steps=1", "train.optimizer.lr=1e-3"]) == 0
    records = read_jsonl(str(tmp_path / "metrics.jsonl"))
    assert records[-1]["steps"] > k and records[-1]["lr"] < 0.05 * 1e-3
    lrs = [r["lr"] for r in records]
    assert lrs == sorted(lrs, reverse=True)  # after the one warm-up step: cosine decay all the way
