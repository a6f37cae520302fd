"""Segmentation data: a registry of mask sources and the loader that pairs images with masks.

A *mask source* turns a dataset root into :class:`SegSample` s: one image, one mask file per class, the
patient id (for patient-level bootstrap) and the split. Lungs on covid_chestxray_ieee8023 are the first
entry; a lines-and-tubes source (RANZCR CLiP-style: one mask per device class, e.g. ETT / NGT / CVC)
plugs in as another entry returning several ``mask_uris`` per sample, one per class in ``classes``.
"""

from __future__ import annotations

import csv
import io as _stdio
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from rfm_data import io
from rfm_data.errors import ConfigError
from rfm_data.registry import Registry
from rfm_data.transforms import Compose, Normalized, Resized, SquarePadd

__all__ = ["LungMasks", "SegSample", "SegmentationSource", "load_pair", "mask_sources", "pair_transform"]


@dataclass(frozen=True)
class SegSample:
    """One image with its masks: ``mask_uris[k]`` is the binary mask of class ``k`` of the source."""

    sample_id: str
    image_uri: str
    mask_uris: tuple[str, ...]
    patient_id: str
    split: str


@dataclass(frozen=True)
class SegmentationSource:
    """The samples of one mask source plus what they mean.

    Attributes:
        name: registry name of the source.
        classes: one name per mask channel (``("lungs",)``).
        samples: every sample with masks, all splits.
        mask_origin: where the masks come from, for the report (e.g. hand-drawn vs model masks).
    """

    name: str
    classes: tuple[str, ...]
    samples: tuple[SegSample, ...]
    mask_origin: str

    def split(self, name: str) -> list[SegSample]:
        """The samples of split ``name`` (``train`` / ``val`` / ``test``)."""
        return [s for s in self.samples if s.split == name]


mask_sources: Registry[SegmentationSource] = Registry("mask source")


class LungMasks(str, Enum):
    """Which lung masks of covid_chestxray_ieee8023 to use."""

    MANUAL = "manual"  # hand-drawn (v7labs), 361 images: the reference standard
    LUNGVAE = "lungvae"  # predicted by a lung-VAE model, 192 images: a weaker, model-made reference


_LUNG_COLUMNS = {LungMasks.MANUAL: "mask_path", LungMasks.LUNGVAE: "mask_lungvae_path"}
_LUNG_ORIGIN = {LungMasks.MANUAL: "hand-drawn lung masks (masks/, v7labs)",
                LungMasks.LUNGVAE: "model-generated lung masks (masks_lungvae/, lung VAE)"}


def _parse_masks(value: str | LungMasks) -> LungMasks:
    try:
        return LungMasks(value)
    except ValueError as err:
        raise ConfigError(f"masks={value!r} is not a lung mask variant: choose from "
                          f"{[m.value for m in LungMasks]}") from err


def _frontal_ok(row: dict[str, str], views: Sequence[str]) -> bool:
    return not views or row.get("view_group", "") in views


@mask_sources.register("covid_chestxray_ieee8023_lungs")
def covid_lungs(root: str, masks: str | LungMasks = LungMasks.MANUAL,
                views: Sequence[str] = ("frontal",)) -> SegmentationSource:
    """Lung masks of covid_chestxray_ieee8023 from its ``metadata.csv``.

    Args:
        root: the dataset folder (holding ``metadata.csv``, ``images/``, ``masks/``, ``masks_lungvae/``).
        masks: ``manual`` (hand-drawn, default) or ``lungvae`` (model-made).
        views: ``view_group`` values to keep (default frontal only; ``()`` keeps laterals too).

    Raises:
        ConfigError: no metadata.csv, a missing column, or no row with a mask.
    """
    variant = _parse_masks(masks)
    table = io.join(root, "metadata.csv")
    if not io.exists(table):
        raise ConfigError(f"{table} does not exist: root must be the covid_chestxray_ieee8023 folder")
    rows = list(csv.DictReader(_stdio.StringIO(io.read_text(table))))
    column = _LUNG_COLUMNS[variant]
    needed = {"image_id", "image_path", "patient_id", "split", column}
    if rows and not needed <= set(rows[0]):
        raise ConfigError(f"{table} lacks columns {sorted(needed - set(rows[0]))}")
    samples = tuple(
        SegSample(r["image_id"], io.join(root, r["image_path"]), (io.join(root, r[column]),),
                  r["patient_id"], r["split"])
        for r in rows if r.get(column) and _frontal_ok(r, views))
    if not samples:
        raise ConfigError(f"{table}: no row has a {column} (views={list(views)})")
    return SegmentationSource("covid_chestxray_ieee8023_lungs", ("lungs",), samples, _LUNG_ORIGIN[variant])


def _read_gray(url: str) -> np.ndarray:
    """A 2D uint8/uint16 array from a PNG/JPEG at ``url`` (RGB is converted to luminance)."""
    with Image.open(_stdio.BytesIO(io.read_bytes(url))) as opened:
        im = opened if opened.mode in ("L", "I;16", "I") else opened.convert("L")
        return np.asarray(im)


def _image_tensor(url: str) -> Tensor:
    arr = _read_gray(url).astype(np.float32)
    top = 65535.0 if arr.max() > 255 else 255.0
    return torch.from_numpy(arr / top)[None]


def _mask_tensor(urls: Sequence[str], size: tuple[int, int], image_url: str) -> Tensor:
    channels = []
    for url in urls:
        mask = _read_gray(url)
        if mask.shape != size:
            raise ConfigError(f"mask {url} is {mask.shape[1]}x{mask.shape[0]} (WxH) but its image {image_url} "
                              f"is {size[1]}x{size[0]}: masks must have the image's size (re-export the mask "
                              "at the image resolution)")
        channels.append(torch.from_numpy((mask > 0).astype(np.float32)))
    return torch.stack(channels)


def pair_transform(size: int) -> Compose:
    """Resize the long side to ``size`` and pad to square, image bilinear and mask nearest, then normalise."""
    keys = ("image", "mask")
    return Compose([Resized(keys, size, mode=("bilinear", "nearest")), SquarePadd(keys), Normalized("image")])


def load_pair(sample: SegSample, transform: Compose) -> tuple[Tensor, Tensor]:
    """``(image (1, S, S) normalised, mask (C, S, S) in {0, 1})`` of ``sample`` after ``transform``.

    Raises:
        ConfigError: a mask whose size differs from its image's (the message names both files).
    """
    image = _image_tensor(sample.image_uri)
    mask = _mask_tensor(sample.mask_uris, (int(image.shape[1]), int(image.shape[2])), sample.image_uri)
    out = transform({"image": image, "mask": mask})
    # Geometric resampling of the mask can leave non-binary values at the edges: snap back to {0, 1}.
    return out["image"], (out["mask"] > 0.5).float()
