"""The ``segmentation`` evaluation task: a thin adapter over :mod:`rfm_eval.segmentation`.

Masks do not live in the shard dataset: the task reads them from a registered mask source
(``mask_sources``) at ``data_root``. It trains the decoder on ``ctx.train_split`` and scores ``ctx.split``;
predictions hold per-image Dice and HD95 (``(n, classes)``) so ``rfm-eval compare`` can pair two models.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import numpy as np

from rfm_data.errors import ConfigError
from rfm_eval.segmentation.data import mask_sources
from rfm_eval.segmentation.report import write_outputs
from rfm_eval.segmentation.run import SegmentationResult, mean_defined, train_and_score
from rfm_eval.segmentation.train import PerImageScore, SegmentationConfig
from rfm_eval.stats import Estimate, MetricFn
from rfm_eval.tasks.base import Predictions, Task, TaskContext, TaskOutput, register_task

__all__ = ["SegmentationTask"]

# Splits, seed and device come from the evaluation run, not from task options.
_CONFIG_FIELDS = {f.name for f in fields(SegmentationConfig)} - {"train_split", "eval_split", "seed", "device"}


@register_task("segmentation")
class SegmentationTask(Task):
    """Encoder + UNet-style decoder; headline ``dice_<class>`` and ``hd95_<class>`` (pixels at ``image_size``).

    Args:
        data_root: the dataset folder the mask source reads (e.g. ``.../covid_chestxray_ieee8023``).
        source: a registered mask source (default lungs on covid_chestxray_ieee8023).
        **options: :class:`~rfm_eval.segmentation.SegmentationConfig` fields (``image_size``, ``epochs``,
            ``encoder_mode``, ...); splits, seed and device come from the evaluation run.
    """

    def __init__(self, data_root: str = "", source: str = "covid_chestxray_ieee8023_lungs",
                 **options: Any) -> None:
        if not data_root:
            raise ConfigError("task segmentation needs data_root: the folder of the mask source's dataset")
        if source not in mask_sources:
            raise ConfigError(f"task segmentation: unknown source {source!r}; known: {mask_sources.names()}")
        unknown = sorted(set(options) - _CONFIG_FIELDS)
        if unknown:
            raise ConfigError(f"task segmentation does not take {unknown}; its options are "
                              f"{sorted(_CONFIG_FIELDS | {'data_root', 'source'})}")
        self.data_root, self.source, self.options = data_root, source, options

    def predict(self, ctx: TaskContext) -> TaskOutput:
        """Train on ``ctx.train_split``, score ``ctx.split``; overlays and summary go to ``ctx.out``."""
        cfg = SegmentationConfig(**self.options, train_split=ctx.train_split, eval_split=ctx.split,
                                 seed=ctx.seed, device=ctx.model.device)
        scored = train_and_score(ctx.model, self.source, cfg, self.data_root)
        classes = scored.source.classes
        per_image = [PerImageScore(s.sample_id, s.patient_id, c, float(scored.dice[i, k]),
                                   float(scored.hd95[i, k]))
                     for i, s in enumerate(scored.samples) for k, c in enumerate(classes)]
        nan = Estimate(float("nan"), float("nan"), float("nan"), 0.95, 0)
        # The runner bootstraps the headline; the summary here carries point values only.
        summary = SegmentationResult(scored.source.name, scored.source.mask_origin, scored.encoder_name, cfg,
                                     dict.fromkeys(classes, nan), dict.fromkeys(classes, nan),
                                     scored.n_train, len(scored.samples),
                                     len({s.patient_id for s in scored.samples}), scored.history,
                                     scored.seconds, per_image)
        files = write_outputs(summary, ctx.out, scored.images, scored.masks, scored.pred, scored.dice)
        predictions = Predictions([s.sample_id for s in scored.samples], [s.patient_id for s in scored.samples],
                                  {"dice": scored.dice, "hd95": scored.hd95}, {"classes": list(classes)})
        details = {"source": scored.source.name, "mask_origin": scored.source.mask_origin,
                   "config": cfg.to_dict(), "n_train": scored.n_train, "loss_history": scored.history,
                   "train_seconds": scored.seconds, "files": files}
        return TaskOutput(predictions, details)

    def metrics(self, predictions: Predictions) -> dict[str, MetricFn]:
        """Mean Dice and mean HD95 per class over the images where each is defined."""
        out: dict[str, MetricFn] = {}
        for k, name in enumerate(predictions.meta["classes"]):
            out[f"dice_{name}"] = mean_defined(np.asarray(predictions.arrays["dice"])[:, k])
            out[f"hd95_{name}"] = mean_defined(np.asarray(predictions.arrays["hd95"])[:, k])
        return out
