"""A model under evaluation: its directory, format, content hash, and (lazily) its encoders.

``random_init=True`` gives the baseline "same architecture, fresh weights from ``seed``": the trained
directory's config is rebuilt without reading its weights, so any gain of the trained model over its twin is
what training bought. Vision-language directories rebuild through :func:`rfm_models.model.build_model`; other
formats load their image encoder and reset every parameter from the seed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import torch
from torch import nn

from rfm_data import io
from rfm_data.errors import ConfigError
from rfm_models.encoders import ImageEncoder, TextEncoder, TextTokenizer
from rfm_models.export import CONFIG_NAME, FORMAT, load_image_encoder, load_pretrained
from rfm_models.model import ModelConfig, VisionLanguageModel, build_model
from rfm_models.weights import WEIGHTS_NAME

__all__ = ["ModelHandle", "ModelKind", "open_model"]

_HASH_CHUNK = 1 << 22


class ModelKind(str, Enum):
    """What a directory can do: vision-language (zero-shot, retrieval) or image-only (probes, kNN, ...)."""

    VISION_LANGUAGE = "vision_language"
    IMAGE = "image"


def _file_hash(url: str) -> str:
    fs, path = io.filesystem(url)
    digest = hashlib.sha256()
    with fs.open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _reset_parameters(module: nn.Module, seed: int) -> None:
    # Every torch/timm layer with weights implements reset_parameters; a fork keeps the caller's RNG intact.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for sub in module.modules():
            reset = getattr(sub, "reset_parameters", None)
            if callable(reset):
                reset()


@dataclass
class ModelHandle:
    """An rfm model directory opened for evaluation (see :func:`open_model`).

    Attributes:
        directory: the model directory URL.
        config: its parsed ``config.json``.
        kind: vision-language or image-only.
        model_hash: sha256 of the weights (+ ``random-init-<seed>`` for the baseline): the feature-cache key.
        random_init: evaluate fresh weights of the same architecture instead of the trained ones.
        seed: seed of the random initialisation.
        device: torch device.
    """

    directory: str
    config: dict[str, Any]
    kind: ModelKind
    model_hash: str
    random_init: bool = False
    seed: int = 0
    device: str = "cpu"
    _vl: VisionLanguageModel | None = field(default=None, repr=False)

    @property
    def image_size(self) -> int:
        """Input size of the image encoder (from the directory's config; 224 when it names none)."""
        model = self.config.get("model", {})
        return int(model.get("image_size", self.config.get("image_size", 224)))

    @property
    def name(self) -> str:
        """A short label for tables: the directory's last component, ``(random init)`` for the baseline."""
        base = self.directory.rstrip("/").rsplit("/", 1)[-1]
        return f"{base} (random init)" if self.random_init else base

    def vision_language(self) -> VisionLanguageModel:
        """The whole vision-language model (eval mode). ConfigError for image-only directories."""
        if self.kind != ModelKind.VISION_LANGUAGE:
            raise ConfigError(f"{self.directory} has no text tower (format {self.config.get('format')!r})")
        if self._vl is None:
            self._vl = self._build_vl().to(self.device).eval()
        return self._vl

    def _build_vl(self) -> VisionLanguageModel:
        if not self.random_init:
            return load_pretrained(self.directory, device=self.device)
        tokenizer = TextTokenizer.load(self.directory)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            text = TextEncoder.from_hf_config(self.config["text_config"], tokenizer,
                                              self.config.get("text_pooling", "mean"))
        return build_model(ModelConfig.from_dict(self.config["model"]), text_encoder=text, seed=self.seed,
                           load_weights=False)

    def image_encoder(self) -> ImageEncoder:
        """A fresh copy-free image encoder (eval mode): fine-tuning may change it, so it is rebuilt per call."""
        if self.kind == ModelKind.VISION_LANGUAGE:
            if self.random_init:
                return self._build_vl().image_encoder.to(self.device).eval()
            return load_pretrained(self.directory, device=self.device).image_encoder.eval()
        encoder = load_image_encoder(self.directory, device=self.device)
        if self.random_init:
            _reset_parameters(encoder, self.seed)
        return encoder.eval()


def _check_directory(directory: str) -> dict[str, Any]:
    config_url = io.join(directory, CONFIG_NAME)
    if not io.exists(directory):
        raise ConfigError(f"model directory {directory} does not exist: pass the folder written by "
                          "rfm_models.export.save_pretrained (config.json + model.safetensors)")
    if not io.exists(config_url):
        raise ConfigError(f"model directory {directory} has no {CONFIG_NAME}: not an rfm model directory, or an "
                          "interrupted save; re-export it with rfm_models.export.save_pretrained")
    if not io.exists(io.join(directory, WEIGHTS_NAME)):
        raise ConfigError(f"model directory {directory} has no {WEIGHTS_NAME}: the weights are missing "
                          "(copy the whole directory, or use --random-init for an untrained baseline)")
    try:
        config: dict[str, Any] = json.loads(io.read_text(config_url))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{config_url} is not valid JSON ({err}): re-export the model") from err
    return config


def open_model(directory: str, random_init: bool = False, seed: int = 0, device: str = "cpu") -> ModelHandle:
    """Open ``directory`` for evaluation (checks its files; weights are read only when used).

    Raises:
        ConfigError: missing directory, config.json or weights (named, with the fix).
    """
    config = _check_directory(directory)
    kind = ModelKind.VISION_LANGUAGE if config.get("format") == FORMAT else ModelKind.IMAGE
    if kind == ModelKind.VISION_LANGUAGE and not io.exists(io.join(directory, "tokenizer.json")):
        raise ConfigError(f"model directory {directory} has no tokenizer.json: a vision-language export "
                          "needs it; copy the whole directory")
    weights = _file_hash(io.join(directory, WEIGHTS_NAME))
    model_hash = hashlib.sha256(f"{weights}|random-init-{seed}".encode()).hexdigest() if random_init else weights
    return ModelHandle(directory, config, kind, model_hash, random_init, seed, device)
