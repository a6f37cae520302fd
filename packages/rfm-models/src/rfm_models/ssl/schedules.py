"""Per-step schedules of self-distillation: teacher momentum, teacher temperature and weight decay.

All are pure functions of the optimizer step, so a resumed run (which restores the step) continues them exactly.
"""

from __future__ import annotations

import math

__all__ = ["cosine", "linear_warmup"]


def cosine(start: float, end: float, step: int, total_steps: int) -> float:
    """Cosine interpolation from ``start`` (step 0) to ``end`` (step ``total_steps`` and after).

    Example:
        >>> cosine(0.992, 1.0, 0, 100), cosine(0.992, 1.0, 100, 100)
        (0.992, 1.0)
    """
    progress = min(1.0, max(0.0, step / max(1, total_steps)))
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def linear_warmup(start: float, end: float, step: int, warmup_steps: int) -> float:
    """Linear ramp from ``start`` to ``end`` over ``warmup_steps``, then ``end`` (DINO's teacher temperature)."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return end
    return start + (end - start) * step / warmup_steps
