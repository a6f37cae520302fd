"""Adapted evaluation on frozen features: linear probe (logistic regression) at label fractions, and kNN.

Label fractions subsample the *train* split by patient (seeded), then add patients until every observation
has at least one positive and one negative training example where the full split has them. Multi-label
protocols fit one logistic regression per observation (one-vs-rest, uncertain rows left out); multi-class
ones one multinomial model over the samples with exactly one positive class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from rfm_data.errors import ConfigError
from rfm_eval.features import FeatureSet
from rfm_eval.plots import figure, save_figure
from rfm_eval.protocol import LabelMode, Protocol
from rfm_eval.stats import MetricFn
from rfm_eval.tasks.base import Predictions, Task, TaskContext, TaskOutput, TaskResult, register_task
from rfm_eval.tasks.common import class_counts, classification_metrics, plot_roc, targets

__all__ = ["KnnTask", "LinearProbeTask", "fraction_rows", "fraction_tag"]


def fraction_tag(fraction: float) -> str:
    """``@1%``, ``@10%``, ``@100%``."""
    return f"@{fraction * 100:g}%"


def _binary(y: np.ndarray, c: int) -> np.ndarray:
    """Column ``c`` as 1 / 0 / -1 (multi-class targets become one-vs-rest)."""
    return np.where(y < 0, -1, (y == c).astype(np.int8)) if y.ndim == 1 else y[:, c]


def fraction_rows(patients: Sequence[str], y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Train rows of a seeded patient subsample holding ``fraction`` of the patients (at least one).

    Where the subsample lacks a label value (positive or negative) of a class that the full split has, the
    first patient in the same seeded order who has it is added: few-label probes stay defined for rare classes
    without drifting far from the requested fraction.
    """
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"label fraction {fraction} must lie in (0, 1], e.g. 0.01, 0.1, 1.0")
    pats = np.asarray(patients)
    order = np.random.default_rng(seed).permutation(np.unique(pats))
    take = max(1, math.ceil(fraction * len(order)))
    chosen = np.isin(pats, order[:take])
    n_classes = int(y.max()) + 1 if y.ndim == 1 else y.shape[1]
    for c in range(n_classes):
        col = _binary(y, c)
        for value in (0, 1):
            if (col[chosen] == value).any() or not (col == value).any():
                continue
            has = set(pats[col == value].tolist())
            extra = next(p for p in order[take:] if p in has)
            chosen |= pats == extra
    return np.flatnonzero(chosen)


def _fit_predict_multilabel(make: Any, x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray) -> np.ndarray:
    out = np.full((x_te.shape[0], y_tr.shape[1]), np.nan, dtype=np.float32)
    for c in range(y_tr.shape[1]):
        keep = y_tr[:, c] >= 0
        if np.unique(y_tr[keep, c]).size < 2:
            continue  # one label value in training: no classifier, the class is reported undefined
        out[:, c] = make().fit(x_tr[keep], y_tr[keep, c]).predict_proba(x_te)[:, 1]
    return out


def _fit_predict_multiclass(make: Any, x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray,
                            n_classes: int) -> np.ndarray:
    keep = y_tr >= 0
    out = np.full((x_te.shape[0], n_classes), np.nan, dtype=np.float32)
    if np.unique(y_tr[keep]).size < 2:
        return out
    model = make().fit(x_tr[keep], y_tr[keep])
    out[:, model.classes_] = model.predict_proba(x_te)
    return np.nan_to_num(out, nan=0.0)


def _fit_predict(make: Any, x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, protocol: Protocol) -> np.ndarray:
    # One BLAS thread: these fits are small, and on a shared CPU a multi-threaded BLAS spends 100x longer
    # synchronising than computing (lbfgs on 1,400 x 512: 19 s with default threads, 0.15 s with one).
    with threadpool_limits(1):
        if protocol.mode == LabelMode.MULTI_CLASS:
            return _fit_predict_multiclass(make, x_tr, y_tr, x_te, len(protocol.observations))
        return _fit_predict_multilabel(make, x_tr, y_tr, x_te)


def _train_test(ctx: TaskContext) -> tuple[FeatureSet, FeatureSet, np.ndarray, np.ndarray]:
    train, test = ctx.features(ctx.train_split), ctx.features(ctx.split)
    return train, test, targets(train, ctx.protocol), targets(test, ctx.protocol)


class _ScoresTask(Task):
    """Common metrics and plot of tasks that save ``y`` and ``score@<fraction>`` arrays."""

    def metrics(self, predictions: Predictions) -> dict[str, MetricFn]:
        meta, fns = predictions.meta, {}
        y = predictions.arrays["y"]
        for tag in meta["tags"]:
            fns.update(classification_metrics(y, predictions.arrays[f"score{tag}"], meta["classes"],
                                              LabelMode(meta["mode"]), tag, per_class=tag == meta["tags"][-1]))
        return fns

    def plot(self, predictions: Predictions, result: TaskResult, url: str) -> bool:
        tags = predictions.meta["tags"]
        if len(tags) == 1:
            plot_roc(predictions.arrays["y"], predictions.arrays[f"score{tags[0]}"], predictions.meta["classes"],
                     result.headline, url, f"{self.name} ROC ({tags[0][1:]} labels)")
            return True
        fig, ax = figure(5.5, 3.8)
        xs = [float(t[1:-1]) for t in tags]
        ests = [result.headline[f"auroc_macro{t}"] for t in tags]
        ax.errorbar(xs, [e.value for e in ests], capsize=3, marker="o",
                    yerr=np.nan_to_num(np.array([[e.value - e.low, e.high - e.value] for e in ests]).T))
        ax.set(xscale="log", xlabel="label fraction of the train split (%)", ylabel="macro AUROC (95% CI)",
               title=f"{self.name}: AUROC vs labels")
        save_figure(fig, url)
        return True


@register_task("linear_probe")
class LinearProbeTask(_ScoresTask):
    """Logistic regression on frozen, standardised image-encoder features.

    Args:
        fractions: label fractions of the train split.
        c: inverse L2 regularisation strength.
        max_iter: solver iterations.
    """

    def __init__(self, fractions: Sequence[float] = (1.0,), c: float = 1.0, max_iter: int = 2000) -> None:
        self.fractions = sorted(float(f) for f in fractions)
        for f in self.fractions:
            fraction_rows(["p"], np.zeros((1, 1), dtype=np.int8), f, 0)  # validates early
        self.c, self.max_iter = c, max_iter

    def _make(self) -> LogisticRegression:
        return LogisticRegression(C=self.c, max_iter=self.max_iter)

    def predict(self, ctx: TaskContext) -> TaskOutput:
        train, test, y_tr, y_te = _train_test(ctx)
        scaler = StandardScaler().fit(train.features)
        x_tr, x_te = scaler.transform(train.features), scaler.transform(test.features)
        arrays: dict[str, np.ndarray] = {"y": y_te}
        used = {}
        for f in self.fractions:
            rows = fraction_rows(train.patient_ids, y_tr, f, ctx.seed)
            used[fraction_tag(f)] = {"samples": len(rows), "patients": len({train.patient_ids[i] for i in rows})}
            arrays[f"score{fraction_tag(f)}"] = _fit_predict(self._make, x_tr[rows], y_tr[rows], x_te, ctx.protocol)
        meta = {"classes": list(ctx.protocol.observations), "mode": ctx.protocol.mode.value,
                "tags": [fraction_tag(f) for f in self.fractions]}
        details = {"train": used, "counts_test": class_counts(y_te, ctx.protocol),
                   "counts_train": class_counts(y_tr, ctx.protocol)}
        return TaskOutput(Predictions(test.sample_ids, test.patient_ids, arrays, meta), details)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return out


@register_task("knn")
class KnnTask(_ScoresTask):
    """k-nearest-neighbour classification with cosine similarity on frozen features.

    Args:
        k: neighbours (capped at the training rows available).
        weights: sklearn ``weights`` ("uniform" or "distance").
    """

    def __init__(self, k: int = 20, weights: str = "distance") -> None:
        if k < 1:
            raise ConfigError(f"knn k={k}: use at least 1 neighbour, e.g. 20")
        self.k, self.weights = int(k), weights

    def predict(self, ctx: TaskContext) -> TaskOutput:
        train, test, y_tr, y_te = _train_test(ctx)
        x_tr, x_te = _unit_rows(train.features), _unit_rows(test.features)

        def make() -> KNeighborsClassifier:
            # Euclidean distance on unit vectors ranks neighbours exactly as cosine similarity does.
            return KNeighborsClassifier(n_neighbors=min(self.k, len(x_tr)), weights=self.weights)

        score = _fit_predict(make, x_tr, y_tr, x_te, ctx.protocol)
        meta = {"classes": list(ctx.protocol.observations), "mode": ctx.protocol.mode.value, "tags": ["@100%"]}
        details = {"k": self.k, "train_samples": len(x_tr), "counts_test": class_counts(y_te, ctx.protocol)}
        return TaskOutput(Predictions(test.sample_ids, test.patient_ids, {"y": y_te, "score@100%": score}, meta),
                          details)
