"""Continual pretraining: from an rfm-self-distillation export (heads included, other resolution), from a
backbone-only checkpoint (heads=load refused with the choices, heads=reinit works), and the head warm-up."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from rfm_data.errors import ConfigError
from rfm_models.ssl import (
    ContinualConfig,
    CropConfig,
    HeadConfig,
    HeadInit,
    SelfDistillationConfig,
    build_self_distillation,
    build_ssl_loader,
    save_self_distillation,
)
from rfm_models.train.config import OptimizerConfig
from rfm_models.train.runtime import build_optimizer


def _config(size: int = 32, continual: ContinualConfig | None = None) -> SelfDistillationConfig:
    return SelfDistillationConfig(backbone="test_vit", image_size=size,
                                  head=HeadConfig(out_dim=64, hidden_dim=32, bottleneck_dim=16),
                                  crops=CropConfig(n_local=2, local_size=16),
                                  continual=continual or ContinualConfig())


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, torch.Tensor]]:
    """An exported model whose teacher differs from a fresh init (seed 5), and its state."""
    model = build_self_distillation(_config(), seed=5)
    with torch.no_grad():
        for p in [*model.teacher.parameters(), *model.teacher_head.parameters()]:
            p.add_(0.01)
    url = str(tmp_path_factory.mktemp("ssl-export") / "model")
    save_self_distillation(model, url)
    return url, model.state_dict()


def test_load_backbone_and_heads_at_a_new_resolution(source: tuple[str, dict[str, torch.Tensor]]) -> None:
    url, state = source
    model = build_self_distillation(_config(48, ContinualConfig(init_from=url)), seed=0)
    assert model.student.model.pos_embed.shape == (1, 1 + 9, 32)  # 3 x 3 grid at 48 px (was 2 x 2)
    assert torch.equal(model.student.model.blocks[0].attn.qkv.weight, state["teacher.model.blocks.0.attn.qkv.weight"])
    for name, tensor in model.student_head.state_dict().items():
        assert torch.equal(tensor, state[f"teacher_head.{name}"])
    assert all(torch.equal(a, b) for a, b in zip(model.student.state_dict().values(),
                                                  model.teacher.state_dict().values(), strict=True))
    model(_batch(model, 48))["loss"].backward()  # trains at the new resolution


def _batch(model: torch.nn.Module, size: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"global_crops": torch.randn(4, 2, 1, size, size, generator=g),
            "local_crops": torch.randn(4, 2, 1, 16, 16, generator=g)}


def test_backbone_only_checkpoint_with_heads_load_lists_the_choices(
        source: tuple[str, dict[str, torch.Tensor]], tmp_path: Path) -> None:
    _, state = source
    backbone = {k.removeprefix("teacher.model."): v.contiguous() for k, v in state.items()
                if k.startswith("teacher.model.")}
    path = str(tmp_path / "vit.safetensors")
    save_file(backbone, path)
    with pytest.raises(ConfigError, match=r"heads=load.*teacher_head\.mlp.*heads=reinit.*rfm-self-distillation"):
        build_self_distillation(_config(continual=ContinualConfig(init_from=path)))
    model = build_self_distillation(_config(continual=ContinualConfig(init_from=path, heads=HeadInit.REINIT)))
    assert torch.equal(model.teacher.model.pos_embed, backbone["pos_embed"])
    with pytest.raises(ConfigError, match="pickled"):
        build_self_distillation(_config(continual=ContinualConfig(init_from=str(tmp_path / "model.pt"))))


def test_head_warm_up_freezes_the_backbone_then_unfreezes(sample_dataset: str,
                                                         source: tuple[str, dict[str, torch.Tensor]]) -> None:
    url, _ = source
    cfg = _config(continual=ContinualConfig(init_from=url, heads=HeadInit.REINIT, freeze_backbone_steps=2))
    model = build_self_distillation(cfg)
    assert model.ddp_find_unused_parameters
    opt = build_optimizer(model, OptimizerConfig(lr=1e-2), fused=False)
    batches = iter(build_ssl_loader(sample_dataset, cfg, batch_size=8, split=None, buffer_size=16))
    start_backbone = model.student.model.blocks[0].mlp.fc1.weight.detach().clone()
    start_head = model.student_head.mlp[0].weight.detach().clone()
    for step in (1, 2, 3):
        model(next(batches))["loss"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        model.after_optimizer_step(step, 3, opt)
        backbone_same = torch.equal(model.student.model.blocks[0].mlp.fc1.weight, start_backbone)
        assert backbone_same == (step <= 2), f"step {step}"
        assert not torch.equal(model.student_head.mlp[0].weight, start_head)
