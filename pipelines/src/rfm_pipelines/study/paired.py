"""Vectorised seed-pooled paired bootstraps for the study report.

The study compares ~10 arms x seeds against two references on several splits and domains. Calling a task's
per-row-index metric function once per resample, run and comparison (what ``rfm_eval.stats.paired_bootstrap``
does) re-sorts the same scores thousands of times. Here the resamples of a row set are drawn once (the same
patient-level draws as ``rfm_eval.stats.resample_indices``) and written as a multiplicity matrix ``W`` (resample
x row); each run's headline metric is then evaluated on every resample at once (AUROC from score-sorted tie
groups, means as weighted sums), once per run, and every comparison reuses those vectors.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rfm_data.errors import ConfigError
from rfm_eval.protocol import LabelMode
from rfm_eval.stats import Estimate, PairedEstimate
from rfm_eval.tasks import Predictions

__all__ = ["Resamples", "VecMetric", "draw_resamples", "estimate", "headline_metrics", "paired_from_values",
           "seed_mean"]

# weights (k, n): multiplicity of each row in each of k resamples → the metric on each resample, (k,)
VecMetric = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Resamples:
    """Row ids and the bootstrap draws over them; row 0 of ``weights`` is the full set (every row once)."""

    ids: list[str]
    weights: np.ndarray  # (1 + n_boot, len(ids)) multiplicities, compact unsigned ints

    def apply(self, fn: VecMetric, chunk: int = 64) -> np.ndarray:
        """``fn`` on every resample, a chunk at a time (float copies of a large split's weights stay small)."""
        return np.concatenate([fn(self.weights[i:i + chunk].astype(float))
                               for i in range(0, len(self.weights), chunk)])


def draw_resamples(ids: Sequence[str], groups: Sequence[str], n_boot: int, seed: int) -> Resamples:
    """Patient-level resamples of ``ids`` (groups = patient ids), as multiplicities beside the full set.

    The draws are ``rfm_eval.stats.resample_indices``'s (same generator calls: ``n_boot`` x groups integers over
    the sorted unique groups), counted per group instead of concatenated into index lists.
    """
    if not ids:
        raise ConfigError("cannot bootstrap a metric over 0 rows: the split is empty")
    _, group_of_row = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = int(group_of_row.max()) + 1
    draws = np.random.default_rng(seed).integers(0, n_groups, size=(n_boot, n_groups))
    # A row's multiplicity is its group's draw count, at most the number of groups.
    dtype = np.uint16 if n_groups < np.iinfo(np.uint16).max else np.uint32
    weights = np.ones((1 + n_boot, len(ids)), dtype=dtype)
    for b, d in enumerate(draws, start=1):
        weights[b] = np.bincount(d, minlength=n_groups)[group_of_row]
    return Resamples(list(ids), weights)


def _auroc_vec(y: np.ndarray, score: np.ndarray) -> VecMetric:
    """Binary AUROC (ties count half, as sklearn's) of rows with a label (``y >= 0``) and a score, per resample."""
    rows = np.flatnonzero((y >= 0) & ~np.isnan(score))
    order = rows[np.argsort(score[rows], kind="stable")]
    ranked = score[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]]) if len(order) else np.array([], dtype=int)
    is_pos, is_neg = (y[order] == 1).astype(float), (y[order] == 0).astype(float)

    def fn(w: np.ndarray) -> np.ndarray:
        if not len(order):
            return np.full(len(w), np.nan)
        wr = w[:, order]
        pos = np.add.reduceat(wr * is_pos, starts, axis=1)  # weighted positives per tied-score group
        neg = np.add.reduceat(wr * is_neg, starts, axis=1)
        below = np.cumsum(neg, axis=1) - neg
        pairs = pos.sum(1) * neg.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = (pos * (below + 0.5 * neg)).sum(1) / pairs
        out[pairs == 0] = np.nan
        return np.asarray(out, dtype=float)
    return fn


def _macro(fns: Sequence[VecMetric], every: bool) -> VecMetric:
    """Mean over classes: of the defined ones (multi-label), or nan unless all are (one-vs-rest multi-class)."""
    def fn(w: np.ndarray) -> np.ndarray:
        values = np.stack([f(w) for f in fns])
        if every:
            return np.asarray(values.mean(0), dtype=float)
        defined = ~np.isnan(values)
        total = np.where(defined, values, 0.0).sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(np.where(defined.any(0), total / defined.sum(0), np.nan), dtype=float)
    return fn


def _weighted_mean(values: np.ndarray) -> VecMetric:
    """Mean over the rows where ``values`` is defined (retrieval hits, per-image Dice)."""
    finite = np.isfinite(values)
    clean = np.where(finite, values, 0.0).astype(float)

    def fn(w: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray((w @ clean) / (w @ finite.astype(float)), dtype=float)
    return fn


def _classification(y: np.ndarray, score: np.ndarray, mode: str) -> VecMetric:
    if LabelMode(mode) == LabelMode.MULTI_CLASS:
        per = [_auroc_vec(np.where(y < 0, -1, (y == c).astype(np.int8)), score[:, c]) for c in range(score.shape[1])]
        return _macro(per, every=True)
    return _macro([_auroc_vec(y[:, c], score[:, c]) for c in range(score.shape[1])], every=False)


def _zeroshot(p: Predictions) -> dict[str, VecMetric]:
    return {"auroc_macro": _classification(p.arrays["y"], p.arrays["score"], p.meta["mode"])}


def _probe(p: Predictions) -> dict[str, VecMetric]:
    return {f"auroc_macro{tag}": _classification(p.arrays["y"], p.arrays[f"score{tag}"], p.meta["mode"])
            for tag in p.meta["tags"]}


def _retrieval(p: Predictions) -> dict[str, VecMetric]:
    return {f"{d}_R@{k}": _weighted_mean((p.arrays[f"{d}_rank"] <= int(k)).astype(float))
            for d in ("i2t", "t2i") for k in p.meta["ks"]}


def _segmentation(p: Predictions) -> dict[str, VecMetric]:
    dice = np.asarray(p.arrays["dice"], dtype=float)
    return {f"dice_{c}": _weighted_mean(dice[:, k]) for k, c in enumerate(p.meta["classes"])}


# Paired tests cover the headline macro metrics the goals are stated in; per-class and secondary metrics (HD95,
# median rank) keep their per-run CIs from rfm-eval but are not paired (they were most of the report's time).
_HEADLINE: dict[str, Callable[[Predictions], dict[str, VecMetric]]] = {
    "zeroshot": _zeroshot, "linear_probe": _probe, "retrieval": _retrieval, "segmentation": _segmentation}


def headline_metrics(task: str, predictions: Predictions) -> dict[str, VecMetric]:
    """The paired metrics of ``task`` (none for a task the study does not pair)."""
    build = _HEADLINE.get(task)
    return build(predictions) if build else {}


def seed_mean(vectors: Sequence[np.ndarray]) -> np.ndarray:
    """Mean over seeds per resample, ignoring seeds where the metric is undefined on that resample."""
    stacked = np.stack(vectors)
    defined = ~np.isnan(stacked)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.where(defined.any(0), np.where(defined, stacked, 0.0).sum(0) / defined.sum(0),
                                   np.nan), dtype=float)


def estimate(values: np.ndarray, level: float = 0.95) -> Estimate:
    """The value on the full set (index 0) with the percentile interval of the resamples."""
    boot = values[1:]
    finite = boot[~np.isnan(boot)]
    alpha = (1.0 - level) / 2.0
    low, high = (np.quantile(finite, [alpha, 1.0 - alpha]) if finite.size else (math.nan, math.nan))
    return Estimate(float(values[0]), float(low), float(high), level, int(finite.size))


def paired_from_values(ref: np.ndarray, arm: np.ndarray, level: float = 0.95) -> dict[str, Any]:
    """Arm - reference on shared resamples (index 0 = full set), as ``PairedEstimate.to_dict()``.

    The p-value is ``rfm_eval.stats.paired_bootstrap``'s: twice the smaller share of resampled differences on
    either side of 0, at most 1.
    """
    d = arm - ref
    finite = d[1:][~np.isnan(d[1:])]
    p = math.nan if finite.size == 0 else min(1.0, 2.0 * min(np.mean(finite <= 0), np.mean(finite >= 0)))
    paired: dict[str, Any] = PairedEstimate(estimate(ref, level), estimate(arm, level), estimate(d, level),
                                            float(p)).to_dict()
    return paired
