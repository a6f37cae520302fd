"""Configuration of self-distillation: one dataclass per concern, plain (no Hydra needed), Hydra-compatible."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from rfm_data.errors import ConfigError
from rfm_models.ssl.heads import HeadConfig
from rfm_models.ssl.losses import TeacherNorm
from rfm_models.ssl.multicrop import CropConfig

__all__ = ["ContinualConfig", "HeadInit", "LossConfig", "SelfDistillationConfig", "TeacherScheduleConfig"]


class HeadInit(str, Enum):
    """Where the DINO / iBOT heads of a continual-pretraining run come from (lower-case names: see
    :class:`~rfm_models.ssl.losses.TeacherNorm`)."""

    load = "load"  # from the init_from checkpoint (it must contain them)
    reinit = "reinit"  # fresh heads; warm them up with a frozen backbone (freeze_backbone_steps)
    LOAD = "load"
    REINIT = "reinit"


@dataclass
class LossConfig:
    """Loss terms, temperatures and the teacher normalisation.

    Attributes:
        teacher_norm: ``centering`` (DINO) or ``sinkhorn_knopp`` (DINOv2).
        center_momentum: EMA momentum of the centre (centering only).
        student_temp: student softmax temperature.
        teacher_temp: teacher temperature after warm-up (sharpening).
        teacher_temp_warmup: teacher temperature at step 0, ramped linearly to ``teacher_temp``.
        teacher_temp_warmup_steps: length of that ramp in optimizer steps.
        dino_weight / ibot_weight / koleo_weight: weights of the three terms (0 switches a term off).
        mask_probability: share of the student's global crops that get iBOT masks.
        mask_ratio: [min, max] share of patches masked in a masked crop (spread evenly over the batch).
    """

    teacher_norm: TeacherNorm = TeacherNorm.CENTERING
    center_momentum: float = 0.9
    student_temp: float = 0.1
    teacher_temp: float = 0.07
    teacher_temp_warmup: float = 0.04
    teacher_temp_warmup_steps: int = 0
    dino_weight: float = 1.0
    ibot_weight: float = 1.0
    koleo_weight: float = 0.1
    mask_probability: float = 0.5
    mask_ratio: list[float] = field(default_factory=lambda: [0.1, 0.5])


@dataclass
class TeacherScheduleConfig:
    """Cosine schedules over the run (``total_steps`` of the trainer): teacher EMA momentum and weight decay.

    ``weight_decay_start`` / ``weight_decay_end`` = None leaves the trainer's fixed ``optimizer.weight_decay``.
    """

    momentum_start: float = 0.992
    momentum_end: float = 1.0
    weight_decay_start: float | None = 0.04
    weight_decay_end: float | None = 0.2


@dataclass
class ContinualConfig:
    """Continual pretraining from a local checkpoint.

    Attributes:
        init_from: an ``rfm-self-distillation`` directory (backbone + heads), an ``rfm-vision-language``
            directory, or a plain timm ViT ``.safetensors`` file / directory (backbone only); None = scratch.
        heads: ``load`` the heads from ``init_from`` (it must contain them) or ``reinit`` them.
        freeze_backbone_steps: optimizer steps during which only the heads train (head warm-up), then the
            backbone is unfrozen.
    """

    init_from: str | None = None
    heads: HeadInit = HeadInit.LOAD
    freeze_backbone_steps: int = 0


@dataclass
class SelfDistillationConfig:
    """Everything needed to rebuild a :class:`~rfm_models.ssl.model.SelfDistillationModel`.

    Attributes:
        backbone: a ViT in ``rfm_models.encoders.image_encoders`` (``vit_small``, ``vit_base``, ``test_vit``).
        backbone_options: its keyword overrides (``weights`` is refused: use ``continual.init_from``).
        image_size: side of the global crops (and the resolution the position embeddings are built for).
        head: the DINO head; ``ibot_separate_head`` gives iBOT its own head of the same shape.
        crops, loss, schedule, continual: see their classes.
        grad_checkpointing: recompute the student's activations in backward.
    """

    backbone: str = "vit_small"
    backbone_options: dict[str, Any] = field(default_factory=dict)
    image_size: int = 224
    head: HeadConfig = field(default_factory=HeadConfig)
    ibot_separate_head: bool = False
    crops: CropConfig = field(default_factory=CropConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    schedule: TeacherScheduleConfig = field(default_factory=TeacherScheduleConfig)
    continual: ContinualConfig = field(default_factory=ContinualConfig)
    grad_checkpointing: bool = False

    def validate(self) -> None:
        """ConfigError naming the first invalid field and the fix."""
        self.head.validate()
        self.crops.validate()
        lo = self.loss
        checks = [
            (self.image_size >= 1, f"image_size must be >= 1, got {self.image_size}"),
            ("weights" not in self.backbone_options,
             "backbone_options.weights is not used here: give the checkpoint as continual.init_from"),
            (lo.student_temp > 0 and lo.teacher_temp > 0 and lo.teacher_temp_warmup > 0,
             "loss.student_temp, loss.teacher_temp and loss.teacher_temp_warmup must be > 0"),
            (0.0 <= lo.center_momentum < 1.0, f"loss.center_momentum must be in [0, 1), got {lo.center_momentum}"),
            (0.0 <= lo.mask_probability <= 1.0, f"loss.mask_probability must be in [0, 1], got {lo.mask_probability}"),
            (len(lo.mask_ratio) == 2 and 0.0 <= lo.mask_ratio[0] <= lo.mask_ratio[1] < 1.0,
             f"loss.mask_ratio must be [min, max] with 0 <= min <= max < 1, got {list(lo.mask_ratio)}"),
            (min(lo.dino_weight, lo.ibot_weight, lo.koleo_weight) >= 0, "loss weights must be >= 0"),
            (0.0 <= self.schedule.momentum_start <= self.schedule.momentum_end <= 1.0,
             "schedule.momentum_start <= schedule.momentum_end must lie in [0, 1]"),
            (self.continual.freeze_backbone_steps >= 0, "continual.freeze_backbone_steps must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"self_distillation.{message}")
        TeacherNorm(lo.teacher_norm)
        HeadInit(self.continual.heads)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy (enums as their values)."""
        out: dict[str, Any] = _plain(dataclasses.asdict(self))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SelfDistillationConfig:
        """Inverse of :meth:`to_dict`; unknown keys are refused by name, enum values checked."""
        kinds: dict[str, type] = {"head": HeadConfig, "crops": CropConfig, "loss": LossConfig,
                                  "schedule": TeacherScheduleConfig, "continual": ContinualConfig}
        kwargs = {k: (_build(kinds[k], v, k) if k in kinds else v) for k, v in _checked(cls, data, "").items()}
        config = cls(**kwargs)
        config.loss.teacher_norm = _enum(TeacherNorm, config.loss.teacher_norm, "loss.teacher_norm")
        config.continual.heads = _enum(HeadInit, config.continual.heads, "continual.heads")
        return config


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _checked(cls: type, data: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"self_distillation{prefix}: unknown keys {unknown}; known: {sorted(known)}")
    return dict(data)


def _build(cls: type, data: Any, name: str) -> Any:
    if isinstance(data, cls):
        return data
    return cls(**_checked(cls, data, "." + name))


def _enum(kind: type[Enum], value: Any, name: str) -> Any:
    try:
        return kind(getattr(value, "value", value) if not isinstance(value, str) else value.lower())
    except ValueError:
        choices = [e.value for e in kind]
        raise ConfigError(f"self_distillation.{name}: {value!r} is not one of {choices}") from None
