"""The objective interface and its registry.

An objective is an ``nn.Module`` called with the projected (not yet normalised) image and text embeddings of
the samples that take part in the loss, the logit scale (already exponentiated) and, when it needs them, the
labels. It gathers them across ranks, computes a loss per sample of the *global* batch, and returns
``{"loss": scalar (mean over the global batch), "per_sample_loss": (B,) for this rank's samples, ...}`` plus
per-term means for logging. Per-sample losses let online curation score and mask samples.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from rfm_data.registry import Registry
from rfm_models.distributed import gather_no_grad, gather_with_grad

__all__ = ["Objective", "create_objective", "objectives"]


class Objective(nn.Module):
    """Base class: gathering, slicing and reduction; subclasses implement :meth:`per_sample`.

    Attributes:
        init_logit_scale: log of the initial temperature scale the model should start from.
        needs_labels: whether ``labels`` (B, C) must be given.
    """

    init_logit_scale: float = math.log(1 / 0.07)
    needs_labels: bool = False

    def per_sample(self, image: Tensor, text: Tensor, scale: Tensor, labels: Tensor | None,
                   label_ids: Tensor | None) -> dict[str, Tensor]:
        """Per-sample terms over the global batch; must contain ``per_sample_loss`` (N,)."""
        raise NotImplementedError

    def forward(self, image_emb: Tensor, text_emb: Tensor, logit_scale: Tensor, labels: Tensor | None = None,
                label_ids: Tensor | None = None) -> dict[str, Tensor]:
        """Loss of a batch.

        Args:
            image_emb: projected image embeddings ``(B, D)`` (normalised here when the objective wants it).
            text_emb: projected text embeddings ``(B, D)``.
            logit_scale: exponentiated temperature scale (a scalar tensor).
            labels: ``(B, C)`` float, 1 / 0, and -1 where uncertain (masked); needed by label objectives.
            label_ids: ``(B,)`` int64 shared-label ids for UniCL (-1 = the sample's own class).
        """
        if self.needs_labels and labels is None:
            raise ValueError(f"{type(self).__name__} needs labels (B, C); the batch has none")
        image, offset = gather_with_grad(image_emb)
        text, _ = gather_with_grad(text_emb)
        all_labels = None if labels is None else gather_no_grad(labels)
        all_ids = None if label_ids is None else gather_no_grad(label_ids)
        if image.shape[0] == 0:
            # Nothing kept anywhere: a zero loss still connected to the graph keeps backward()/DDP working.
            zero = (image_emb.sum() + text_emb.sum() + logit_scale) * 0.0
            return {"loss": zero, "per_sample_loss": image_emb.new_zeros(0)}
        terms = self.per_sample(image, text, logit_scale, all_labels, all_ids)
        n = image_emb.shape[0]
        out = {name: value.mean() for name, value in terms.items() if name != "per_sample_loss"}
        out["loss"] = terms["per_sample_loss"].mean()
        out["per_sample_loss"] = terms["per_sample_loss"][offset: offset + n]
        return out


def unit(x: Tensor) -> Tensor:
    """L2-normalise rows (eps keeps a zero row finite)."""
    return torch.nn.functional.normalize(x, dim=-1, eps=1e-6)


objectives: Registry[Objective] = Registry("objective")


def create_objective(name: str, **overrides: Any) -> Objective:
    """A registered objective (``objectives.names()``). Every factory accepts ``embed_dim`` and ``num_labels``."""
    return objectives.create(name, **overrides)
