"""Objectives against losses computed by hand on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from rfm_models.objectives import create_objective

S = torch.tensor(10.0)


def _orthonormal(b: int, d: int = 4) -> torch.Tensor:
    return torch.eye(d)[:b]


def test_clip_identical_embeddings_give_log_b() -> None:
    emb = torch.ones(4, 3)
    out = create_objective("clip")(emb, emb, S)
    assert out["loss"].item() == pytest.approx(math.log(4), rel=1e-6)
    assert out["per_sample_loss"].shape == (4,)


def test_clip_orthonormal_pairs_match_the_formula() -> None:
    b, s = 3, 3.0  # a moderate scale keeps float32 exact enough for a 1e-5 relative check
    emb = _orthonormal(b)
    out = create_objective("clip")(emb * 2.5, emb, torch.tensor(s))  # scale of the input does not matter: cosine
    expected = math.log(1 + (b - 1) * math.exp(-s))
    assert out["loss"].item() == pytest.approx(expected, rel=1e-5)
    torch.testing.assert_close(out["per_sample_loss"], torch.full((b,), expected))


def test_siglip_matches_the_formula() -> None:
    objective = create_objective("siglip", init_bias=-2.0)
    out = objective(_orthonormal(2), _orthonormal(2), S)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    positive, negative = -math.log(sig(10.0 - 2.0)), -math.log(sig(2.0))
    assert out["loss"].item() == pytest.approx((2 * positive + 2 * negative) / 2, rel=1e-5)
    out["loss"].backward()
    assert objective.bias.grad is not None  # the bias is learned


def test_unicl_without_shared_labels_is_clip() -> None:
    torch.manual_seed(0)
    image, text = torch.randn(5, 8), torch.randn(5, 8)
    unicl = create_objective("unicl")(image, text, S, label_ids=torch.full((5,), -1))
    clip = create_objective("clip")(image, text, S)
    torch.testing.assert_close(unicl["per_sample_loss"], clip["per_sample_loss"])


def test_unicl_samples_sharing_a_label_are_positives() -> None:
    s = 10.0
    emb = _orthonormal(3)
    ids = torch.tensor([7, 7, -1])
    out = create_objective("unicl")(emb, emb, S, label_ids=ids)
    # Samples 0 and 1: targets ½ on each other; logits s on the diagonal, 0 elsewhere (3 columns).
    z = math.exp(s) + 2
    shared = -(0.5 * (s - math.log(z)) + 0.5 * (0 - math.log(z)))
    alone = -(s - math.log(z))
    torch.testing.assert_close(out["per_sample_loss"], torch.tensor([shared, shared, alone]))


def _bce(logit: float, target: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def test_must_stage1_masks_uncertain_labels() -> None:
    objective = create_objective("must", embed_dim=2, num_labels=2, stage=1)
    with torch.no_grad():
        for head in (objective.image_classifier, objective.text_classifier):
            head.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 3.0]]))
            head.bias.zero_()
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([[1.0, -1.0], [0.0, 1.0]])
    out = objective(emb, emb, S, labels=labels)
    first = _bce(2.0, 1.0)  # second label uncertain: masked
    second = (_bce(0.0, 0.0) + _bce(3.0, 1.0)) / 2
    torch.testing.assert_close(out["per_sample_loss"], torch.tensor([2 * first, 2 * second]))
    all_uncertain = objective(emb, emb, S, labels=torch.full((2, 2), -1.0))
    assert all_uncertain["loss"].item() == 0.0
    with pytest.raises(ValueError, match="needs labels"):
        objective(emb, emb, S)


def test_must_stage2_is_infonce_plus_half_shared_bce() -> None:
    torch.manual_seed(0)
    objective = create_objective("must", embed_dim=4, num_labels=3, stage=2)
    image, text = torch.randn(3, 4), torch.randn(3, 4)
    labels = torch.tensor([[1.0, 0.0, -1.0], [-1.0, -1.0, -1.0], [0.0, 1.0, 1.0]])
    out = objective(image, text, S, labels=labels)
    clip = create_objective("clip")(image, text, S)["per_sample_loss"]
    unit_i, unit_t = torch.nn.functional.normalize(image, dim=1), torch.nn.functional.normalize(text, dim=1)
    with torch.no_grad():
        li, lt = objective.classifier(unit_i), objective.classifier(unit_t)
    bce = [sum(_bce(float(lg[r, c]), float(labels[r, c])) for c in range(3) if labels[r, c] >= 0)
           / max(1, int((labels[r] >= 0).sum())) for lg in (li, lt) for r in range(3)]
    expected = clip + 0.5 * (torch.tensor(bce[:3]) + torch.tensor(bce[3:]))
    torch.testing.assert_close(out["per_sample_loss"], expected)
    assert bce[1] == 0 and bce[4] == 0  # the all-uncertain sample has no BCE term


def test_must_dot_product_logits_ignore_the_scale() -> None:
    objective = create_objective("must", embed_dim=2, num_labels=1, stage=2, dot_product=True, bce_weight=0.0)
    emb = torch.tensor([[1.5, 0.0], [0.0, 1.5]])
    out = objective(emb, emb, torch.tensor(100.0), labels=torch.zeros(2, 1))
    assert out["contrastive"].item() == pytest.approx(math.log(1 + math.exp(-2.25)), rel=1e-5)


@pytest.mark.parametrize("stage", [1, 2])
def test_must_trains_exactly_its_stage_parameters(stage: int) -> None:
    # DDP refuses trainable parameters that get no gradient: every trainable one must get one, and the other
    # stage's classifiers stay in the state dict (frozen) so checkpoints move between stages.
    objective = create_objective("must", embed_dim=4, num_labels=3, stage=stage)
    image, text = torch.randn(3, 4, requires_grad=True), torch.randn(3, 4, requires_grad=True)
    labels = torch.tensor([[1.0, 0.0, -1.0], [0.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    objective(image, text, S, labels=labels)["loss"].backward()
    trainable = {n for n, p in objective.named_parameters() if p.requires_grad}
    assert trainable == ({"image_classifier.weight", "image_classifier.bias", "text_classifier.weight",
                          "text_classifier.bias"} if stage == 1 else {"classifier.weight", "classifier.bias"})
    assert all(p.grad is not None for n, p in objective.named_parameters() if n in trainable)
    assert {k.split(".")[0] for k in objective.state_dict()} == {"image_classifier", "text_classifier", "classifier"}
