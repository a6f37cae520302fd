"""Bootstrap confidence intervals, patient-level (cluster) resampling and paired model comparison.

Every headline metric of rfm-eval comes as an :class:`Estimate`: the value on all rows plus a percentile
bootstrap interval. Rows are resampled by *group* (patient id) when ``groups`` is given: several images of
one patient are not independent, and resampling images would make intervals too narrow.

A metric is a function of row indices (with repeats), ``metric(idx) -> float``, returning ``nan`` where it
is undefined on that resample (e.g. AUROC with one class present); such resamples are dropped and counted
out of ``n_boot``. Example::

    y, s = np.array([0, 1, 1, 0]), np.array([0.1, 0.9, 0.6, 0.3])
    est = bootstrap(lambda i: safe_auroc(y[i], s[i]), n=4, groups=["p1", "p1", "p2", "p3"])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from rfm_data.errors import ConfigError

MetricFn = Callable[[np.ndarray], float]

__all__ = ["Estimate", "MetricFn", "PairedEstimate", "bootstrap", "paired_bootstrap", "resample_indices",
           "safe_auroc"]


@dataclass(frozen=True)
class Estimate:
    """A metric value with its bootstrap interval.

    Attributes:
        value: the metric on all rows; nan when undefined there.
        low: lower percentile bound of the interval (nan when no resample was defined).
        high: upper bound.
        level: the interval's coverage, e.g. 0.95.
        n_boot: resamples on which the metric was defined (out of those drawn).
    """

    value: float
    low: float
    high: float
    level: float
    n_boot: int

    @property
    def defined(self) -> bool:
        """Whether the metric had a value on all rows."""
        return not math.isnan(self.value)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields (nan becomes None: JSON has no NaN)."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Estimate:
        """Inverse of :meth:`to_dict`."""
        def num(key: str) -> float:
            return float("nan") if data.get(key) is None else float(data[key])
        return cls(num("value"), num("low"), num("high"), float(data.get("level", 0.95)), int(data.get("n_boot", 0)))

    def format(self, digits: int = 3) -> str:
        """``0.812 [0.771, 0.850]``, or ``undefined``."""
        if not self.defined:
            return "undefined"
        if math.isnan(self.low):
            return f"{self.value:.{digits}f}"
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


@dataclass(frozen=True)
class PairedEstimate:
    """Two models scored on the same resamples.

    Attributes:
        a: model A's estimate.
        b: model B's estimate.
        diff: B - A on each resample (its interval excludes 0 when B differs from A at ``level``).
        p_value: two-sided bootstrap p-value of ``diff == 0``.
    """

    a: Estimate
    b: Estimate
    diff: Estimate
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields."""
        p = None if math.isnan(self.p_value) else self.p_value
        return {"a": self.a.to_dict(), "b": self.b.to_dict(), "diff": self.diff.to_dict(), "p_value": p}


def safe_auroc(y_true: np.ndarray, score: np.ndarray) -> float:
    """sklearn's ROC AUC, nan where undefined (one class present) instead of raising."""
    y = np.asarray(y_true)
    if y.size == 0 or np.unique(y).size < 2:
        return float("nan")
    return float(roc_auc_score(y, score))


def _group_rows(n: int, groups: np.ndarray | Sequence[str] | None) -> list[np.ndarray]:
    if groups is None:
        return [np.array([i]) for i in range(n)]
    g = np.asarray(groups)
    if g.shape[0] != n:
        raise ConfigError(f"groups has {g.shape[0]} entries for {n} rows: give one group (patient id) per row")
    _, inverse = np.unique(g, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.flatnonzero(np.diff(inverse[order])) + 1
    return list(np.split(order, bounds))


def resample_indices(n: int, groups: np.ndarray | Sequence[str] | None = None, n_boot: int = 1000,
                     seed: int = 0) -> list[np.ndarray]:
    """``n_boot`` bootstrap resamples of row indices; with ``groups``, whole groups are drawn with replacement.

    Raises:
        ConfigError: no rows, or ``groups`` of the wrong length.
    """
    if n <= 0:
        raise ConfigError("cannot bootstrap a metric over 0 rows: the split is empty")
    clusters = _group_rows(n, groups)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(clusters), size=(n_boot, len(clusters)))
    if groups is None:
        return [d.astype(np.int64) for d in draws]
    return [np.concatenate([clusters[j] for j in d]).astype(np.int64) for d in draws]


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    finite = values[~np.isnan(values)]
    if finite.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(low), float(high)


def _estimate(value: float, values: np.ndarray, level: float) -> Estimate:
    low, high = _interval(values, level)
    return Estimate(float(value), low, high, level, int(np.sum(~np.isnan(values))))


def _check_level(level: float, n_boot: int) -> None:
    if not 0.0 < level < 1.0:
        raise ConfigError(f"level={level}: the interval's coverage must lie in (0, 1), e.g. 0.95")
    if n_boot < 0:
        raise ConfigError(f"n_boot={n_boot}: use 0 (no interval) or more resamples, e.g. 1000")


def bootstrap(metric: MetricFn, n: int, groups: np.ndarray | Sequence[str] | None = None, n_boot: int = 1000,
              seed: int = 0, level: float = 0.95) -> Estimate:
    """Percentile bootstrap interval of ``metric`` over ``n`` rows.

    Args:
        metric: ``metric(idx)`` → the metric on rows ``idx`` (int array, repeats allowed); nan if undefined.
        n: number of rows.
        groups: one cluster id per row (patient ids) → patient-level resampling; None resamples rows.
        n_boot: resamples drawn; 0 gives the point value with a nan interval.
        seed: seed of the resampling.
        level: coverage of the interval.
    """
    _check_level(level, n_boot)
    value = metric(np.arange(n)) if n > 0 else float("nan")
    if n_boot == 0 or n == 0:
        return Estimate(float(value), float("nan"), float("nan"), level, 0)
    values = np.array([metric(idx) for idx in resample_indices(n, groups, n_boot, seed)], dtype=float)
    return _estimate(value, values, level)


def paired_bootstrap(metric_a: MetricFn, metric_b: MetricFn, n: int,
                     groups: np.ndarray | Sequence[str] | None = None, n_boot: int = 1000, seed: int = 0,
                     level: float = 0.95) -> PairedEstimate:
    """Compare two models on the same rows with the same resamples (B - A).

    Both metric functions index the same rows (align predictions by sample id first). The p-value is
    two-sided: twice the smaller share of resamples on either side of 0, at most 1.
    """
    _check_level(level, n_boot)
    full = np.arange(n)
    va, vb = (metric_a(full), metric_b(full)) if n > 0 else (float("nan"), float("nan"))
    if n_boot == 0 or n == 0:
        nan = float("nan")
        return PairedEstimate(Estimate(va, nan, nan, level, 0), Estimate(vb, nan, nan, level, 0),
                              Estimate(vb - va, nan, nan, level, 0), nan)
    draws = resample_indices(n, groups, n_boot, seed)
    a = np.array([metric_a(idx) for idx in draws], dtype=float)
    b = np.array([metric_b(idx) for idx in draws], dtype=float)
    d = b - a
    finite = d[~np.isnan(d)]
    p = float("nan") if finite.size == 0 else min(1.0, 2.0 * min(np.mean(finite <= 0), np.mean(finite >= 0)))
    return PairedEstimate(_estimate(va, a, level), _estimate(vb, b, level), _estimate(vb - va, d, level), p)
