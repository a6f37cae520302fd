"""Compute accounting: FLOPs per sample, cumulative counters and budgets.

FLOPs are *measured*, not guessed: the first training micro-batch of each input shape runs under
``torch.utils.flop_counter.FlopCounterMode``, which counts the forward **and** the backward matmuls /
convolutions / attention it sees (no x3 rule of thumb is applied). Shapes matter because text batches are
padded to their longest report: measuring one batch and extrapolating made two runs at equal steps differ
4.5x in counted FLOPs. :class:`PerShapeFlops` keeps one figure per shape. Two figures come out of it:

* ``train_flops_per_sample``: forward + backward of the loss pass, divided by the samples it trained on;
* ``score_flops_per_sample``: the no-grad scoring forward of online selection, per scored sample.

Every later step adds ``train_flops_per_sample * kept + score_flops_per_sample * scored``; the training part
is also summed alone (``train_flops``), which the equal-compute budget ``flops_of_steps`` divides by the
samples trained on to price a plain step (:func:`plain_steps_flops`). This assumes cost
linear in the batch (true for the encoders; the B x B contrastive logits are negligible) and does not count
elementwise ops (FlopCounterMode counts matmul-like ops only) or the optimizer update. The counters are summed
over DDP ranks, so they describe the whole job.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import torch
from torch.utils.flop_counter import FlopCounterMode

from rfm_models.train.config import BudgetConfig


@dataclass
class ComputeCounters:
    """Cumulative counters (whole job, all ranks), carried by every checkpoint and metrics record."""

    steps: int = 0  # optimizer steps
    epochs_completed: int = 0
    samples: int = 0  # samples drawn from the loader
    kept_samples: int = 0  # samples the loss was computed on
    scored_samples: int = 0  # samples that went through the selection (scoring) forward
    flops: float = 0.0
    train_flops: float = 0.0  # the part of ``flops`` spent in training passes (fwd + bwd on kept samples)
    wall_s: float = 0.0  # wall-clock seconds inside train(), across resumes
    device_s: float = 0.0  # seconds in forward / backward / optimizer (synchronised on GPU), across resumes
    train_flops_per_sample: float = 0.0
    score_flops_per_sample: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ComputeCounters:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})


T = TypeVar("T")


class PerShapeFlops:
    """FLOPs per sample, measured once per input shape (tensor shapes without the batch dimension)."""

    def __init__(self) -> None:
        self._by_shape: dict[tuple[tuple[str, tuple[int, ...]], ...], float] = {}

    @staticmethod
    def _key(batch: Any) -> tuple[tuple[str, tuple[int, ...]], ...]:
        if not isinstance(batch, dict):
            return ()
        return tuple((k, tuple(v.shape[1:])) for k, v in sorted(batch.items()) if isinstance(v, torch.Tensor))

    def run(self, batch: Any, fn: Callable[[], T], samples: int) -> tuple[T, float]:
        """``fn()``'s result and its FLOPs per sample over ``samples`` (measured on this shape's first call)."""
        key = self._key(batch)
        if key in self._by_shape or samples <= 0:
            return fn(), self._by_shape.get(key, 0.0)
        result, flops = measure_flops(fn)
        self._by_shape[key] = flops / samples
        return result, self._by_shape[key]


def measure_flops(fn: Callable[[], T]) -> tuple[T, float]:
    """Run ``fn()`` under ``FlopCounterMode`` and return its result and the FLOPs counted (fwd + any bwd)."""
    with FlopCounterMode(display=False) as counter:
        result = fn()
    return result, float(counter.get_total_flops())


class DeviceTimer:
    """Accumulates seconds spent in compute sections; synchronises CUDA so queued kernels are counted."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.total = 0.0
        self._start: float | None = None

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __enter__(self) -> DeviceTimer:
        self._sync()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sync()
        assert self._start is not None
        self.total += time.perf_counter() - self._start
        self._start = None


def plain_steps_flops(steps: int, global_batch: int, counters: ComputeCounters) -> float | None:
    """FLOPs that ``steps`` plain optimizer steps of ``global_batch`` samples cost, or None before any training
    pass was measured.

    The per-sample cost is the mean over every sample trained on so far (``train_flops / kept_samples``), not
    the first batch's figure: text is padded to each batch's longest report, so the first batch's cost per
    sample can be far from the typical one (4.5x apart at equal steps, see the module docstring), and the
    budget of two runs would then hinge on which batch each happened to draw first. The running mean converges
    to the data's average cost, which is what a plain run of ``steps`` steps spends in expectation.
    """
    if counters.kept_samples <= 0 or counters.train_flops <= 0:
        return None
    # A plain run reaches the target exactly at step ``steps``; the relative slack keeps float round-off in
    # the sums from costing it one extra step.
    return steps * global_batch * (counters.train_flops / counters.kept_samples) * (1.0 - 1e-9)


def budget_reason(budget: BudgetConfig, counters: ComputeCounters, epoch: int,
                  global_batch: int | None = None) -> str | None:
    """Why the run must stop now (``"max_steps"``, ``"max_flops"``, …), or ``None`` to go on.

    ``global_batch`` (samples per optimizer step over all ranks and micro-batches) is needed by
    ``budget.flops_of_steps`` only.
    """
    equal_compute = None
    if budget.flops_of_steps is not None and global_batch is not None:
        equal_compute = plain_steps_flops(budget.flops_of_steps, global_batch, counters)
    limits: list[tuple[str, float | None, float]] = [
        ("max_steps", budget.max_steps, counters.steps),
        ("max_epochs", budget.max_epochs, epoch),
        ("max_samples", budget.max_samples, counters.samples),
        ("max_flops", budget.max_flops, counters.flops),
        ("max_hours", budget.max_hours, counters.wall_s / 3600.0),
        ("flops_of_steps", equal_compute, counters.flops),
    ]
    for name, limit, value in limits:
        if limit is not None and value >= limit:
            return name
    return None


def fraction_of(counters: ComputeCounters, reference_flops: float) -> float:
    """``counters.flops`` as a fraction of a reference run's FLOPs (NaN if the reference is 0)."""
    return counters.flops / reference_flops if reference_flops > 0 else math.nan
