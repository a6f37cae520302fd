"""DINOv2-style self-distillation (RAD-DINO recipe) for chest X-ray ViTs: multi-crop views, EMA teacher,
DINO + iBOT + KoLeo losses, schedules, continual pretraining from local checkpoints, and export.

See ``docs/self-distillation.md``. Heavy modules load on first use of these names.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "SelfDistillationConfig": "rfm_models.ssl.config",
    "ContinualConfig": "rfm_models.ssl.config",
    "HeadInit": "rfm_models.ssl.config",
    "LossConfig": "rfm_models.ssl.config",
    "TeacherScheduleConfig": "rfm_models.ssl.config",
    "HeadConfig": "rfm_models.ssl.heads",
    "DINOHead": "rfm_models.ssl.heads",
    "TeacherNorm": "rfm_models.ssl.losses",
    "CropConfig": "rfm_models.ssl.multicrop",
    "MultiCrop": "rfm_models.ssl.multicrop",
    "MultiCropd": "rfm_models.ssl.multicrop",
    "SelfDistillationModel": "rfm_models.ssl.model",
    "build_self_distillation": "rfm_models.ssl.model",
    "save_self_distillation": "rfm_models.ssl.export",
    "load_self_distillation": "rfm_models.ssl.export",
    "build_ssl_loader": "rfm_models.ssl.data",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rfm_models.ssl' has no attribute {name!r}")
