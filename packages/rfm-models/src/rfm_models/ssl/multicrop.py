"""Multi-crop views of a chest X-ray for self-distillation, built from :mod:`rfm_data.transforms`.

Each view is pad-to-square → random resized crop → mild rotation / translation (one resample, fused by
:class:`rfm_data.transforms.Compose`) → mild gamma / contrast / brightness → normalisation. There is no colour
jitter (radiographs are grey), no blur or solarisation (they erase fine lines such as tubes and wires), and no
horizontal flip unless asked for: laterality is part of what a chest X-ray means.

:class:`MultiCrop` is the array transform (``(1, H, W)`` → global ``(G, 1, S, S)``, local ``(L, 1, s, s)``),
:class:`MultiCropd` its dict wrapper for the streaming loaders; :func:`rfm_data.loader.collate` then stacks
items into ``global_crops`` ``(B, G, 1, S, S)`` and ``local_crops`` ``(B, L, 1, s, s)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from rfm_data.errors import ConfigError
from rfm_data.transforms import (
    Compose,
    Normalize,
    RandomAffine,
    RandomIntensity,
    RandomResizedCrop,
    SquarePad,
    mix_seed,
)

__all__ = ["CropConfig", "MultiCrop", "MultiCropd"]


@dataclass
class CropConfig:
    """Multi-crop augmentation; the global crop size is the model's ``image_size``.

    Attributes:
        n_global: global views (teacher and student); 2 as in DINO.
        n_local: local views (student only); 0 disables them.
        local_size: side of the local views in pixels (a multiple of the patch size).
        global_scale: area fraction range of a global crop.
        local_scale: area fraction range of a local crop.
        degrees: rotation range ±degrees (mild: CXRs are acquired upright).
        translate: translation range as a fraction of the side.
        brightness: additive intensity shift range.
        contrast: multiplicative contrast range ``1 ± contrast``.
        gamma: gamma range (log-uniform).
        flip_prob: horizontal flip probability; keep 0 for CXRs (laterality).
    """

    n_global: int = 2
    n_local: int = 8
    local_size: int = 96
    global_scale: list[float] = field(default_factory=lambda: [0.32, 1.0])
    local_scale: list[float] = field(default_factory=lambda: [0.05, 0.32])
    degrees: float = 10.0
    translate: float = 0.05
    brightness: float = 0.1
    contrast: float = 0.2
    gamma: list[float] = field(default_factory=lambda: [0.7, 1.4])
    flip_prob: float = 0.0

    def validate(self) -> None:
        """ConfigError naming the first invalid field and how to fix it."""
        checks = [
            (self.n_global >= 2, f"crops.n_global must be >= 2 (DINO compares views), got {self.n_global}"),
            (self.n_local >= 0, f"crops.n_local must be >= 0, got {self.n_local}"),
            (self.local_size >= 1, f"crops.local_size must be >= 1, got {self.local_size}"),
            (0.0 <= self.flip_prob <= 1.0, f"crops.flip_prob must be in [0, 1], got {self.flip_prob}"),
        ]
        for name in ("global_scale", "local_scale", "gamma"):
            value = list(getattr(self, name))
            checks.append((len(value) == 2 and 0 < value[0] <= value[1],
                           f"crops.{name} must be [low, high] with 0 < low <= high, got {value}"))
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy."""
        return dataclasses.asdict(self)


def _view(size: int, scale: list[float], cfg: CropConfig) -> Compose:
    return Compose([
        SquarePad(),
        RandomResizedCrop(size, scale=(scale[0], scale[1])),
        RandomAffine(degrees=cfg.degrees, translate=cfg.translate, flip_prob=cfg.flip_prob),
        RandomIntensity(brightness=cfg.brightness, contrast=cfg.contrast, gamma=(cfg.gamma[0], cfg.gamma[1])),
        Normalize(),
    ])


class MultiCrop:
    """``(1, H, W)`` image in [0, 1] → ``(global (n_global, 1, S, S), local (n_local, 1, s, s))``.

    Args:
        global_size: side of the global views (the model's image size).
        config: the augmentation.
        seed: initial seed; the loaders re-seed per item with :meth:`set_random_state`.
    """

    def __init__(self, global_size: int, config: CropConfig | None = None, seed: int = 0) -> None:
        self.config = config or CropConfig()
        self.config.validate()
        self.global_size = global_size
        self.global_view = _view(global_size, self.config.global_scale, self.config)
        self.local_view = _view(self.config.local_size, self.config.local_scale, self.config)
        self.set_random_state(seed)

    def set_random_state(self, seed: int | None = None, generator: torch.Generator | None = None) -> MultiCrop:
        """Seed both view pipelines (distinct streams derived from ``seed``), or share ``generator``."""
        if generator is not None:
            self.global_view.set_random_state(generator=generator)
            self.local_view.set_random_state(generator=generator)
        elif seed is not None:
            self.global_view.set_random_state(mix_seed(seed, 0))
            self.local_view.set_random_state(mix_seed(seed, 1))
        else:
            raise ValueError("set_random_state needs a seed or a generator")
        return self

    def __call__(self, img: Tensor) -> tuple[Tensor, Tensor]:
        if img.ndim != 3 or img.shape[0] != 1:
            raise ValueError(f"MultiCrop expects one (1, H, W) image, got {tuple(img.shape)}")
        img = img.float()
        # Views are a batch of copies: every random transform draws per sample, so one grid_sample makes all.
        globals_ = self.global_view(img.unsqueeze(0).expand(self.config.n_global, -1, -1, -1))
        if self.config.n_local == 0:
            return globals_, img.new_zeros(0, 1, self.config.local_size, self.config.local_size)
        locals_ = self.local_view(img.unsqueeze(0).expand(self.config.n_local, -1, -1, -1))
        return globals_, locals_


class MultiCropd:
    """Dict wrapper of :class:`MultiCrop`: replaces ``item[key]`` with ``global_crops`` and ``local_crops``.

    Args:
        global_size: side of the global views.
        config: the augmentation.
        key: the image key of the item.
        seed: initial seed.
    """

    def __init__(self, global_size: int, config: CropConfig | None = None, key: str = "image",
                 seed: int = 0) -> None:
        self.key = key
        self.transform = MultiCrop(global_size, config, seed)

    def set_random_state(self, seed: int | None = None, generator: torch.Generator | None = None) -> MultiCropd:
        """See :meth:`MultiCrop.set_random_state`."""
        self.transform.set_random_state(seed, generator)
        return self

    def __call__(self, item: Mapping[str, Any]) -> dict[str, Any]:
        if self.key not in item:
            raise KeyError(f"MultiCropd: key {self.key!r} not in item (has {sorted(item)})")
        out = {k: v for k, v in item.items() if k != self.key}
        out["global_crops"], out["local_crops"] = self.transform(item[self.key])
        return out
