"""The trainer on the real model (VisionLanguageModel, test-size encoders) and real data (CXRs + clinical
notes): training, accounting, budgets, logs, checkpoints and their validation, online selection."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rfm_curation.selectors import Phase, create_selector
from rfm_models.model import ModelConfig, VisionLanguageModel, build_model
from rfm_models.train import EmptyDatasetError, TrainConfig, iter_metrics, train
from rfm_models.train import checkpoint as ckpt
from rfm_models.train.config import BudgetConfig, CheckpointConfig, OptimizerConfig, ScheduleConfig
from rfm_models.train.logging import kept_ids_file, read_jsonl


def _cfg(out: Path, **kw: Any) -> TrainConfig:
    base: dict[str, Any] = {
        "output_dir": str(out), "optimizer": OptimizerConfig(lr=3e-3), "schedule": ScheduleConfig(warmup_steps=2),
        "budget": BudgetConfig(max_steps=12), "checkpoint": CheckpointConfig(every_steps=4, keep_last=3),
        "deterministic": True, "log_every": 1, "progress": False, "tensorboard": False,
    }
    base.update(kw)
    return TrainConfig(**base)


def _model(seed: int = 0) -> VisionLanguageModel:
    config = ModelConfig(image_encoder="test_vit", text_encoder="test_bert", embed_dim=16, image_size=32)
    return build_model(config, seed=seed)


def _losses(out: Path) -> list[float]:
    return [r["loss"] for r in iter_metrics(str(out))]


def test_trains_accounts_and_logs(cxr_dataset: str, make_loader: Any, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, budget=BudgetConfig(max_steps=30), tensorboard=True)
    result = train(cfg, _model(), make_loader(cxr_dataset))
    assert (result.step, result.stop_reason) == (30, "max_steps")
    losses = _losses(tmp_path)
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < np.mean(losses[:5])  # a real model learns on real pairs
    c = result.counters
    assert c.samples == 30 * 16 == c.kept_samples  # drop_last: every batch is full
    assert c.train_flops_per_sample > 0
    assert c.flops == pytest.approx(c.train_flops_per_sample * c.kept_samples)
    assert c.epochs_completed == result.epoch == 5  # 96 samples / 16 = 6 steps per epoch
    assert 0 < c.device_s <= c.wall_s
    last = json.loads((tmp_path / "checkpoints" / "step-000000030" / "trainer.json").read_text())
    assert last["counters"]["flops"] == c.flops and last["step"] == 30
    assert list(iter_metrics(str(tmp_path)))[-1]["flops"] == c.flops
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert json.loads((tmp_path / "train_config.json").read_text())["budget"]["max_steps"] == 30
    kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert kept == ["latest", "step-000000024", "step-000000028", "step-000000030"]


def test_flops_per_sample_is_the_flop_counter_of_fwd_and_bwd(cxr_dataset: str, make_loader: Any,
                                                             tmp_path: Path) -> None:
    result = train(_cfg(tmp_path, budget=BudgetConfig(max_steps=1)), _model(), make_loader(cxr_dataset))
    model = _model()
    batch = next(iter(make_loader(cxr_dataset)))
    with torch.utils.flop_counter.FlopCounterMode(display=False) as fc:
        model(batch)["loss"].backward()
    assert result.counters.train_flops_per_sample * 16 == pytest.approx(fc.get_total_flops())


@pytest.mark.parametrize(("budget", "reason"), [(BudgetConfig(max_samples=40), "max_samples"),
                                                (BudgetConfig(max_epochs=1), "max_epochs")])
def test_budgets_stop_the_run(cxr_dataset: str, make_loader: Any, tmp_path: Path, budget: BudgetConfig,
                              reason: str) -> None:
    cfg = _cfg(tmp_path, budget=budget, schedule=ScheduleConfig(total_steps=10))
    result = train(cfg, _model(), make_loader(cxr_dataset))
    assert result.stop_reason == reason
    assert result.step == (3 if reason == "max_samples" else 6)


def test_flops_budget(cxr_dataset: str, make_loader: Any, tmp_path: Path) -> None:
    probe = train(_cfg(tmp_path / "probe", budget=BudgetConfig(max_steps=1)), _model(), make_loader(cxr_dataset))
    per_step = probe.counters.flops
    cfg = _cfg(tmp_path / "run", budget=BudgetConfig(max_flops=4.5 * per_step), schedule=ScheduleConfig(total_steps=9))
    result = train(cfg, _model(), make_loader(cxr_dataset))
    assert (result.step, result.stop_reason) == (5, "max_flops")


def test_accumulation_counts_micro_batches(cxr_dataset: str, make_loader: Any, tmp_path: Path) -> None:
    result = train(_cfg(tmp_path, accumulation_steps=2, budget=BudgetConfig(max_steps=4)), _model(),
                   make_loader(cxr_dataset, batch_size=8))
    assert result.counters.samples == 4 * 2 * 8
    assert all(r["micro_batches"] == 2 for r in iter_metrics(str(tmp_path)))


def test_gradient_checkpointing_gives_the_same_losses(cxr_dataset: str, make_loader: Any, tmp_path: Path) -> None:
    plain = train(_cfg(tmp_path / "a", budget=BudgetConfig(max_steps=4)), _model(), make_loader(cxr_dataset))
    gc = train(_cfg(tmp_path / "b", budget=BudgetConfig(max_steps=4), gradient_checkpointing=True), _model(),
               make_loader(cxr_dataset))
    assert _losses(tmp_path / "a") == pytest.approx(_losses(tmp_path / "b"), rel=1e-6)
    assert plain.last_loss == pytest.approx(gc.last_loss, rel=1e-6)


def test_resume_in_process_continues_exactly(cxr_dataset: str, make_loader: Any, tmp_path: Path) -> None:
    full = tmp_path / "full"
    train(_cfg(full, budget=BudgetConfig(max_steps=10), schedule=ScheduleConfig(total_steps=10)), _model(),
          make_loader(cxr_dataset))
    cut = tmp_path / "cut"
    train(_cfg(cut, budget=BudgetConfig(max_steps=7), schedule=ScheduleConfig(total_steps=10)), _model(),
          make_loader(cxr_dataset))
    resumed = train(_cfg(cut, budget=BudgetConfig(max_steps=10), schedule=ScheduleConfig(total_steps=10)),
                    _model(seed=123), make_loader(cxr_dataset))  # other init: the checkpoint must win
    assert resumed.resumed_from_step == 7
    assert _losses(cut) == _losses(full)


def test_corrupt_latest_checkpoint_falls_back_to_the_previous(cxr_dataset: str, make_loader: Any,
                                                              tmp_path: Path) -> None:
    train(_cfg(tmp_path, budget=BudgetConfig(max_steps=8)), _model(), make_loader(cxr_dataset))
    weights = tmp_path / "checkpoints" / "step-000000008" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF  # one flipped bit of one weight: same size, different hash
    weights.write_bytes(bytes(data))
    with pytest.warns(ckpt.CheckpointWarning, match=r"step-000000008 is unusable \(model.safetensors is corrupt"):
        found = ckpt.load_latest(str(tmp_path))
    assert found is not None and found.step == 4
    (tmp_path / "checkpoints" / "step-000000004" / "trainer.json").unlink()  # a partial (uncommitted) one
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train(_cfg(tmp_path, budget=BudgetConfig(max_steps=10)), _model(), make_loader(cxr_dataset))
    assert len([w for w in caught if issubclass(w.category, ckpt.CheckpointWarning)]) == 2
    assert result.resumed_from_step is None and result.step == 10  # nothing valid left: starts afresh


def test_online_selection_chexficient_schedule(cxr_dataset: str, make_loader: Any, tmp_path: Path) -> None:
    loader = make_loader(cxr_dataset, batch_size=32)
    selector = create_selector("prototype", n_prototypes=2, epoch_size=96, warmup_samples=32, ratio=0.2, seed=0)
    result = train(_cfg(tmp_path, budget=BudgetConfig(max_epochs=3), schedule=ScheduleConfig(total_steps=9)),
                   _model(), loader, selector)
    assert selector.phase is Phase.FIXED
    subset = set(selector.subset().tolist())
    logged = read_jsonl(str(tmp_path / kept_ids_file(0)))
    assert [r["step"] for r in logged] == [1, 2, 3]  # selection during the first epoch only
    assert len(logged[0]["ids"]) == 32  # the warm-up batch is kept whole
    assert {i for r in logged for i in r["ids"]} == subset
    c = result.counters
    assert c.scored_samples == 96 and c.samples == 3 * 96
    assert c.kept_samples == 32 + len(logged[1]["ids"]) + len(logged[2]["ids"]) + 2 * len(subset)
    assert len(subset) < 96
    records = list(iter_metrics(str(tmp_path)))
    assert [r["phase"] for r in records][-1] == "fixed"
    # FLOPs: scoring forwards for epoch 1 plus fwd+bwd on kept samples only.
    expected = c.score_flops_per_sample * 96 + c.train_flops_per_sample * c.kept_samples
    assert c.flops == pytest.approx(expected)


class _LossThresholdSelector:
    """A minimal real selector: keeps samples whose loss exceeds ``threshold``; the subset fixes after epoch 1."""

    def __init__(self, threshold: float) -> None:
        self.threshold, self._phase, self._kept = threshold, Phase.SELECTING, dict[Any, None]()

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def kept_ids(self) -> list[Any]:
        return list(self._kept)

    def select(self, ids: Any, embeddings: Any = None, losses: Any = None) -> Any:
        keep = np.asarray(losses) > self.threshold
        self._kept.update(dict.fromkeys(i for i, k in zip(ids, keep, strict=True) if k))
        return keep

    def end_epoch(self) -> None:
        self._phase = Phase.FIXED

    def subset(self) -> Any:
        return np.sort(np.asarray(list(self._kept), dtype=object))

    def state_dict(self) -> dict[str, Any]:
        return {"phase": self._phase.value, "kept": list(self._kept)}

    def load_state_dict(self, state: Any) -> None:
        self._phase, self._kept = Phase(state["phase"]), dict.fromkeys(state["kept"])


def test_selection_that_keeps_nothing_stops_with_a_clear_message(cxr_dataset: str, make_loader: Any,
                                                                 tmp_path: Path) -> None:
    with pytest.raises(EmptyDatasetError, match="online selection kept no sample"):
        train(_cfg(tmp_path, budget=BudgetConfig(max_epochs=3), schedule=ScheduleConfig(total_steps=9)),
              _model(), make_loader(cxr_dataset), _LossThresholdSelector(threshold=1e9))


def test_flops_are_measured_per_input_shape() -> None:
    # Text batches are padded to their longest report, so two batches of one run can differ in cost: each
    # shape is measured on its own, and a repeated shape reuses its figure without counting again.
    from rfm_models.train.compute import PerShapeFlops

    layer = torch.nn.Linear(8, 8)
    flops = PerShapeFlops()
    short, long = {"x": torch.ones(4, 3, 8)}, {"x": torch.ones(4, 6, 8)}
    _, a = flops.run(short, lambda: layer(short["x"]).sum().backward(), 4)
    _, b = flops.run(long, lambda: layer(long["x"]).sum().backward(), 4)
    _, again = flops.run(short, lambda: None, 4)
    assert a > 0 and b == 2 * a and again == a
