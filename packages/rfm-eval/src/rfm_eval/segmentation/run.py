"""``run_segmentation``: train a decoder on an rfm image encoder, score Dice / HD95 with patient-level CIs."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rfm_data.errors import ConfigError
from rfm_eval.handle import ModelHandle, open_model
from rfm_eval.segmentation.data import SegmentationSource, SegSample, mask_sources
from rfm_eval.segmentation.model import SegmentationModel
from rfm_eval.segmentation.report import write_outputs
from rfm_eval.segmentation.train import (
    EncoderMode,
    PerImageScore,
    SegmentationConfig,
    evaluate_model,
    load_split,
    predict,
    train_model,
)
from rfm_eval.stats import Estimate, MetricFn, bootstrap
from rfm_models.encoders.image import ImageEncoder

__all__ = ["Scored", "SegmentationResult", "mean_defined", "run_segmentation", "train_and_score"]

EncoderLike = ImageEncoder | ModelHandle | str


@dataclass
class SegmentationResult:
    """Headline numbers and files of one run. ``dice`` / ``hd95``: class name → mean with 95 % CI."""

    source: str
    mask_origin: str
    encoder_name: str
    config: SegmentationConfig
    dice: dict[str, Estimate]
    hd95: dict[str, Estimate]
    n_train: int
    n_eval: int
    n_patients: int
    loss_history: list[float]
    train_seconds: float
    per_image: list[PerImageScore] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (per-image scores live in ``per_image.parquet``)."""
        return {"task": "segmentation", "source": self.source, "mask_origin": self.mask_origin,
                "encoder": self.encoder_name, "config": self.config.to_dict(),
                "dice": {k: v.to_dict() for k, v in self.dice.items()},
                "hd95_px": {k: v.to_dict() for k, v in self.hd95.items()},
                "n_train": self.n_train, "n_eval": self.n_eval, "n_patients": self.n_patients,
                "loss_history": self.loss_history, "train_seconds": self.train_seconds, "files": self.files}


def _encoder(encoder: EncoderLike, device: str) -> tuple[ImageEncoder, str]:
    if isinstance(encoder, ImageEncoder):
        return encoder, type(encoder.model).__name__
    handle = open_model(encoder, device=device) if isinstance(encoder, str) else encoder
    return handle.image_encoder(), handle.name


def _source(source: SegmentationSource | str, data_root: str | None) -> SegmentationSource:
    if isinstance(source, SegmentationSource):
        return source
    if data_root is None:
        raise ConfigError(f"mask source {source!r} needs data_root (the dataset folder)")
    try:
        return mask_sources.create(source, root=data_root)
    except KeyError as err:
        raise ConfigError(err.args[0]) from err


def mean_defined(values: np.ndarray) -> MetricFn:
    """``metric(idx)``: mean over the rows ``idx`` with a defined score (HD95 is nan on empty masks)."""
    def metric(idx: np.ndarray) -> float:
        picked = values[idx]
        return float(np.nanmean(picked)) if np.isfinite(picked).any() else float("nan")
    return metric


def _estimates(values: np.ndarray, groups: list[str], cfg: SegmentationConfig) -> Estimate:
    return bootstrap(mean_defined(values), len(values), groups=groups, n_boot=cfg.n_boot, seed=cfg.seed)


@dataclass
class Scored:
    """Everything a trained-and-scored run produced, before statistics: rows align with ``samples``."""

    source: SegmentationSource
    encoder_name: str
    samples: list[SegSample]
    images: torch.Tensor
    masks: torch.Tensor
    pred: torch.Tensor
    dice: np.ndarray  # (N, C)
    hd95: np.ndarray  # (N, C), pixels at the model input size
    history: list[float]
    seconds: float
    n_train: int


def train_and_score(encoder: EncoderLike, source: SegmentationSource | str, cfg: SegmentationConfig,
                    data_root: str | None = None) -> Scored:
    """Train the decoder on ``cfg.train_split`` and score ``cfg.eval_split`` (no bootstrap, no files)."""
    seg_source = _source(source, data_root)
    image_encoder, name = _encoder(encoder, cfg.device)
    torch.manual_seed(cfg.seed)  # decoder initialisation
    model = SegmentationModel(image_encoder, len(seg_source.classes), cfg.width,
                              freeze_encoder=cfg.encoder_mode is EncoderMode.FROZEN)
    eval_samples = seg_source.split(cfg.eval_split)[: cfg.max_eval or None]
    eval_x, eval_y = load_split(eval_samples, cfg.image_size, split=cfg.eval_split)
    train_x, train_y = load_split(seg_source.split(cfg.train_split), cfg.image_size, cfg.max_train,
                                  cfg.train_split)
    start = time.perf_counter()
    history = train_model(model, train_x, train_y, cfg)
    seconds = time.perf_counter() - start
    pred = predict(model, eval_x, cfg)
    dice, hd = evaluate_model(pred, eval_y)
    return Scored(seg_source, name, eval_samples, eval_x, eval_y, pred, dice, hd, history, seconds, len(train_x))


def run_segmentation(encoder: EncoderLike, source: SegmentationSource | str, out: str,
                     cfg: SegmentationConfig | None = None, data_root: str | None = None) -> SegmentationResult:
    """Train a UNet-style decoder on ``encoder`` over ``source``'s train split, score its eval split.

    Args:
        encoder: an :class:`ImageEncoder`, an opened :class:`ModelHandle` (e.g. ``random_init=True``), or a
            model directory URL.
        source: a registered mask source name (``mask_sources.names()``) or a built source.
        out: output folder URL (per-image Parquet, summary JSON/Markdown, PNGs).
        cfg: options (defaults: frozen encoder, 128 px, 5 epochs).
        data_root: the dataset folder, when ``source`` is a name.

    Raises:
        ConfigError: unknown source, missing data, mask/image size mismatch, bad option.
    """
    cfg = cfg or SegmentationConfig()
    scored = train_and_score(encoder, source, cfg, data_root)
    classes = scored.source.classes
    groups = [s.patient_id for s in scored.samples]
    per_image = [PerImageScore(s.sample_id, s.patient_id, c, float(scored.dice[i, k]), float(scored.hd95[i, k]))
                 for i, s in enumerate(scored.samples) for k, c in enumerate(classes)]
    result = SegmentationResult(
        scored.source.name, scored.source.mask_origin, scored.encoder_name, cfg,
        {c: _estimates(scored.dice[:, k], groups, cfg) for k, c in enumerate(classes)},
        {c: _estimates(scored.hd95[:, k], groups, cfg) for k, c in enumerate(classes)},
        scored.n_train, len(scored.samples), len(set(groups)), scored.history, scored.seconds, per_image)
    result.files = write_outputs(result, out, scored.images, scored.masks, scored.pred, scored.dice)
    return result
