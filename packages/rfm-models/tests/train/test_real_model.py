"""Integration: VisionLanguageModel through the trainer on the bundled sample as `rfm-data ingest` writes it
(CXRs with clinical notes and label-only CXRs, streamed by ShardLoader with cxr_train_transform and the
model's collator): training, exact resume, online selection (PrototypeSelector), export round trip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rfm_curation.selectors import Phase, create_selector
from rfm_data.loader import ShardDataset, ShardLoader, StreamingShardDataset
from rfm_data.transforms import cxr_eval_transform, cxr_train_transform
from rfm_models.export import load_pretrained, save_pretrained
from rfm_models.model import ModelConfig, VisionLanguageModel, build_model
from rfm_models.train import BudgetConfig, CheckpointConfig, ScheduleConfig, TrainConfig, iter_metrics, train
from rfm_models.train.config import OptimizerConfig
from rfm_models.train.logging import kept_ids_file, read_jsonl

SIZE = 32


def _model(seed: int = 0, objective: str = "clip") -> VisionLanguageModel:
    config = ModelConfig(image_encoder="test_vit", text_encoder="test_bert", embed_dim=16, objective=objective,
                         image_size=SIZE)
    return build_model(config, seed=seed)


def _loader(url: str, model: VisionLanguageModel, batch_size: int = 16) -> ShardLoader:
    ds = StreamingShardDataset(url, transform=cxr_train_transform(SIZE), seed=0, split=None, buffer_size=64)
    return ShardLoader(ds, batch_size=batch_size, collate_fn=model.collator(), drop_last=True)


def _cfg(out: Path, steps: int, total: int | None = None, **kw: Any) -> TrainConfig:
    return TrainConfig(output_dir=str(out), optimizer=OptimizerConfig(lr=3e-3),
                       schedule=ScheduleConfig(warmup_steps=2, total_steps=total or steps),
                       budget=BudgetConfig(max_steps=steps), checkpoint=CheckpointConfig(every_steps=3),
                       deterministic=True, log_every=1, progress=False, tensorboard=False, **kw)


def _losses(out: Path) -> list[float]:
    return [r["loss"] for r in iter_metrics(str(out))]


@pytest.mark.parametrize("objective", ["clip", "unicl", "must"])
def test_the_real_model_learns_through_train(sample_dataset: str, tmp_path: Path, objective: str) -> None:
    model = _model(objective=objective)
    result = train(_cfg(tmp_path, steps=24), model, _loader(sample_dataset, model))
    losses = _losses(tmp_path)
    assert result.step == 24 and len(losses) == 24
    assert np.mean(losses[-6:]) < np.mean(losses[:6]) - 0.05
    assert result.counters.train_flops_per_sample > 0


def test_resume_with_the_real_model_equals_an_uninterrupted_run(sample_dataset: str, tmp_path: Path) -> None:
    full = tmp_path / "full"
    model = _model()
    train(_cfg(full, steps=8), model, _loader(sample_dataset, model))
    cut = tmp_path / "cut"
    model = _model()
    # Cut mid-epoch (3 batches per epoch). KNOWN BUG: a cut right after an epoch's last full batch, when
    # drop_last left a remainder (63 = 3 x 16 + 15), resumes into an "empty" epoch (EmptyDatasetError).
    train(_cfg(cut, steps=5, total=8), model, _loader(sample_dataset, model))
    model = _model(seed=5)  # another initialisation: the checkpoint must win
    resumed = train(_cfg(cut, steps=8), model, _loader(sample_dataset, model))
    assert resumed.resumed_from_step == 5
    assert _losses(cut) == _losses(full)


def test_online_selection_with_prototype_selector(sample_dataset: str, tmp_path: Path) -> None:
    model = _model()
    loader = _loader(sample_dataset, model)
    epoch = len(loader) * 16
    selector = create_selector("prototype", n_prototypes=2, epoch_size=epoch, warmup_samples=16, ratio=0.3,
                               seed=0)
    result = train(_cfg(tmp_path, steps=9), model, loader, selector)
    assert selector.phase is Phase.FIXED and result.epoch == 3
    subset = set(selector.subset().tolist())
    logged = read_jsonl(str(tmp_path / kept_ids_file(0)))
    assert [r["step"] for r in logged] == [1, 2, 3]  # selection during the first epoch only
    assert {i for r in logged for i in r["ids"]} == subset
    assert 16 <= len(subset) < epoch
    assert result.counters.scored_samples == epoch
    assert result.counters.kept_samples < result.counters.samples


def test_exported_model_gives_identical_embeddings(sample_dataset: str, tmp_path: Path) -> None:
    model = _model()
    train(_cfg(tmp_path, steps=3), model, _loader(sample_dataset, model))
    save_pretrained(model, str(tmp_path / "model"))
    loaded = load_pretrained(str(tmp_path / "model"))
    model.eval()
    ds = ShardDataset(sample_dataset, transform=cxr_eval_transform(SIZE))
    images = torch.stack([ds[i]["image"] for i in range(8)])
    texts = [str(ds[i]["report"]) or "chest x-ray with no finding" for i in range(8)]
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_image(images), model.encode_image(images), rtol=0, atol=0)
        torch.testing.assert_close(loaded.encode_text(texts), model.encode_text(texts), rtol=0, atol=0)
