"""Losses of DINOv2-style self-distillation: DINO (CLS), iBOT (masked patches) and the KoLeo regulariser.

The teacher's logits become targets through a registered *teacher normalisation* (``teacher_normalizers``):

* ``centering`` (DINO): subtract an EMA of the batch-mean logits, then a sharp softmax. The centre stops one
  prototype from dominating; the low teacher temperature stops the uniform collapse.
* ``sinkhorn_knopp`` (DINOv2 / SwAV): three Sinkhorn-Knopp iterations make the batch's assignment to the
  prototypes equipartitioned; no centre is needed.

Under ``torch.distributed`` the batch statistics (centre, Sinkhorn sums) are all-reduced, so every rank uses the
same targets and the teacher stays identical on all ranks.
"""

from __future__ import annotations

from enum import Enum
from typing import Protocol

import torch
import torch.distributed as dist
import torch.nn.functional as nnf
from torch import Tensor

from rfm_data.registry import Registry

__all__ = ["TeacherNorm", "dino_loss", "ibot_loss", "koleo_loss", "sinkhorn_knopp", "softmax_centered",
           "teacher_normalizers"]


class TeacherNorm(str, Enum):
    """How teacher logits become targets (see the module docstring).

    Lower-case members first so that Hydra / OmegaConf, which match enum overrides by *name*, accept the values
    users write (``loss.teacher_norm=sinkhorn_knopp``); the upper-case names are aliases for code.
    """

    centering = "centering"
    sinkhorn_knopp = "sinkhorn_knopp"
    CENTERING = "centering"
    SINKHORN_KNOPP = "sinkhorn_knopp"


class TeacherNormalizer(Protocol):
    """``(logits (N, K), center (1, K), temperature) -> target probabilities (N, K)``."""

    def __call__(self, logits: Tensor, center: Tensor, temperature: float) -> Tensor: ...


teacher_normalizers: Registry[TeacherNormalizer] = Registry("teacher normalisation")


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce(t: Tensor) -> Tensor:
    if _distributed():
        dist.all_reduce(t)
    return t


@teacher_normalizers.register(TeacherNorm.CENTERING.value)
def _centering() -> TeacherNormalizer:
    return softmax_centered


@teacher_normalizers.register(TeacherNorm.SINKHORN_KNOPP.value)
def _sinkhorn() -> TeacherNormalizer:
    return lambda logits, center, temperature: sinkhorn_knopp(logits, temperature)


@torch.no_grad()
def softmax_centered(logits: Tensor, center: Tensor, temperature: float) -> Tensor:
    """DINO targets: ``softmax((logits - center) / temperature)``."""
    return nnf.softmax((logits.float() - center) / temperature, dim=-1)


@torch.no_grad()
def sinkhorn_knopp(logits: Tensor, temperature: float, iterations: int = 3) -> Tensor:
    """Targets whose rows sum to 1 and whose prototype columns carry equal mass over the (global) batch."""
    q = torch.exp((logits.float() - logits.float().max()) / temperature).t()  # (K, N); max-shift for stability
    n = torch.tensor(float(q.shape[1]), device=q.device)
    _all_reduce(n)
    k = q.shape[0]
    q /= _all_reduce(q.sum())
    for _ in range(iterations):
        q /= _all_reduce(q.sum(dim=1, keepdim=True)).clamp_min(1e-30)
        q /= k
        q /= q.sum(dim=0, keepdim=True).clamp_min(1e-30)
        q /= n
    return (q * n).t()


@torch.no_grad()
def update_center(center: Tensor, logits: Tensor, momentum: float) -> None:
    """``center <- momentum * center + (1 - momentum) * mean(logits)`` over the global batch, in place."""
    total = _all_reduce(logits.float().sum(dim=0, keepdim=True))
    count = torch.tensor(float(logits.shape[0]), device=logits.device)
    center.mul_(momentum).add_(total / _all_reduce(count).clamp_min(1.0), alpha=1.0 - momentum)


def _cross_entropy(targets: Tensor, student_logits: Tensor, temperature: float) -> Tensor:
    """Per-row ``-sum(targets * log_softmax(student / temperature))``."""
    return -(targets * nnf.log_softmax(student_logits.float() / temperature, dim=-1)).sum(dim=-1)


def dino_loss(student: list[Tensor], teacher: list[Tensor], temperature: float) -> Tensor:
    """Mean cross-entropy over every (teacher view i, student view j) pair with i != j.

    Args:
        student: logits ``(B, K)`` per student view; the first ``len(teacher)`` are the global views.
        teacher: target probabilities ``(B, K)`` per global view.
        temperature: the student's softmax temperature.
    """
    terms = [_cross_entropy(t, s, temperature).mean()
             for i, t in enumerate(teacher) for j, s in enumerate(student) if i != j]
    return torch.stack(terms).mean()


def ibot_loss(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """Mean cross-entropy between the teacher's targets and the student's logits at the masked patches
    (``(M, K)`` each, M masked tokens over the batch); 0 when nothing is masked."""
    if student.shape[0] == 0:
        return student.sum() * 0.0  # keeps the head in the graph (DDP wants every parameter used)
    return _cross_entropy(teacher, student, temperature).mean()


def koleo_loss(features: Tensor, eps: float = 1e-8) -> Tensor:
    """Kozachenko-Leonenko entropy estimate: ``-mean(log(distance to the nearest other sample))`` of the
    L2-normalised ``features`` ``(B, D)``. Pushes features apart so the batch spreads over the sphere."""
    x = nnf.normalize(features.float(), dim=-1, eps=eps)
    with torch.no_grad():
        sims = x @ x.t()
        sims.fill_diagonal_(-2.0)  # never one's own nearest neighbour
        nearest = sims.argmax(dim=1)
    distances = (x - x[nearest]).norm(dim=-1)
    return -torch.log(distances + eps).mean()
