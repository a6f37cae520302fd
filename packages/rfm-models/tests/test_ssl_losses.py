"""Self-distillation losses and schedules on small real-valued tensors: properties that define them."""

from __future__ import annotations

import math

import pytest
import torch

from rfm_models.ssl.losses import (
    dino_loss,
    ibot_loss,
    koleo_loss,
    sinkhorn_knopp,
    softmax_centered,
    teacher_normalizers,
    update_center,
)
from rfm_models.ssl.schedules import cosine, linear_warmup


def test_sinkhorn_knopp_equipartitions_the_prototypes() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 16, generator=g) + torch.linspace(0, 2, 16)  # prototype 15 dominates the argmax
    q = sinkhorn_knopp(logits, temperature=0.3, iterations=50)
    assert torch.allclose(q.sum(dim=1), torch.ones(64), atol=1e-4)  # a distribution per sample
    assert torch.allclose(q.sum(dim=0), torch.full((16,), 64 / 16), rtol=0.05)  # equal mass per prototype
    plain = torch.softmax(logits / 0.3, dim=1)
    assert plain.sum(dim=0).max() > 2 * q.sum(dim=0).max()  # a plain softmax collapses onto a few prototypes


def test_centering_removes_a_dominant_prototype_and_temperature_sharpens() -> None:
    logits = torch.zeros(32, 8)
    logits[:, 3] = 5.0  # every sample votes for prototype 3: the collapse centering prevents
    center = torch.zeros(1, 8)
    for _ in range(200):
        update_center(center, logits, momentum=0.9)
    assert torch.allclose(center, logits.mean(dim=0, keepdim=True), atol=1e-4)
    centered = softmax_centered(logits, center, 0.04)
    assert torch.allclose(centered, torch.full_like(centered, 1 / 8), atol=1e-3)
    x = torch.randn(4, 8)
    entropy = lambda p: -(p * p.clamp_min(1e-12).log()).sum(1).mean()  # noqa: E731
    assert entropy(softmax_centered(x, torch.zeros(1, 8), 0.04)) < entropy(softmax_centered(x, torch.zeros(1, 8), 1.0))


def test_registry_names_the_teacher_normalisations() -> None:
    assert teacher_normalizers.names() == ["centering", "sinkhorn_knopp"]
    with pytest.raises(KeyError, match="centering"):
        teacher_normalizers.create("softmax")


def test_dino_loss_skips_same_view_pairs_and_is_minimal_at_the_target() -> None:
    g = torch.Generator().manual_seed(1)
    t = [torch.softmax(torch.randn(5, 10, generator=g), 1) for _ in range(2)]
    s = [torch.randn(5, 10, generator=g) for _ in range(4)]  # 2 global + 2 local student views
    ce = lambda tt, ss: -(tt * torch.log_softmax(ss / 0.1, 1)).sum(1).mean()  # noqa: E731
    expected = torch.stack([ce(t[i], s[j]) for i in range(2) for j in range(4) if i != j]).mean()
    assert torch.allclose(dino_loss(s, t, 0.1), expected)
    matched = [0.1 * t[1].log(), 0.1 * t[0].log()]  # each global view predicts the *other* teacher view
    assert dino_loss(matched, t, 0.1) < dino_loss([s[0], s[1]], t, 0.1)


def test_ibot_loss_and_empty_mask() -> None:
    t = torch.softmax(torch.randn(6, 10), 1)
    assert ibot_loss(0.1 * t.log(), t, 0.1) < ibot_loss(torch.randn(6, 10), t, 0.1)
    empty = torch.zeros(0, 10, requires_grad=True)
    out = ibot_loss(empty, torch.zeros(0, 10), 0.1)
    assert out.item() == 0.0 and out.requires_grad


def test_koleo_prefers_spread_features() -> None:
    g = torch.Generator().manual_seed(2)
    spread = torch.randn(32, 16, generator=g)
    clustered = torch.randn(1, 16, generator=g) + 0.01 * torch.randn(32, 16, generator=g)
    assert koleo_loss(spread) < koleo_loss(clustered) - 1.0
    x = clustered.clone().requires_grad_(True)
    koleo_loss(x).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_schedules() -> None:
    assert cosine(0.992, 1.0, 0, 100) == pytest.approx(0.992)
    assert cosine(0.992, 1.0, 50, 100) == pytest.approx(0.996)
    assert cosine(0.992, 1.0, 150, 100) == pytest.approx(1.0)
    assert linear_warmup(0.04, 0.07, 0, 10) == pytest.approx(0.04)
    assert linear_warmup(0.04, 0.07, 5, 10) == pytest.approx(0.055)
    assert linear_warmup(0.04, 0.07, 10, 10) == linear_warmup(0.04, 0.07, 3, 0) == 0.07
    assert not math.isnan(cosine(0.04, 0.2, 3, 0))
