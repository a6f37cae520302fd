"""SelfDistillationModel through the real trainer on the bundled sample (real CXRs, multi-crop loader):
EMA teacher outside the optimizer, schedules, FLOPs with the teacher, exact resume, export, CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from rfm_data.errors import ConfigError
from rfm_models.export import load_image_encoder
from rfm_models.ssl import (
    CropConfig,
    HeadConfig,
    SelfDistillationConfig,
    SelfDistillationModel,
    build_self_distillation,
    build_ssl_loader,
    load_self_distillation,
    save_self_distillation,
)
from rfm_models.ssl.config import LossConfig
from rfm_models.ssl.vit import tokens
from rfm_models.train import BudgetConfig, CheckpointConfig, OptimizerConfig, ScheduleConfig, TrainConfig, train
from rfm_models.train.cli import main
from rfm_models.train.compute import measure_flops
from rfm_models.train.logging import read_jsonl
from rfm_models.train.runtime import build_optimizer

SIZE = 32


def _config(**kw: Any) -> SelfDistillationConfig:
    values: dict[str, Any] = {"backbone": "test_vit", "image_size": SIZE,
                              "head": HeadConfig(out_dim=64, hidden_dim=32, bottleneck_dim=16),
                              "crops": CropConfig(n_local=2, local_size=16),
                              "loss": LossConfig(teacher_temp_warmup_steps=4)}
    return SelfDistillationConfig(**{**values, **kw})


def _loader(url: str, model: SelfDistillationModel) -> Any:
    return build_ssl_loader(url, model.config, batch_size=8, split=None, buffer_size=32)


def _cfg(out: Path, steps: int, total: int = 8) -> TrainConfig:
    return TrainConfig(output_dir=str(out), optimizer=OptimizerConfig(lr=1e-3),
                       schedule=ScheduleConfig(warmup_steps=2, total_steps=total), budget=BudgetConfig(max_steps=steps),
                       checkpoint=CheckpointConfig(every_steps=2), deterministic=True, log_every=1, progress=False,
                       tensorboard=False)


def _losses(out: Path) -> list[float]:
    return [r["loss"] for r in read_jsonl(str(out / "metrics.jsonl"))]


def test_teacher_is_outside_the_optimizer_and_follows_the_student_by_ema(sample_dataset: str) -> None:
    model = build_self_distillation(_config())
    opt = build_optimizer(model, OptimizerConfig(), fused=False)
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert not any(id(p) in in_opt for p in [*model.teacher.parameters(), *model.teacher_head.parameters()])
    batch = next(iter(_loader(sample_dataset, model)))
    out = model(batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and out["ibot_loss"] > 0 and out["dino_loss"] > 0
    assert all(p.grad is None for p in model.teacher.parameters())
    assert model.mask_token.grad is not None
    t0 = model.teacher.model.pos_embed.detach().clone()
    opt.step()
    s1 = model.student.model.pos_embed.detach().clone()
    model.after_optimizer_step(1, 8, opt)
    m = model.momentum(1, 8)
    assert torch.allclose(model.teacher.model.pos_embed, m * t0 + (1 - m) * s1, atol=1e-6)
    assert int(model.steps_done) == 1
    assert opt.param_groups[0]["weight_decay"] == pytest.approx(0.04 + (0.2 - 0.04) * (1 - (1 + 0.9238795) / 2),
                                                               rel=1e-4)
    assert opt.param_groups[1]["weight_decay"] == 0.0  # biases and norms stay undecayed


def test_trains_through_train_and_counts_the_teacher_flops(sample_dataset: str, tmp_path: Path) -> None:
    model = build_self_distillation(_config())
    result = train(_cfg(tmp_path, 6), model, _loader(sample_dataset, model))
    assert result.step == 6 and int(model.steps_done) == 6 and len(_losses(tmp_path)) == 6
    batch = next(iter(_loader(sample_dataset, model)))
    globals_ = batch["global_crops"].flatten(0, 1)
    with torch.no_grad():
        _, teacher_flops = measure_flops(lambda: tokens(model.teacher.model, globals_))
    per_sample_teacher = teacher_flops / batch["global_crops"].shape[0]
    # student forward + backward (~3x a forward) on the same global crops, plus locals, plus the teacher
    assert result.counters.train_flops_per_sample > 3.5 * per_sample_teacher
    student = {k: v for k, v in model.student.state_dict().items()}
    teacher = model.teacher.state_dict()
    assert any(not torch.equal(student[k], teacher[k]) for k in student)  # EMA lags behind the student


def test_resume_continues_the_losses_teacher_and_centre_exactly(sample_dataset: str, tmp_path: Path) -> None:
    full_model = build_self_distillation(_config())
    train(_cfg(tmp_path / "full", 6), full_model, _loader(sample_dataset, full_model))
    cut_model = build_self_distillation(_config())
    train(_cfg(tmp_path / "cut", 3), cut_model, _loader(sample_dataset, cut_model))
    resumed = build_self_distillation(_config(), seed=7)  # another init: the checkpoint must win
    result = train(_cfg(tmp_path / "cut", 6), resumed, _loader(sample_dataset, resumed))
    assert result.resumed_from_step == 3
    assert _losses(tmp_path / "cut") == _losses(tmp_path / "full")
    for name, tensor in full_model.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name  # teacher, centres, step counter


def test_export_round_trip_gives_the_teacher_as_image_encoder(sample_dataset: str, tmp_path: Path) -> None:
    model = build_self_distillation(_config())
    train(_cfg(tmp_path / "run", 2), model, _loader(sample_dataset, model))
    save_self_distillation(model, str(tmp_path / "export"))
    again = load_self_distillation(str(tmp_path / "export"))
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())
    encoder = load_image_encoder(str(tmp_path / "export"))
    x = torch.randn(3, 1, SIZE, SIZE)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(encoder(x), model.teacher(x), atol=1e-6)
        assert not torch.allclose(encoder(x), model.student(x), atol=1e-4)


def test_non_vit_backbone_is_refused_with_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"not a ViT.*vit_small"):
        build_self_distillation(_config(backbone="test_resnet"))
    with pytest.raises(ConfigError, match="mask_ratio"):
        build_self_distillation(_config(loss=LossConfig(mask_ratio=[0.6, 0.2])))


def test_cli_trains_and_exports_a_self_distillation_model(sample_dataset: str, tmp_path: Path) -> None:
    args = ["+experiment=test_dino_cxr", f"data.url={sample_dataset}", "data.split=null",
            f"train.output_dir={tmp_path}", "train.budget.max_steps=3", "train.tensorboard=false"]
    assert main(args) == 0
    assert "model_kind: self_distillation" in (tmp_path / "config.yaml").read_text()
    assert len(_losses(tmp_path)) == 3
    assert load_image_encoder(str(tmp_path / "model")).out_dim == 32


def test_cli_refuses_an_unknown_model_kind(sample_dataset: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    args = ["+experiment=test_dino_cxr", f"data.url={sample_dataset}", f"train.output_dir={tmp_path}",
            "model_kind=dino"]
    assert main(args) == 2
    assert "self_distillation" in capsys.readouterr().err
