"""Data-scaling analysis: fit a saturating power law to runs at nested data sizes and extrapolate.

The law is ``metric(x) = a - b * (x / x0) ** (-c)`` with ``b >= 0`` and ``c > 0`` (for a metric where
higher is better; ``a + b * (x / x0) ** (-c)`` for a loss), ``x`` the training samples or the training
compute (FLOPs) and ``x0`` the smallest ``x`` seen (so the fit is well conditioned at any scale): ``a``
is the asymptote, ``c`` how fast it is approached. The band and the 2x / 10x predictions come from a
parametric bootstrap: every point is redrawn from a normal matching its confidence interval and the law
refitted. With as many points as parameters (3) the fit passes through them: the band then shows only
the propagated measurement noise, not model error. Extrapolation far beyond the data is a guess.
"""

from __future__ import annotations

import io as _stdio
import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: pipelines and CI have no display
import matplotlib.pyplot as plt
import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.stats import norm

from rfm_data import io
from rfm_data.errors import ConfigError
from rfm_eval.stats import Estimate

__all__ = ["ScalingAxis", "ScalingFit", "ScalingPoint", "ScalingPrediction", "ScalingReport", "fit_scaling",
           "scaling_report"]


class ScalingAxis(str, Enum):
    """What the metric is scaled against."""

    SAMPLES = "samples"  # training images (data size)
    COMPUTE = "compute"  # training FLOPs (rfm-models' cumulative ``flops`` counter)


@dataclass(frozen=True)
class ScalingPoint:
    """One run: its data size, compute, and metric with CI (``low``/``high`` nan when none).

    ``compute`` is the run's cumulative training FLOPs (``ComputeCounters.flops``); 0 = unknown.
    """

    samples: float
    value: float
    low: float = math.nan
    high: float = math.nan
    compute: float = 0.0
    label: str = ""

    @classmethod
    def from_estimate(cls, samples: float, estimate: Estimate, compute: float = 0.0, label: str = ""
                      ) -> ScalingPoint:
        """A point from an rfm-eval :class:`~rfm_eval.stats.Estimate`."""
        return cls(samples, estimate.value, estimate.low, estimate.high, compute, label)

    def x(self, axis: ScalingAxis) -> float:
        """This point's coordinate on ``axis``."""
        return self.samples if axis is ScalingAxis.SAMPLES else self.compute


@dataclass(frozen=True)
class ScalingPrediction:
    """The fitted metric at ``factor`` times the largest observed ``x``, and the gain over that largest run."""

    factor: float
    x: float
    value: Estimate
    gain: Estimate


@dataclass
class ScalingFit:
    """A fitted law plus its bootstrap band; ``curve_*`` are on ``grid`` (log-spaced, up to 10x beyond)."""

    axis: ScalingAxis
    a: float
    b: float
    c: float
    x0: float
    increasing: bool
    points: list[ScalingPoint]
    predictions: list[ScalingPrediction]
    grid: list[float]
    curve: list[float]
    curve_low: list[float]
    curve_high: list[float]
    rmse: float
    level: float
    n_boot: int
    n_failed: int = 0

    def predict(self, x: np.ndarray | float) -> np.ndarray:
        """The fitted metric at ``x`` (same units as the fitted axis)."""
        return _law(np.asarray(x, dtype=np.float64) / self.x0, self.a, self.b, self.c, self.increasing)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields (nan → None)."""
        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, list):
                return [clean(x) for x in v]
            return v.value if isinstance(v, Enum) else v
        return {k: clean(v) for k, v in asdict(self).items()}


def _law(x: np.ndarray, a: float, b: float, c: float, increasing: bool = True) -> np.ndarray:
    term = b * np.power(x, -c)
    return np.asarray(a - term if increasing else a + term)


def _validate(points: Sequence[ScalingPoint], axis: ScalingAxis) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not points:
        raise ConfigError("fit_scaling got no points: give one ScalingPoint per run")
    for i, p in enumerate(points):
        name = p.label or f"point {i}"
        if not (math.isfinite(p.x(axis)) and p.x(axis) > 0):
            raise ConfigError(f"{name}: {axis.value}={p.x(axis)!r} must be a finite number > 0"
                              + (" (set ScalingPoint.compute from the run's flops counter)"
                                 if axis is ScalingAxis.COMPUTE else ""))
        if not math.isfinite(p.value):
            raise ConfigError(f"{name}: metric value {p.value!r} is not finite: drop the run or fix its metric")
    x = np.array([p.x(axis) for p in points], dtype=np.float64)
    if np.unique(x).size < 3:
        raise ConfigError(f"a saturating power law has 3 parameters: need runs at >= 3 distinct {axis.value} "
                          f"values, got {np.unique(x).size}")
    y = np.array([p.value for p in points], dtype=np.float64)
    return x, y, _sigmas(points)


def _sigmas(points: Sequence[ScalingPoint], level: float = 0.95) -> np.ndarray:
    """Standard error per point from its CI (normal approximation); nan where the point has no CI."""
    z = float(norm.ppf(0.5 + level / 2))
    return np.array([(p.high - p.low) / (2 * z) if math.isfinite(p.high - p.low) else math.nan
                     for p in points])


def _fit_once(x: np.ndarray, y: np.ndarray, increasing: bool) -> tuple[float, float, float]:
    """Least-squares ``(a, b, c)`` with bounds b >= 0, 1e-3 <= c <= 5 (x already divided by x0)."""
    spread = float(np.ptp(y)) or 1e-6
    start = (float(y.max() + 0.1 * spread) if increasing else float(y.min() - 0.1 * spread), spread, 0.5)
    bounds = ([-np.inf, 0.0, 1e-3], [np.inf, np.inf, 5.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)  # covariance is not used
        params, _ = curve_fit(lambda t, a, b, c: _law(t, a, b, c, increasing), x, y, p0=start,
                              bounds=bounds, maxfev=20000)
    return float(params[0]), float(params[1]), float(params[2])


@dataclass
class _Boot:
    curves: list[np.ndarray] = field(default_factory=list)
    failed: int = 0


def _bootstrap(x: np.ndarray, y: np.ndarray, sigma: np.ndarray, evaluate_at: np.ndarray, increasing: bool,
               n_boot: int, seed: int) -> _Boot:
    rng = np.random.default_rng(seed)
    boot = _Boot()
    for _ in range(n_boot):
        draw = y + rng.standard_normal(y.shape) * sigma
        try:
            a, b, c = _fit_once(x, draw, increasing)
        except (RuntimeError, ValueError):
            boot.failed += 1
            continue
        boot.curves.append(_law(evaluate_at, a, b, c, increasing))
    return boot


def _interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    if samples.size == 0:
        return math.nan, math.nan
    tail = (1 - level) / 2 * 100
    return float(np.percentile(samples, tail)), float(np.percentile(samples, 100 - tail))


def _prediction(k: int, factor: float, x_max: float, x0: float, fitted: np.ndarray, curves: np.ndarray,
                level: float, n: int) -> ScalingPrediction:
    """Fitted values: ``fitted``/``curves`` columns are [grid..., x_max, factor_1 x_max, ...]."""
    base, col = fitted[-1 - n], fitted[-n + k]
    value = Estimate(float(col), *_interval(curves[:, -n + k], level), level, len(curves))
    gains = curves[:, -n + k] - curves[:, -1 - n]
    return ScalingPrediction(factor, factor * x_max, value,
                             Estimate(float(col - base), *_interval(gains, level), level, len(curves)))


def fit_scaling(points: Sequence[ScalingPoint], axis: ScalingAxis | str = ScalingAxis.SAMPLES,
                increasing: bool = True, factors: Sequence[float] = (2.0, 10.0), n_boot: int = 500,
                level: float = 0.95, seed: int = 0) -> ScalingFit:
    """Fit ``metric = a - b (x/x0)^-c`` to ``points`` on ``axis`` and predict the metric at ``factors`` times
    the largest ``x``.

    Args:
        points: one per run (at least 3 distinct ``x``).
        axis: ``samples`` or ``compute``.
        increasing: True for metrics where higher is better (AUROC, Dice); False for losses.
        factors: multiples of the largest observed ``x`` to predict at (2x and 10x more data).
        n_boot: parametric bootstrap refits for the band and prediction CIs. Points without a CI get the
            fit's residual standard deviation as their noise.
        level: interval coverage.
        seed: bootstrap seed.

    Raises:
        ConfigError: fewer than 3 distinct x, non-finite or non-positive values, or a fit that fails.
    """
    axis = ScalingAxis(axis)
    x, y, sigma = _validate(points, axis)
    x0 = float(x.min())
    try:
        a, b, c = _fit_once(x / x0, y, increasing)
    except (RuntimeError, ValueError) as err:
        raise ConfigError(f"the power law did not converge on these {len(x)} points ({err}): check that the "
                          "metric changes monotonically with data size") from err
    residual = y - _law(x / x0, a, b, c, increasing)
    rmse = float(np.sqrt(np.mean(residual**2)))
    sigma = np.where(np.isfinite(sigma), sigma, rmse)
    x_max = float(x.max())
    grid = np.geomspace(x0, x_max * max(10.0, *factors), 60)
    at = np.concatenate([grid, [x_max], [f * x_max for f in factors]]) / x0
    boot = _bootstrap(x / x0, y, sigma, at, increasing, n_boot, seed)
    curves = np.array(boot.curves).reshape(-1, at.size)
    fitted = _law(at, a, b, c, increasing)
    band = [_interval(curves[:, j], level) for j in range(grid.size)]
    preds = [_prediction(k, f, x_max, x0, fitted, curves, level, len(factors)) for k, f in enumerate(factors)]
    return ScalingFit(axis, a, b, c, x0, increasing, list(points), preds, grid.tolist(),
                      fitted[: grid.size].tolist(), [lo for lo, _ in band], [hi for _, hi in band], rmse,
                      level, len(curves), boot.failed)


@dataclass
class ScalingReport:
    """Fits per axis and the files written (``scaling.json``, ``scaling.md``, ``scaling_<axis>.png``)."""

    metric: str
    fits: dict[str, ScalingFit]
    files: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields."""
        return {"metric": self.metric, "fits": {k: f.to_dict() for k, f in self.fits.items()},
                "files": self.files}


def _plot(fit: ScalingFit, metric: str, url: str) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.fill_between(fit.grid, fit.curve_low, fit.curve_high, color="#4477aa", alpha=0.2,
                    label=f"{fit.level:.0%} band")
    ax.plot(fit.grid, fit.curve, color="#4477aa",
            label=f"fit {fit.a:.3f} {'-' if fit.increasing else '+'} {fit.b:.3f}·(x/x0)^-{fit.c:.2f}")
    xs = np.array([p.x(fit.axis) for p in fit.points])
    ys = np.array([p.value for p in fit.points])
    lows = np.array([p.low for p in fit.points])
    highs = np.array([p.high for p in fit.points])
    err = np.nan_to_num(np.vstack([ys - lows, highs - ys]), nan=0.0)
    ax.errorbar(xs, ys, yerr=err, fmt="o", color="black", capsize=3, label="runs (95 % CI)")
    for pred in fit.predictions:
        ax.errorbar([pred.x], [pred.value.value], yerr=[[pred.value.value - pred.value.low],
                    [pred.value.high - pred.value.value]], fmt="s", color="#cc6677", capsize=3)
        ax.annotate(f"{pred.factor:g}x: {pred.gain.value:+.3f}", (pred.x, pred.value.value), fontsize=7,
                    textcoords="offset points", xytext=(4, -10))
    ax.set_xscale("log")
    ax.set_xlabel("training samples" if fit.axis is ScalingAxis.SAMPLES else "training compute (FLOPs)")
    ax.set_ylabel(metric)
    ax.legend(fontsize=7, loc="lower right" if fit.increasing else "upper right")
    buffer = _stdio.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    io.write_bytes(url, buffer.getvalue())


def _markdown(report: ScalingReport) -> str:
    lines = [f"# Data scaling: {report.metric}", ""]
    for axis, fit in report.fits.items():
        sign = "-" if fit.increasing else "+"
        lines += [f"## vs {axis}", "",
                  f"Fit: {report.metric} = {fit.a:.4f} {sign} {fit.b:.4f}·(x/{fit.x0:.4g})^-{fit.c:.3f} "
                  f"(RMSE {fit.rmse:.4f}, {fit.n_boot} bootstrap refits, {fit.n_failed} failed).", "",
                  "| runs | x | metric |", "|---|---|---|"]
        lines += [f"| {p.label or i} | {p.x(fit.axis):.4g} | "
                  f"{Estimate(p.value, p.low, p.high, fit.level, 0).format()} |" for i, p in enumerate(fit.points)]
        lines += ["", "| more data | x | predicted | gain over largest run |", "|---|---|---|---|"]
        lines += [f"| {p.factor:g}x | {p.x:.4g} | {p.value.format()} | {p.gain.format()} |"
                  for p in fit.predictions]
        lines += ["", f"![scaling vs {axis}](scaling_{axis}.png)", ""]
    return "\n".join(lines)


def scaling_report(points: Sequence[ScalingPoint], out: str, metric: str = "metric",
                   axes: Sequence[ScalingAxis | str] | None = None, increasing: bool = True,
                   factors: Sequence[float] = (2.0, 10.0), n_boot: int = 500, seed: int = 0) -> ScalingReport:
    """Fit the law on each axis and write ``scaling.json``, ``scaling.md`` and one PNG per axis to ``out``.

    Args:
        points: one per run.
        out: output folder URL.
        metric: the metric's name, for labels.
        axes: axes to fit; default ``samples``, plus ``compute`` when every point has its FLOPs.
        increasing, factors, n_boot, seed: as in :func:`fit_scaling`.
    """
    if axes is None:
        axes = [ScalingAxis.SAMPLES] + ([ScalingAxis.COMPUTE] if points and all(p.compute > 0 for p in points)
                                        else [])
    fits = {ScalingAxis(a).value: fit_scaling(points, a, increasing, factors, n_boot, seed=seed) for a in axes}
    io.makedirs(out)
    files = {"json": io.join(out, "scaling.json"), "markdown": io.join(out, "scaling.md")}
    for axis, fit in fits.items():
        files[f"plot_{axis}"] = io.join(out, f"scaling_{axis}.png")
        _plot(fit, metric, files[f"plot_{axis}"])
    report = ScalingReport(metric, fits, files)
    io.write_text(files["json"], json.dumps(report.to_dict(), indent=2))
    io.write_text(files["markdown"], _markdown(report))
    return report
