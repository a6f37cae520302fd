"""The vision-language model: image encoder + text encoder + projections + learned logit scale + objective."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from rfm_data.errors import ConfigError
from rfm_data.labels import CHEXPERT
from rfm_models.batching import Collator, prepare_batch
from rfm_models.encoders import (
    ImageEncoder,
    TextEncoder,
    create_image_encoder,
    create_projection_head,
    create_text_encoder,
)
from rfm_models.encoders.tokenizer import TextTokenizer
from rfm_models.objectives import Objective, create_objective
from rfm_models.objectives.base import unit

__all__ = ["ModelConfig", "VisionLanguageModel", "build_model"]


@dataclass
class ModelConfig:
    """Everything needed to rebuild the architecture (weights live elsewhere).

    Attributes:
        image_encoder: name in ``image_encoders``; ``image_options`` are its keyword overrides (``weights``).
        text_encoder: name in ``text_encoders``; ``text_options`` are its keyword overrides (``path``, ...).
        embed_dim: shared embedding dimension.
        projection: name in ``projection_heads``.
        objective: name in ``objectives``; ``objective_options`` are its overrides (``stage`` for MUST).
        image_size: training resolution (the embed / eval preprocessing resizes to it).
        observations: label names, in the order of the ``labels`` tensor.
        init_logit_scale: log of the initial scale; None = the objective's default (CLIP: log(1/0.07)).
        max_logit_scale: the exponentiated scale is clamped to it (CLIP: 100) to keep training stable.
        learn_logit_scale: whether the temperature is learned.
        grad_checkpointing: recompute encoder activations in backward.
        freeze_text: lock the text encoder (LiT-style): its weights get no gradient and stay out of the
            optimizer, and it always runs in eval mode without autograd (forward-only FLOPs, no dropout);
            the text projection and the logit scale still train. Meant for a pretrained text tower.
        absent_label: label value for observations a report does not mention.
    """

    image_encoder: str = "vit_small"
    image_options: dict[str, Any] = field(default_factory=dict)
    text_encoder: str = "minilm"
    text_options: dict[str, Any] = field(default_factory=dict)
    embed_dim: int = 512
    projection: str = "linear"
    objective: str = "clip"
    objective_options: dict[str, Any] = field(default_factory=dict)
    image_size: int = 224
    observations: list[str] = field(default_factory=lambda: list(CHEXPERT))
    init_logit_scale: float | None = None
    max_logit_scale: float = 100.0
    learn_logit_scale: bool = True
    grad_checkpointing: bool = False
    freeze_text: bool = False
    absent_label: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are refused by name."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"model config: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**dict(data))


class VisionLanguageModel(nn.Module):
    """Dual encoder trained by a registered objective.

    ``forward(batch, keep=None)`` takes a batch from :meth:`collator` (or a plain loader batch: the text is
    tokenized on the fly) and returns ``loss``, ``per_sample_loss`` (B,), normalised ``image_emb`` and
    ``text_emb`` (B, D), ``logit_scale`` and the objective's term means. Build it with :func:`build_model`.
    """

    def __init__(self, config: ModelConfig, image_encoder: ImageEncoder, text_encoder: TextEncoder) -> None:
        super().__init__()
        self.config = config
        self.image_encoder, self.text_encoder = image_encoder, text_encoder
        self.image_projection = create_projection_head(config.projection, image_encoder.out_dim, config.embed_dim)
        self.text_projection = create_projection_head(config.projection, text_encoder.out_dim, config.embed_dim)
        self.objective: Objective = create_objective(config.objective, embed_dim=config.embed_dim,
                                                     num_labels=len(config.observations),
                                                     **config.objective_options)
        init = config.init_logit_scale if config.init_logit_scale is not None else self.objective.init_logit_scale
        self.logit_scale = nn.Parameter(torch.tensor(float(init)), requires_grad=config.learn_logit_scale)
        if config.freeze_text:
            # No requires_grad: the trainer's optimizer skips these weights and DDP does not wait for their
            # gradients (no find_unused_parameters needed), as MUST does with its idle classifiers.
            self.text_encoder.requires_grad_(False)
            self.text_encoder.eval()  # modules start in train mode and the trainer never calls .train()
        if config.grad_checkpointing:
            self.set_grad_checkpointing(True)

    def train(self, mode: bool = True) -> VisionLanguageModel:
        """``nn.Module.train``, except that a frozen text encoder stays in eval mode (no dropout)."""
        super().train(mode)
        if self.config.freeze_text:
            self.text_encoder.eval()
        return self

    @property
    def tokenizer(self) -> TextTokenizer:
        """The text encoder's tokenizer."""
        return self.text_encoder.tokenizer

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Gradient checkpointing in both encoders (timm ``set_grad_checkpointing``, transformers' own)."""
        self.image_encoder.set_grad_checkpointing(enable)
        if not self.config.freeze_text:  # a frozen tower keeps no activations for backward: nothing to save
            self.text_encoder.set_grad_checkpointing(enable)
        self.config.grad_checkpointing = enable

    def collator(self, prompt_fraction: float = 0.0, seed: int = 0) -> Collator:
        """A loader ``collate_fn`` producing what :meth:`forward` needs (see :mod:`rfm_models.batching`)."""
        return Collator(self.tokenizer, self.config.observations, prompt_fraction, seed, self.config.absent_label)

    def scale(self) -> Tensor:
        """The exponentiated, clamped logit scale."""
        return self.logit_scale.exp().clamp(max=self.config.max_logit_scale)

    def project_image(self, images: Tensor) -> Tensor:
        """Unnormalised projected image embeddings ``(B, D)`` of ``(B, 1, H, W)`` images."""
        out: Tensor = self.image_projection(self.image_encoder(images))
        return out

    def project_text(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Unnormalised projected text embeddings ``(B, D)``."""
        if self.config.freeze_text:
            # Forward only: no autograd graph through the locked tower (its FLOPs are counted once, not x3).
            with torch.no_grad():
                features = self.text_encoder(input_ids, attention_mask)
        else:
            features = self.text_encoder(input_ids, attention_mask)
        out: Tensor = self.text_projection(features)
        return out

    def encode_image(self, images: Tensor) -> Tensor:
        """L2-normalised image embeddings ``(B, D)``."""
        return unit(self.project_image(images))

    def encode_text(self, texts: Sequence[str]) -> Tensor:
        """L2-normalised text embeddings ``(B, D)`` of raw strings (tokenized here)."""
        tokens = self.tokenizer(list(texts))
        device = self.logit_scale.device
        return unit(self.project_text(tokens["input_ids"].to(device), tokens["attention_mask"].to(device)))

    def _ensure_tokens(self, batch: Mapping[str, Any]) -> Mapping[str, Any]:
        if "input_ids" in batch:
            return batch
        if "report" not in batch:
            raise ValueError("batch has neither input_ids nor report: use model.collator() as collate_fn")
        return prepare_batch(batch, self.tokenizer, self.config.observations, absent_label=self.config.absent_label)

    def forward(self, batch: Mapping[str, Any], keep: Tensor | None = None) -> dict[str, Tensor]:
        """Embeddings of every sample; the loss only over samples where ``keep`` (bool (B,)) is True."""
        batch = self._ensure_tokens(batch)
        images: Tensor = batch["image"]
        device = images.device
        image_raw = self.project_image(images)
        text_raw = self.project_text(batch["input_ids"].to(device), batch["attention_mask"].to(device))
        n = images.shape[0]
        kept = torch.ones(n, dtype=torch.bool, device=device) if keep is None else keep.to(device).bool()
        if kept.shape != (n,):
            raise ValueError(f"keep must be a bool mask of shape ({n},), got {tuple(kept.shape)}")
        labels, label_ids = batch.get("labels"), batch.get("label_ids")
        result = self.objective(image_raw[kept], text_raw[kept], self.scale(),
                                labels=None if labels is None else labels.to(device)[kept],
                                label_ids=None if label_ids is None else label_ids.to(device)[kept])
        per_sample = image_raw.new_zeros(n)
        per_sample[kept] = result["per_sample_loss"].to(per_sample.dtype)
        return {**result, "per_sample_loss": per_sample, "image_emb": unit(image_raw), "text_emb": unit(text_raw),
                "logit_scale": self.scale().detach()}


def build_model(config: ModelConfig, text_encoder: TextEncoder | None = None, seed: int | None = 0,
                load_weights: bool = True) -> VisionLanguageModel:
    """Build the model of ``config``; parameters initialised from ``seed`` (None: torch's current state).

    Args:
        config: the architecture.
        text_encoder: use this one instead of creating ``config.text_encoder`` (loading an export does).
        seed: seed of the random initialisation.
        load_weights: load ``image_options["weights"]`` (export loading skips it: weights come after).
    """
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        image_options = {**config.image_options, "image_size": config.image_size}
        if not load_weights:
            image_options["weights"] = None
        image_encoder = create_image_encoder(config.image_encoder, **image_options)
        if text_encoder is None:
            text_encoder = create_text_encoder(config.text_encoder, **config.text_options)
        model = VisionLanguageModel(config, image_encoder, text_encoder)
    if not math.isfinite(model.logit_scale.item()):
        raise ConfigError(f"init_logit_scale {config.init_logit_scale} is not finite")
    return model
