"""The ``rfm-self-distillation`` directory format: everything needed to continue pretraining or to use the
teacher as an image encoder.

Layout (any fsspec URL)::

    DIR/config.json        {"format": "rfm-self-distillation", "format_version": "1",
                            "model": SelfDistillationConfig, "rfm_models_version": ...}
    DIR/model.safetensors  student, teacher, DINO / iBOT heads (both), centres, mask token, step counter

``rfm_models.export.load_image_encoder(DIR)`` returns the teacher backbone (the model to evaluate and to
fine-tune); ``continual.init_from: DIR`` continues pretraining from it with its heads.
"""

from __future__ import annotations

import json
from typing import Any

from safetensors.torch import save as save_safetensors_bytes

from rfm_data import io
from rfm_data.errors import ConfigError
from rfm_models import __version__
from rfm_models.ssl.config import SelfDistillationConfig
from rfm_models.ssl.model import SelfDistillationModel, build_self_distillation
from rfm_models.weights import WEIGHTS_NAME, load_state_strict, read_safetensors

FORMAT = "rfm-self-distillation"
FORMAT_VERSION = "1"
CONFIG_NAME = "config.json"

__all__ = ["FORMAT", "FORMAT_VERSION", "load_self_distillation", "save_self_distillation"]


def save_self_distillation(model: SelfDistillationModel, directory: str) -> None:
    """Write ``model`` to ``directory`` (weights first, config last: no config.json = interrupted save)."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with io.atomic_write(io.join(directory, WEIGHTS_NAME)) as f:
        f.write(save_safetensors_bytes(state, metadata={"format": "pt", "rfm_format": FORMAT}))
    config: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION,
                              "rfm_models_version": __version__, "model": model.config.to_dict()}
    io.write_text(io.join(directory, CONFIG_NAME), json.dumps(config, indent=2, sort_keys=True))


def read_config(directory: str) -> SelfDistillationConfig:
    """The :class:`SelfDistillationConfig` stored in ``directory``; ConfigError if it is not this format."""
    url = io.join(directory, CONFIG_NAME)
    if not io.exists(url):
        raise ConfigError(f"{directory} is not an rfm model directory (no {CONFIG_NAME}; interrupted save?)")
    data = json.loads(io.read_text(url))
    if data.get("format") != FORMAT:
        raise ConfigError(f"{url}: format {data.get('format')!r}, expected {FORMAT!r}")
    if str(data.get("format_version", "")).split(".")[0] != FORMAT_VERSION:
        raise ConfigError(f"{url}: format version {data.get('format_version')}; this reads {FORMAT_VERSION}")
    return SelfDistillationConfig.from_dict(data["model"])


def load_self_distillation(directory: str, device: str = "cpu") -> SelfDistillationModel:
    """Load a directory written by :func:`save_self_distillation`, in eval mode on ``device``.

    Raises:
        ConfigError: not such a directory, another format version, or a tensor missing / unexpected / of the
            wrong shape (named).
    """
    config = read_config(directory)
    model = build_self_distillation(config, seed=None, load_init=False)
    url = io.join(directory, WEIGHTS_NAME)
    load_state_strict(model, read_safetensors(url), url)
    return model.to(device).eval()
