"""Contrastive objectives: CLIP (symmetric InfoNCE), SigLIP (pairwise sigmoid) and UniCL (shared labels)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as nnf

from rfm_models.objectives.base import Objective, objectives, unit

__all__ = ["ClipObjective", "SigLipObjective", "UniClObjective", "clip_per_sample", "unicl_targets"]


def clip_per_sample(logits: Tensor) -> Tensor:
    """Symmetric InfoNCE per sample: ½ (CE of row i + CE of column i), matches on the diagonal."""
    targets = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (nnf.cross_entropy(logits, targets, reduction="none")
                  + nnf.cross_entropy(logits.t(), targets, reduction="none"))


class ClipObjective(Objective):
    """CLIP: cosine similarities times a learned scale, cross-entropy in both directions."""

    def per_sample(self, image: Tensor, text: Tensor, scale: Tensor, labels: Tensor | None,
                   label_ids: Tensor | None) -> dict[str, Tensor]:
        return {"per_sample_loss": clip_per_sample(scale * unit(image) @ unit(text).t())}


class SigLipObjective(Objective):
    """SigLIP: every image-text pair is a binary problem (match or not) with a learned bias.

    The batch loss is the pair sum divided by the batch size (as in the paper); a sample's share is half
    its row plus half its column, so the mean of ``per_sample_loss`` is the loss.
    """

    init_logit_scale = math.log(10.0)

    def __init__(self, init_bias: float = -10.0) -> None:
        super().__init__()
        # Starting very negative matches the prior that almost all pairs are negatives.
        self.bias = nn.Parameter(torch.tensor(float(init_bias)))

    def per_sample(self, image: Tensor, text: Tensor, scale: Tensor, labels: Tensor | None,
                   label_ids: Tensor | None) -> dict[str, Tensor]:
        logits = scale * unit(image) @ unit(text).t() + self.bias
        signs = 2 * torch.eye(logits.shape[0], device=logits.device, dtype=logits.dtype) - 1
        pair = -nnf.logsigmoid(signs * logits)
        return {"per_sample_loss": 0.5 * (pair.sum(dim=1) + pair.sum(dim=0))}


def unicl_targets(label_ids: Tensor) -> Tensor:
    """Row-normalised positives: samples sharing a non-negative id match each other; -1 matches only itself."""
    n = label_ids.shape[0]
    # Give every "own class" sample a distinct id below any real one, so it is positive only with itself.
    own = -1 - torch.arange(n, device=label_ids.device, dtype=label_ids.dtype)
    ids = torch.where(label_ids < 0, own, label_ids)
    positives = (ids[:, None] == ids[None, :]).float()
    return positives / positives.sum(dim=1, keepdim=True)


class UniClObjective(Objective):
    """UniCL: image-label pairs (labels as text prompts) and image-report pairs in one contrastive loss.

    Samples whose ``label_ids`` agree are all positives for each other (soft targets spread evenly); with
    no shared ids it is exactly CLIP.
    """

    def per_sample(self, image: Tensor, text: Tensor, scale: Tensor, labels: Tensor | None,
                   label_ids: Tensor | None) -> dict[str, Tensor]:
        logits = scale * unit(image) @ unit(text).t()
        if label_ids is None:
            return {"per_sample_loss": clip_per_sample(logits)}
        targets = unicl_targets(label_ids)  # symmetric, so the same targets serve both directions
        i2t = -(targets * nnf.log_softmax(logits, dim=1)).sum(dim=1)
        t2i = -(targets * nnf.log_softmax(logits.t(), dim=1)).sum(dim=1)
        return {"per_sample_loss": 0.5 * (i2t + t2i)}


@objectives.register("clip")
def _clip(embed_dim: int = 512, num_labels: int = 0) -> Objective:
    return ClipObjective()


@objectives.register("siglip")
def _siglip(embed_dim: int = 512, num_labels: int = 0, init_bias: float = -10.0) -> Objective:
    return SigLipObjective(init_bias)


@objectives.register("unicl")
def _unicl(embed_dim: int = 512, num_labels: int = 0) -> Objective:
    return UniClObjective()
