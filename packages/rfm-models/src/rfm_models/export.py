"""HF-style model directories: ``save_pretrained(model, dir)`` and ``load_pretrained(dir)``.

Layout (any fsspec URL)::

    DIR/config.json            {"format": "rfm-vision-language", "format_version": "1", "model": ModelConfig,
                                "text_config": transformers config of the text encoder, "text_pooling": ...}
    DIR/model.safetensors      every parameter and persistent buffer of the model
    DIR/tokenizer.json         the text tokenizer (``tokenizers`` format)
    DIR/tokenizer_config.json  batching settings (max_length, pad token)

Loading rebuilds the architecture from ``config.json`` alone (the text encoder from its stored transformers
config, not from the directory it was first loaded from), then reads the safetensors: nothing is unpickled,
and a missing, unexpected or wrongly shaped tensor is named in the error.
"""

from __future__ import annotations

import json
from typing import Any

from safetensors.torch import save as save_safetensors_bytes

from rfm_data import io
from rfm_data.errors import ConfigError
from rfm_data.registry import Registry
from rfm_models import __version__
from rfm_models.encoders import ImageEncoder, TextEncoder, TextTokenizer
from rfm_models.model import ModelConfig, VisionLanguageModel, build_model
from rfm_models.weights import WEIGHTS_NAME, load_state_strict, read_safetensors

FORMAT = "rfm-vision-language"
FORMAT_VERSION = "1"
CONFIG_NAME = "config.json"

__all__ = ["CONFIG_NAME", "FORMAT", "FORMAT_VERSION", "image_encoder_loaders", "load_image_encoder", "load_pretrained",
           "read_format", "save_pretrained"]


def save_pretrained(model: VisionLanguageModel, directory: str) -> None:
    """Write ``model`` as an HF-style directory (see the module docstring); each file is written atomically.

    The config goes last, so a directory without ``config.json`` is an interrupted save.
    """
    state = {name: tensor.detach().contiguous().cpu() for name, tensor in model.state_dict().items()}
    with io.atomic_write(io.join(directory, WEIGHTS_NAME)) as f:
        f.write(save_safetensors_bytes(state, metadata={"format": "pt", "rfm_format": FORMAT}))
    model.tokenizer.save(directory)
    config: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "rfm_models_version": __version__,
        "model": model.config.to_dict(),
        "text_config": model.text_encoder.hf_config(),
        "text_pooling": model.text_encoder.pooling,
    }
    io.write_text(io.join(directory, CONFIG_NAME), json.dumps(config, indent=2, sort_keys=True, default=str))


def _read_config(directory: str) -> dict[str, Any]:
    url = io.join(directory, CONFIG_NAME)
    if not io.exists(url):
        raise ConfigError(f"{directory} is not an rfm model directory (no {CONFIG_NAME}; interrupted save?)")
    config: dict[str, Any] = json.loads(io.read_text(url))
    if config.get("format") != FORMAT:
        raise ConfigError(f"{url}: format {config.get('format')!r}, expected {FORMAT!r}")
    if str(config.get("format_version", "")).split(".")[0] != FORMAT_VERSION:
        raise ConfigError(f"{url}: format version {config.get('format_version')}; this reads {FORMAT_VERSION}")
    return config


def load_pretrained(directory: str, device: str = "cpu") -> VisionLanguageModel:
    """Load a directory written by :func:`save_pretrained`, in eval mode on ``device``.

    Raises:
        ConfigError: not a model directory, another format version, or a tensor missing / unexpected /
            of the wrong shape (named).
    """
    config = _read_config(directory)
    model_config = ModelConfig.from_dict(config["model"])
    tokenizer = TextTokenizer.load(directory)
    text_encoder = TextEncoder.from_hf_config(config["text_config"], tokenizer, config.get("text_pooling", "mean"))
    model = build_model(model_config, text_encoder=text_encoder, seed=None, load_weights=False)
    load_state_strict(model, read_safetensors(io.join(directory, WEIGHTS_NAME)), io.join(directory, WEIGHTS_NAME))
    return model.to(device).eval()


# Directory format (config.json "format") → loader of its image encoder: probes, kNN and segmentation work on
# any rfm model directory (vision-language, self-distillation, ...) through :func:`load_image_encoder`.
image_encoder_loaders: Registry[ImageEncoder] = Registry("model directory format")


@image_encoder_loaders.register(FORMAT)
def _vision_language_image_encoder(directory: str, device: str = "cpu") -> ImageEncoder:
    return load_pretrained(directory, device=device).image_encoder


def read_format(directory: str) -> str:
    """The ``format`` named in ``directory/config.json``; ConfigError when it is not a model directory."""
    url = io.join(directory, CONFIG_NAME)
    if not io.exists(url):
        raise ConfigError(f"{directory} is not an rfm model directory (no {CONFIG_NAME}; interrupted save?)")
    return str(json.loads(io.read_text(url)).get("format", ""))


def load_image_encoder(directory: str, device: str = "cpu") -> ImageEncoder:
    """The image encoder (``(B, 1, H, W)`` → ``(B, out_dim)``, eval mode) of any registered directory format.

    Raises:
        ConfigError: not a model directory, or a format no loader is registered for (the known ones named).
    """
    fmt = read_format(directory)
    if fmt not in image_encoder_loaders:
        raise ConfigError(f"{directory}: unknown model format {fmt!r}; known: {image_encoder_loaders.names()}")
    return image_encoder_loaders.create(fmt, directory=directory, device=device).eval()


@image_encoder_loaders.register("rfm-self-distillation")
def _self_distillation_image_encoder(directory: str, device: str = "cpu") -> ImageEncoder:
    """The EMA teacher backbone of an ``rfm_models.ssl`` export (imported lazily: no cycle)."""
    from rfm_models.ssl.export import load_self_distillation

    return load_self_distillation(directory, device=device).teacher
