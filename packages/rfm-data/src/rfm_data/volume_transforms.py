"""Volume (CT / MR) transforms: geometry to tensors, RAS orientation, spacing, intensity, crops, augmentation.

Built on MONAI transforms (the optional extra ``rfm-data[3d]``) wherever one fits; what MONAI lacks (CT window
presets, MR z-score on a foreground mask, the Volume → tensor bridge) is written here in the same style: array
transforms take a ``(1, D, H, W)`` tensor, dict ("…d") transforms take an item dict and change ``keys``.

Geometry. :func:`volume_to_tensor` turns an :class:`~rfm_data.records.Volume` (voxels ``(slice, row, col)``,
LPS geometry, see :mod:`rfm_data.readers.volume`) into a MONAI ``MetaTensor`` ``(1, D, H, W)`` whose
``affine`` maps array indices to RAS+ millimetres (MONAI's and NIfTI's world convention). Orientation and
spacing then act on that affine, so a resampled volume's geometry can be checked exactly. After
``Orientationd("RAS")`` array axes 0, 1, 2 point to +x (R), +y (A) and +z (S): the layout of
``nibabel.as_closest_canonical``. Item shapes are still written ``(1, D, H, W)``: D is the first spatial axis.

Intensity choices are a registry (``intensity_transforms``) keyed by the :class:`Intensity` str enum: CT
windowing to [0, 1] with the usual presets (:data:`WINDOWS`), MR z-score over a foreground mask, or MR
percentile scaling to [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import torch

from rfm_data.errors import ConfigError
from rfm_data.records import Volume
from rfm_data.registry import Registry

try:  # submodules: MONAI's package __init__ files do not re-export names for type checkers
    from monai.data.meta_tensor import MetaTensor
    from monai.transforms.compose import Compose
    from monai.transforms.croppad.dictionary import (
        CenterSpatialCropd,
        RandSpatialCropd,
        RandSpatialCropSamplesd,
        SpatialPadd,
    )
    from monai.transforms.intensity.dictionary import (
        RandScaleIntensityd,
        RandShiftIntensityd,
        ScaleIntensityRanged,
        ScaleIntensityRangePercentilesd,
    )
    from monai.transforms.spatial.dictionary import Orientationd, RandAffined, Spacingd
    from monai.transforms.transform import MapTransform, Transform
except ImportError as err:  # the 2D pipeline stays importable without MONAI
    raise ImportError('rfm_data.volume_transforms needs MONAI: pip install "rfm-data[3d]"') from err

__all__ = ["WINDOWS", "ForegroundZScore", "ForegroundZScored", "Intensity", "ToTensord", "VolumeTransformConfig",
           "WindowPreset", "build_patch_sampler", "build_volume_transform", "intensity_transforms", "lps_affine",
           "ras_affine", "volume_to_tensor"]

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# volume_to_tensor writes RAS affines; naming the labels keeps Orientation independent of MONAI defaults.
_RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))


class WindowPreset(str, Enum):
    """Named CT display windows."""

    LUNG = "lung"
    MEDIASTINUM = "mediastinum"
    ABDOMEN = "abdomen"
    BRAIN = "brain"
    BONE = "bone"


# (level, width) in HU: the customary radiology reading windows.
WINDOWS: dict[WindowPreset, tuple[float, float]] = {
    WindowPreset.LUNG: (-600.0, 1500.0),
    WindowPreset.MEDIASTINUM: (50.0, 350.0),
    WindowPreset.ABDOMEN: (40.0, 400.0),
    WindowPreset.BRAIN: (40.0, 80.0),
    WindowPreset.BONE: (400.0, 1800.0),
}


class Intensity(str, Enum):
    """How voxel values become network inputs."""

    CT_WINDOW = "ct_window"  # HU clipped to a window, scaled to [0, 1]
    MR_ZSCORE = "mr_zscore"  # (x - mean) / std over foreground voxels
    MR_PERCENTILE = "mr_percentile"  # percentiles (lower, upper) → [0, 1], clipped
    NONE = "none"  # leave values as read


# ---------------------------------------------------------------------------------------------- geometry
def lps_affine(volume: Volume) -> np.ndarray:
    """4x4 affine from array index ``(k, j, i)`` of ``volume.voxels`` to LPS millimetres."""
    direction = np.asarray(volume.direction, dtype=np.float64)  # columns: column, row, slice axes
    ss, sr, sc = volume.spacing
    affine = np.eye(4)
    # Array axis 0 is the slice axis (direction column 2), axis 1 rows (column 1), axis 2 columns (column 0).
    affine[:3, 0] = direction[:, 2] * ss
    affine[:3, 1] = direction[:, 1] * sr
    affine[:3, 2] = direction[:, 0] * sc
    affine[:3, 3] = volume.origin
    return affine


def ras_affine(volume: Volume) -> np.ndarray:
    """4x4 affine from array index ``(k, j, i)`` of ``volume.voxels`` to RAS+ millimetres (MONAI / NIfTI)."""
    affine: np.ndarray = _LPS_TO_RAS @ lps_affine(volume)
    return affine


def volume_to_tensor(volume: Volume) -> MetaTensor:
    """``volume`` as a float32 MetaTensor ``(1, D, H, W)`` carrying its RAS affine (for Orientation/Spacing)."""
    voxels = torch.from_numpy(np.ascontiguousarray(volume.voxels, dtype=np.float32))[None]
    return MetaTensor(voxels, affine=torch.from_numpy(ras_affine(volume)))


# --------------------------------------------------------------------------------------------- intensity
class ForegroundZScore(Transform):
    """Z-score an MR volume with the mean / std of its foreground (voxels above ``threshold``).

    MR has no absolute scale, and the air around the body would dominate whole-volume statistics; nnU-Net-style
    normalisation uses body voxels only. ``threshold=None`` takes the volume's mean, a robust body / air split
    for head and body MR. Every voxel is shifted and scaled (background included), so edges stay smooth.
    """

    def __init__(self, threshold: float | None = None, eps: float = 1e-6) -> None:
        self.threshold, self.eps = threshold, eps

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        """The normalised tensor (same shape and type)."""
        data = img.float()
        cut = data.mean() if self.threshold is None else torch.tensor(self.threshold)
        fg = data[data > cut]
        if fg.numel() < 2:  # a constant or empty volume: nothing to estimate a scale from
            fg = data.flatten()
        return (img - fg.mean()) / (fg.std() + self.eps)


class ForegroundZScored(MapTransform):
    """Dict version of :class:`ForegroundZScore`."""

    def __init__(self, keys: Sequence[str] | str, threshold: float | None = None) -> None:
        super().__init__(keys)
        self.op = ForegroundZScore(threshold)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """A copy of ``data`` with ``keys`` normalised."""
        out = dict(data)
        for key in self.key_iterator(out):
            out[key] = self.op(out[key])
        return out


class ToTensord(MapTransform):
    """Strip MONAI metadata and make ``keys`` contiguous float32 torch tensors (what the model and collate take)."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """A copy of ``data`` with ``keys`` as plain tensors."""
        out = dict(data)
        for key in self.key_iterator(out):
            value = out[key]
            tensor = value.as_tensor() if isinstance(value, MetaTensor) else torch.as_tensor(value)
            out[key] = tensor.to(torch.float32).contiguous()
        return out


# ----------------------------------------------------------------------------------------------- config
@dataclass
class VolumeTransformConfig:
    """A volume preprocessing / augmentation pipeline.

    Attributes:
        spacing: target voxel size in mm along the (oriented) array axes; None keeps the stored grid.
        axcodes: target orientation (MONAI codes; "RAS" as ``nibabel.as_closest_canonical``).
        intensity: see :class:`Intensity`.
        window: CT window preset, used with ``Intensity.CT_WINDOW``.
        window_level_width: (level, width) in HU overriding ``window``.
        percentiles: (lower, upper) for ``Intensity.MR_PERCENTILE``.
        foreground_threshold: threshold of ``Intensity.MR_ZSCORE``'s foreground (None: the volume mean).
        size: edge of the output cube, or (D, H, W): padded, then cut (random crop when training, else centre
            crop); None keeps the resampled size.
        rotate_degrees, scale, augment_prob: random affine (each axis ± degrees, zoom 1 ± scale) when training.
        intensity_scale, intensity_shift: random intensity x (1 ± scale) and + (± shift) when training.
    """

    spacing: tuple[float, float, float] | None = (1.5, 1.5, 1.5)
    axcodes: str = "RAS"
    intensity: Intensity = Intensity.CT_WINDOW
    window: WindowPreset = WindowPreset.MEDIASTINUM
    window_level_width: tuple[float, float] | None = None
    percentiles: tuple[float, float] = (0.5, 99.5)
    foreground_threshold: float | None = None
    size: int | tuple[int, int, int] | None = 96
    rotate_degrees: float = 10.0
    scale: float = 0.1
    augment_prob: float = 0.5
    intensity_scale: float = 0.1
    intensity_shift: float = 0.05

    def validate(self) -> None:
        """ConfigError naming the first invalid field and what would be valid."""
        Intensity(self.intensity)
        WindowPreset(self.window)
        if self.spacing is not None and (len(self.spacing) != 3 or min(self.spacing) <= 0):
            raise ConfigError(f"spacing must be three positive mm values or None, got {self.spacing}")
        if sorted(self.axcodes.upper()) not in (sorted(c) for c in _AXCODE_SETS):
            raise ConfigError(f"axcodes must name each axis once from L/R, P/A, I/S (e.g. 'RAS'), got {self.axcodes!r}")
        if self.window_level_width is not None and self.window_level_width[1] <= 0:
            raise ConfigError(f"window_level_width width must be > 0, got {self.window_level_width}")
        lo, hi = self.percentiles
        if not 0 <= lo < hi <= 100:
            raise ConfigError(f"percentiles must satisfy 0 <= lower < upper <= 100, got {self.percentiles}")
        if self.size is not None and min(_size3(self.size)) < 1:
            raise ConfigError(f"size must be >= 1 voxel per axis, got {self.size}")
        if not 0 <= self.augment_prob <= 1:
            raise ConfigError(f"augment_prob must be in [0, 1], got {self.augment_prob}")

    def window_range(self) -> tuple[float, float]:
        """(low, high) HU of the configured window."""
        level, width = self.window_level_width or WINDOWS[WindowPreset(self.window)]
        return level - width / 2, level + width / 2


_AXCODE_SETS = [a + b + c for a in "LR" for b in "PA" for c in "IS"]


def _size3(size: int | Sequence[int]) -> tuple[int, int, int]:
    if isinstance(size, int):
        return size, size, size
    if len(size) != 3:
        raise ConfigError(f"size must be an int or three ints (D, H, W), got {size}")
    return int(size[0]), int(size[1]), int(size[2])


# ------------------------------------------------------------------------------------------- pipelines
intensity_transforms: Registry[list[Callable[..., Any]]] = Registry("volume intensity transform")


@intensity_transforms.register(Intensity.CT_WINDOW.value)
def _ct_window(cfg: VolumeTransformConfig, keys: list[str]) -> list[Callable[..., Any]]:
    low, high = cfg.window_range()
    return [ScaleIntensityRanged(keys, a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True)]


@intensity_transforms.register(Intensity.MR_ZSCORE.value)
def _mr_zscore(cfg: VolumeTransformConfig, keys: list[str]) -> list[Callable[..., Any]]:
    return [ForegroundZScored(keys, cfg.foreground_threshold)]


@intensity_transforms.register(Intensity.MR_PERCENTILE.value)
def _mr_percentile(cfg: VolumeTransformConfig, keys: list[str]) -> list[Callable[..., Any]]:
    lo, hi = cfg.percentiles
    return [ScaleIntensityRangePercentilesd(keys, lower=lo, upper=hi, b_min=0.0, b_max=1.0, clip=True)]


@intensity_transforms.register(Intensity.NONE.value)
def _no_intensity(cfg: VolumeTransformConfig, keys: list[str]) -> list[Callable[..., Any]]:
    return []


def _geometry(cfg: VolumeTransformConfig, keys: list[str]) -> list[Callable[..., Any]]:
    steps: list[Callable[..., Any]] = [Orientationd(keys, axcodes=cfg.axcodes.upper(), labels=_RAS_LABELS)]
    if cfg.spacing is not None:
        steps.append(Spacingd(keys, pixdim=cfg.spacing, mode="bilinear", padding_mode="border",
                              dtype=np.float32))
    return steps


def _augment(cfg: VolumeTransformConfig, keys: list[str]) -> list[Callable[..., Any]]:
    radians = float(np.deg2rad(cfg.rotate_degrees))
    return [
        RandAffined(keys, prob=cfg.augment_prob, rotate_range=(radians,) * 3, scale_range=(cfg.scale,) * 3,
                    mode="bilinear", padding_mode="border"),
        RandScaleIntensityd(keys, factors=cfg.intensity_scale, prob=cfg.augment_prob),
        RandShiftIntensityd(keys, offsets=cfg.intensity_shift, prob=cfg.augment_prob),
    ]


def build_volume_transform(cfg: VolumeTransformConfig | None = None, train: bool = False,
                           keys: Sequence[str] = ("image",)) -> Compose:
    """The dict transform of ``cfg``: orient, resample, normalise intensity, pad + crop, (train) augment.

    Args:
        cfg: the pipeline (default :class:`VolumeTransformConfig`: 1.5 mm RAS, mediastinal window, 96³).
        train: random crops and augmentation; otherwise centre crops and no randomness.
        keys: item keys holding ``(1, D, H, W)`` MetaTensors (:func:`volume_to_tensor`).

    Returns:
        A MONAI ``Compose``; call ``set_random_state(seed)`` on it for reproducible augmentation. Outputs are
        plain float32 tensors (metadata stripped by :class:`ToTensord` at the end).

    Raises:
        ConfigError: an invalid ``cfg`` field (named).
    """
    cfg = cfg or VolumeTransformConfig()
    cfg.validate()
    names = list(keys)
    steps = _geometry(cfg, names) + intensity_transforms.create(Intensity(cfg.intensity).value, cfg=cfg, keys=names)
    if cfg.size is not None:
        size = _size3(cfg.size)
        steps.append(SpatialPadd(names, spatial_size=size))
        steps.append(RandSpatialCropd(names, roi_size=size, random_size=False) if train
                     else CenterSpatialCropd(names, roi_size=size))
    if train:
        steps += _augment(cfg, names)
    steps.append(ToTensord(names))
    return Compose(steps)


def build_patch_sampler(size: int | Sequence[int], num_samples: int, keys: Sequence[str] = ("image",)) -> Compose:
    """Random patches: a dict item → a list of ``num_samples`` items, each cut to ``size`` (padded if smaller).

    For patch-based training on volumes larger than the network input (e.g. 64³ patches of a 1.5 mm chest CT).
    """
    if num_samples < 1:
        raise ConfigError(f"num_samples must be >= 1, got {num_samples}")
    names, size3 = list(keys), _size3(size if isinstance(size, int) else tuple(size))
    return Compose([SpatialPadd(names, spatial_size=size3),
                    RandSpatialCropSamplesd(names, roi_size=size3, num_samples=num_samples, random_size=False),
                    ToTensord(names)])
