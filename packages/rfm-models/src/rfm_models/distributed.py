"""Gathering embeddings across ranks so contrastive losses see the whole global batch.

``gather_with_grad`` all-gathers (padding to the largest rank, since online curation leaves ranks with
different numbers of kept samples) and puts this rank's own tensor back into the result, so autograd
reaches the local embeddings. Every rank then computes the *global* loss: the gradient with respect to its
local embeddings is exactly that of the full-batch loss. DDP averages parameter gradients over ranks, so
parameters receive the full-batch gradient divided by the world size, a constant absorbed in the learning rate.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["gather_no_grad", "gather_with_grad", "world"]


def world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather_padded(x: Tensor) -> tuple[list[Tensor], list[int]]:
    """Every rank's ``x`` (padded along dim 0 to the largest), and the true sizes."""
    _, size = world()
    local_n = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
    sizes = [torch.zeros_like(local_n) for _ in range(size)]
    dist.all_gather(sizes, local_n)
    counts = [int(s.item()) for s in sizes]
    longest = max(counts)
    padded = x.new_zeros((longest, *x.shape[1:]))
    padded[: x.shape[0]] = x.detach()
    parts = [torch.empty_like(padded) for _ in range(size)]
    dist.all_gather(parts, padded.contiguous())
    return parts, counts


def gather_with_grad(x: Tensor) -> tuple[Tensor, int]:
    """Concatenate ``x`` from every rank along dim 0; gradients flow into this rank's ``x``.

    Returns:
        The global tensor and the offset of this rank's rows in it.
    """
    rank, size = world()
    if size == 1:
        return x, 0
    parts, counts = _gather_padded(x)
    trimmed = [p[:n] for p, n in zip(parts, counts, strict=True)]
    trimmed[rank] = x  # all_gather results carry no autograd history: put the local tensor back
    return torch.cat(trimmed, dim=0), sum(counts[:rank])


def gather_no_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` (labels, ids) from every rank along dim 0, without gradient."""
    _, size = world()
    if size == 1:
        return x
    parts, counts = _gather_padded(x)
    return torch.cat([p[:n] for p, n in zip(parts, counts, strict=True)], dim=0)
