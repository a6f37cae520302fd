"""rfm-models: image/text encoders, CLIP / UniCL / MUST objectives, the vision-language model, export and embed.

Heavy modules (torch, timm, transformers) load on first use of these names, so ``import rfm_models`` is cheap.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("rfm-models")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

_LAZY = {
    "ModelConfig": "rfm_models.model",
    "VisionLanguageModel": "rfm_models.model",
    "build_model": "rfm_models.model",
    "save_pretrained": "rfm_models.export",
    "load_pretrained": "rfm_models.export",
    "embed": "rfm_models.embed",
}

__all__ = ["ModelConfig", "VisionLanguageModel", "__version__", "build_model", "embed", "load_pretrained",
           "save_pretrained"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rfm_models' has no attribute {name!r}")
