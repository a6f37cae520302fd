"""Training and evaluation of the segmentation head: Dice + BCE, AdamW, seeded; MONAI Dice and HD95."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

import numpy as np
import torch
from monai.losses.dice import DiceCELoss
from monai.metrics.hausdorff_distance import HausdorffDistanceMetric
from monai.metrics.meandice import DiceMetric
from torch import Tensor
from tqdm.auto import tqdm

from rfm_data.errors import ConfigError
from rfm_eval.segmentation.data import SegSample, load_pair, pair_transform
from rfm_eval.segmentation.model import SegmentationModel

__all__ = ["EncoderMode", "PerImageScore", "SegmentationConfig", "evaluate_model", "load_split",
           "train_model"]


class EncoderMode(str, Enum):
    """Whether the encoder is trained with the decoder."""

    FROZEN = "frozen"  # probes the representation itself: only the decoder learns
    FINETUNE = "finetune"  # encoder updated too, at ``encoder_lr``


@dataclass
class SegmentationConfig:
    """Options of one segmentation evaluation.

    Attributes:
        image_size: square model input (long side resized, then padded); a multiple of the encoder's
            coarsest stride (32 for CNNs, the patch size for ViTs).
        encoder_mode: ``frozen`` or ``finetune``.
        epochs: passes over the training split.
        batch_size: images per step.
        lr: AdamW learning rate of the decoder.
        encoder_lr: AdamW learning rate of the encoder (``finetune`` only).
        weight_decay: AdamW weight decay.
        width: decoder channels.
        threshold: probability above which a pixel is foreground.
        seed: seeds weights of the decoder, batch order and bootstrap.
        max_train: cap on training images (0 = all), for quick runs.
        max_eval: cap on evaluated images (0 = all).
        train_split: split the decoder is trained on.
        eval_split: split scored (``test``; ``val`` while tuning).
        n_boot: bootstrap resamples for the CIs (patient-level).
        n_overlays: predictions drawn in the overlay PNG.
        device: torch device.
    """

    image_size: int = 128
    encoder_mode: EncoderMode = EncoderMode.FROZEN
    epochs: int = 5
    batch_size: int = 8
    lr: float = 1e-3
    encoder_lr: float = 1e-4
    weight_decay: float = 1e-4
    width: int = 32
    threshold: float = 0.5
    seed: int = 0
    max_train: int = 0
    max_eval: int = 0
    train_split: str = "train"
    eval_split: str = "test"
    n_boot: int = 1000
    n_overlays: int = 6
    device: str = "cpu"

    def __post_init__(self) -> None:
        try:
            self.encoder_mode = EncoderMode(self.encoder_mode)
        except ValueError as err:
            raise ConfigError(f"encoder_mode={self.encoder_mode!r}: choose frozen or finetune") from err
        for name in ("image_size", "epochs", "batch_size", "width"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 1")
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"threshold={self.threshold} must be in (0, 1)")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields."""
        out = asdict(self)
        out["encoder_mode"] = self.encoder_mode.value
        return out


@dataclass(frozen=True)
class PerImageScore:
    """Scores of one evaluated image; ``hd95`` in pixels of the model input (nan: empty mask or prediction)."""

    sample_id: str
    patient_id: str
    class_name: str
    dice: float
    hd95: float


def load_split(samples: Sequence[SegSample], size: int, limit: int = 0, split: str = "") -> tuple[Tensor, Tensor]:
    """Stack images ``(N, 1, S, S)`` and masks ``(N, C, S, S)`` of ``samples`` (first ``limit`` if > 0)."""
    chosen = list(samples)[:limit] if limit > 0 else list(samples)
    if not chosen:
        raise ConfigError(f"no samples in split {split!r}: check train_split / eval_split against the mask "
                          "source's split column (train / val / test)")
    transform = pair_transform(size)
    pairs = [load_pair(s, transform) for s in tqdm(chosen, desc="loading images+masks", leave=False)]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


def _optimizer(model: SegmentationModel, cfg: SegmentationConfig) -> torch.optim.Optimizer:
    decoder = [p for n, p in model.named_parameters() if not n.startswith("encoder.") and p.requires_grad]
    groups: list[dict[str, Any]] = [{"params": decoder, "lr": cfg.lr}]
    if cfg.encoder_mode is EncoderMode.FINETUNE:
        groups.append({"params": list(model.encoder.parameters()), "lr": cfg.encoder_lr})
    return torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)


@torch.no_grad()
def _cached_maps(model: SegmentationModel, images: Tensor, cfg: SegmentationConfig) -> list[Tensor]:
    """Encoder maps of every image, once: with a frozen encoder (and no augmentation) they never change,
    so each epoch only pays for the decoder."""
    model.encoder.eval()
    chunks = [model.encode(images[i:i + cfg.batch_size].to(cfg.device))
              for i in tqdm(range(0, len(images), cfg.batch_size), desc="encoder features", leave=False)]
    return [torch.cat([c[k] for c in chunks]) for k in range(len(chunks[0]))]


def train_model(model: SegmentationModel, images: Tensor, masks: Tensor, cfg: SegmentationConfig) -> list[float]:
    """Train with MONAI ``DiceCELoss`` (sigmoid Dice + BCE) and AdamW; returns the mean loss per epoch."""
    generator = torch.Generator().manual_seed(cfg.seed)
    loss_fn = DiceCELoss(sigmoid=True)
    optimizer = _optimizer(model, cfg)
    model.to(cfg.device).train()
    cached = _cached_maps(model, images, cfg) if cfg.encoder_mode is EncoderMode.FROZEN else None
    size = (int(images.shape[-2]), int(images.shape[-1]))
    history: list[float] = []
    steps = math.ceil(len(images) / cfg.batch_size)
    for epoch in tqdm(range(cfg.epochs), desc="segmentation epochs", leave=False):
        order = torch.randperm(len(images), generator=generator)
        total = 0.0
        for step in range(steps):
            idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            maps = [m[idx] for m in cached] if cached is not None else model.encode(images[idx].to(cfg.device))
            loss = loss_fn(model.decode(maps, size), masks[idx].to(cfg.device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
        history.append(total / steps)
        tqdm.write(f"segmentation epoch {epoch + 1}/{cfg.epochs}: loss {history[-1]:.4f}")
    return history


@torch.no_grad()
def predict(model: SegmentationModel, images: Tensor, cfg: SegmentationConfig) -> Tensor:
    """Binary predictions ``(N, C, S, S)`` at ``cfg.threshold``."""
    model.to(cfg.device).eval()
    out = [torch.sigmoid(model(images[i:i + cfg.batch_size].to(cfg.device))).cpu() > cfg.threshold
           for i in range(0, len(images), cfg.batch_size)]
    return torch.cat(out).float()


def _finite_or_nan(values: Any) -> np.ndarray:
    arr = torch.as_tensor(values).detach().cpu().numpy().astype(np.float64)
    arr[~np.isfinite(arr)] = np.nan
    return arr


def evaluate_model(pred: Tensor, masks: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-image, per-class Dice and HD95 ``(N, C)`` with MONAI's ``DiceMetric`` and
    ``HausdorffDistanceMetric(percentile=95)``; undefined values (an empty mask or prediction) are nan."""
    dice = DiceMetric(include_background=True, reduction="none", ignore_empty=True)(pred, masks)
    with warnings.catch_warnings():
        # MONAI warns on every empty prediction (we report nan for it) and on its own deprecated internals.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        hd = HausdorffDistanceMetric(include_background=True, percentile=95.0, reduction="none")(pred, masks)
    return _finite_or_nan(dice), _finite_or_nan(hd)
