"""Cross-modal retrieval: image→text and text→image recall@K and median rank over image-report pairs.

Rows are the images with a non-empty report; the gallery of texts is their reports. Several images of one
study may share a report, so every text equal to an image's report counts as a right answer (and vice
versa). Ranks are computed once against the whole gallery; the bootstrap resamples query rows.
"""

from __future__ import annotations

import numpy as np
import torch

from rfm_eval.plots import figure, save_figure
from rfm_eval.stats import MetricFn
from rfm_eval.tasks.base import (
    NotApplicableError,
    Predictions,
    Task,
    TaskContext,
    TaskOutput,
    TaskResult,
    register_task,
)

__all__ = ["RetrievalTask", "first_hit_rank"]


def first_hit_rank(sim: np.ndarray, match: np.ndarray) -> np.ndarray:
    """1-based rank of the best-ranked right answer of each row of ``sim`` (``match`` marks right answers)."""
    order = np.argsort(-sim, axis=1, kind="stable")
    hits = np.take_along_axis(match, order, axis=1)
    rank: np.ndarray = (hits.argmax(axis=1) + 1).astype(np.int64)
    return rank


def _recall_fn(rank: np.ndarray, k: int) -> MetricFn:
    return lambda idx: float(np.mean(rank[idx] <= k))


def _median_fn(rank: np.ndarray) -> MetricFn:
    return lambda idx: float(np.median(rank[idx]))


@register_task("retrieval")
class RetrievalTask(Task):
    """Image↔report retrieval (needs a vision-language model).

    Args:
        ks: the K of recall@K.
        text_batch_size: reports per text forward pass.
    """

    needs_text = True

    def __init__(self, ks: tuple[int, ...] = (1, 5, 10), text_batch_size: int = 32) -> None:
        self.ks, self.text_batch_size = tuple(int(k) for k in ks), text_batch_size

    @torch.inference_mode()
    def predict(self, ctx: TaskContext) -> TaskOutput:
        feats = ctx.features(ctx.split)
        assert feats.image_emb is not None
        rows = [i for i, r in enumerate(feats.reports) if r]
        if len(rows) < 2:
            raise NotApplicableError(f"needs at least 2 images with a report in split {ctx.split!r}; found {len(rows)}")
        model = ctx.model.vision_language()
        reports = [feats.reports[i] for i in rows]
        text = torch.cat([model.encode_text(reports[i:i + self.text_batch_size]).float()
                          for i in range(0, len(reports), self.text_batch_size)]).cpu().numpy()
        sim = feats.image_emb[rows] @ text.T
        codes = np.unique(np.array(reports), return_inverse=True)[1]
        match = codes[:, None] == codes[None, :]
        arrays = {"i2t_rank": first_hit_rank(sim, match), "t2i_rank": first_hit_rank(sim.T, match.T)}
        preds = Predictions([feats.sample_ids[i] for i in rows], [feats.patient_ids[i] for i in rows], arrays,
                            {"ks": list(self.ks), "gallery": len(rows)})
        details = {"images": len(rows), "distinct_reports": int(codes.max() + 1),
                   "chance_R@1": float(match.sum(axis=1).mean() / len(rows))}
        return TaskOutput(preds, details)

    def metrics(self, predictions: Predictions) -> dict[str, MetricFn]:
        fns: dict[str, MetricFn] = {}
        for direction in ("i2t", "t2i"):
            rank = predictions.arrays[f"{direction}_rank"]
            for k in predictions.meta["ks"]:
                fns[f"{direction}_R@{k}"] = _recall_fn(rank, int(k))
            fns[f"{direction}_median_rank"] = _median_fn(rank)
        return fns

    def plot(self, predictions: Predictions, result: TaskResult, url: str) -> bool:
        fig, ax = figure(6.0, 3.5)
        ks = predictions.meta["ks"]
        width = 0.38
        for j, direction in enumerate(("i2t", "t2i")):
            ests = [result.headline[f"{direction}_R@{k}"] for k in ks]
            x = np.arange(len(ks)) + (j - 0.5) * width
            err = np.array([[e.value - e.low, e.high - e.value] for e in ests]).T
            ax.bar(x, [e.value for e in ests], width, yerr=np.nan_to_num(err), capsize=3,
                   label="image→text" if direction == "i2t" else "text→image")
        ax.set_xticks(np.arange(len(ks)), [f"R@{k}" for k in ks])
        ax.set(ylabel="recall", ylim=(0, 1), title=f"retrieval over {predictions.meta['gallery']} pairs")
        ax.legend()
        save_figure(fig, url)
        return True
