"""Shared pieces of the classification tasks: targets from a protocol, metric functions, ROC plots.

Every classification task (zero-shot, linear probe, kNN, fine-tuning) saves ``y`` and ``score@<tag>``
arrays and gets its metrics from :func:`classification_metrics`: AUROC per observation and macro (sklearn,
undefined → nan) for multi-label protocols; accuracy and one-vs-rest macro AUROC for multi-class ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, roc_auc_score, roc_curve

from rfm_eval.features import FeatureSet
from rfm_eval.plots import figure, save_figure
from rfm_eval.protocol import LabelMode, Protocol, class_index, label_matrix
from rfm_eval.stats import MetricFn, safe_auroc

__all__ = ["class_counts", "classification_metrics", "plot_roc", "targets"]


def targets(feats: FeatureSet, protocol: Protocol) -> np.ndarray:
    """``(n, C)`` int8 1/0/-1 labels (multi-label) or ``(n,)`` class indices, -1 = unusable (multi-class)."""
    if protocol.mode == LabelMode.MULTI_CLASS:
        return class_index(feats.labels, protocol.observations)
    return label_matrix(feats.labels, protocol.observations, protocol.absent_label)


def class_counts(y: np.ndarray, protocol: Protocol) -> dict[str, dict[str, int]]:
    """Positives / negatives / ignored per observation (for the report: a class with one value is visible)."""
    out = {}
    for c, name in enumerate(protocol.observations):
        col = (np.where(y < 0, -1, (y == c).astype(int)) if y.ndim == 1 else y[:, c])
        out[name] = {"positive": int((col == 1).sum()), "negative": int((col == 0).sum()),
                     "ignored": int((col < 0).sum())}
    return out


def _auroc_fn(y: np.ndarray, s: np.ndarray) -> MetricFn:
    # The macro metric re-evaluates every per-class AUROC on the same resamples: remember them by content.
    memo: dict[bytes, float] = {}

    def fn(idx: np.ndarray) -> float:
        key = hashlib.blake2b(np.ascontiguousarray(idx).tobytes(), digest_size=16).digest()
        if key not in memo:
            yi, si = y[idx], s[idx]
            keep = (yi >= 0) & ~np.isnan(si)
            memo[key] = safe_auroc(yi[keep], si[keep])
        return memo[key]
    return fn


def _macro_fn(fns: Sequence[MetricFn]) -> MetricFn:
    def fn(idx: np.ndarray) -> float:
        values = [f(idx) for f in fns]
        defined = [v for v in values if not np.isnan(v)]
        return float(np.mean(defined)) if defined else float("nan")
    return fn


def _multiclass_fns(y: np.ndarray, s: np.ndarray, tag: str, classes: Sequence[str]) -> dict[str, MetricFn]:
    n_classes = len(classes)

    def accuracy(idx: np.ndarray) -> float:
        yi, si = y[idx], s[idx]
        keep = yi >= 0
        return float(accuracy_score(yi[keep], si[keep].argmax(axis=1))) if keep.any() else float("nan")

    def macro(idx: np.ndarray) -> float:
        yi, si = y[idx], s[idx]
        keep = yi >= 0
        if np.unique(yi[keep]).size < n_classes:
            return float("nan")  # one-vs-rest macro AUROC needs every class present
        return float(roc_auc_score(yi[keep], si[keep], multi_class="ovr", average="macro",
                                   labels=list(range(n_classes))))

    fns: dict[str, MetricFn] = {f"accuracy{tag}": accuracy, f"auroc_macro{tag}": macro}
    for c, name in enumerate(classes):
        fns[f"auroc[{name}]{tag}"] = _auroc_fn(np.where(y < 0, -1, (y == c).astype(np.int8)), s[:, c])
    return fns


def classification_metrics(y: np.ndarray, scores: np.ndarray, classes: Sequence[str], mode: LabelMode,
                           tag: str = "", per_class: bool = True) -> dict[str, MetricFn]:
    """Metric functions of row indices for one score matrix ``(n, C)``.

    Args:
        y: targets from :func:`targets`.
        scores: per-class scores (probabilities for multi-class); nan rows/classes are ignored.
        classes: observation names, column order.
        mode: multi-label or multi-class.
        tag: suffix of every metric name (e.g. ``@10%``).
        per_class: also report each observation's AUROC.
    """
    if mode == LabelMode.MULTI_CLASS:
        fns = _multiclass_fns(y, scores, tag, classes)
        return fns if per_class else {k: v for k, v in fns.items() if not k.startswith("auroc[")}
    per = {f"auroc[{name}]{tag}": _auroc_fn(y[:, c], scores[:, c]) for c, name in enumerate(classes)}
    out: dict[str, MetricFn] = {f"auroc_macro{tag}": _macro_fn(list(per.values()))}
    if per_class:
        out.update(per)
    return out


def _binary(y: np.ndarray, c: int) -> np.ndarray:
    return np.where(y < 0, -1, (y == c).astype(np.int8)) if y.ndim == 1 else y[:, c]


def plot_roc(y: np.ndarray, scores: np.ndarray, classes: Sequence[str], headline: dict[str, Any], url: str,
             title: str) -> None:
    """One ROC curve per observation (where defined), AUROC with its CI in the legend."""
    fig, ax = figure(5.0, 5.0)
    for c, name in enumerate(classes):
        yc, sc = _binary(y, c), scores[:, c]
        keep = (yc >= 0) & ~np.isnan(sc)
        if np.unique(yc[keep]).size < 2:
            continue
        fpr, tpr, _ = roc_curve(yc[keep], sc[keep])
        est = next((v for k, v in headline.items() if k.startswith(f"auroc[{name}]")), None)
        label = f"{name}: {est.format(2)}" if est is not None else name
        ax.plot(fpr, tpr, lw=1.5, label=label)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=7, loc="lower right")
    save_figure(fig, url)
