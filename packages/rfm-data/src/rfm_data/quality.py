"""Cheap image statistics computed once at ingest, and the quality flags derived from them.

Flags are informational (curation's quality filters decide what to drop); they are written into the
manifest's ``quality_flags`` column so that a filter never has to decode pixels again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rfm_data.records import ImageMeta


@dataclass(frozen=True)
class QualityThresholds:
    blank_std: float = 0.01  # almost uniform image
    saturated_fraction: float = 0.5  # more than half the pixels at black or white
    low_contrast_range: float = 0.15  # 1st-99th percentile range of the stored image
    tiny_side: int = 128  # source smaller than this on its short side
    extreme_aspect: float = 2.5  # long / short side of the source


@dataclass
class ImageStats:
    mean: float
    std: float
    flags: list[str] = field(default_factory=list)


def image_stats(stored: np.ndarray, meta: ImageMeta, th: QualityThresholds = QualityThresholds()) -> ImageStats:
    """Mean, std and quality flags of a stored (uint8/uint16) image and its source geometry."""
    peak = float(np.iinfo(stored.dtype).max)
    sample = stored[::2, ::2].astype(np.float32) / peak  # every 4th pixel is plenty for these statistics
    mean, std = float(sample.mean()), float(sample.std())
    flags = []
    if std < th.blank_std:
        flags.append("blank")
    if float(np.mean((sample <= 0.0) | (sample >= 1.0))) > th.saturated_fraction:
        flags.append("saturated")
    lo, hi = np.percentile(sample, [1, 99])
    if hi - lo < th.low_contrast_range:
        flags.append("low_contrast")
    short, long_ = sorted((meta.orig_height or stored.shape[0], meta.orig_width or stored.shape[1]))
    if short < th.tiny_side:
        flags.append("tiny")
    if long_ / max(short, 1) > th.extreme_aspect:
        flags.append("extreme_aspect")
    return ImageStats(mean=mean, std=std, flags=flags)
