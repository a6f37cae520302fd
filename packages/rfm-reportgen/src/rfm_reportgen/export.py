"""Build, save and load report generators. A saved generator is a directory: ``generator_config.json``
(format ``rfm-reportgen`` v1: the :class:`GeneratorConfig` with the decoder's transformers config),
``model.safetensors`` and the tokenizer; no pickle anywhere."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from rfm_data import io
from rfm_data.errors import ConfigError
from rfm_models.encoders import create_image_encoder
from rfm_models.encoders.tokenizer import TextTokenizer
from rfm_models.weights import check_state
from rfm_reportgen import __version__
from rfm_reportgen.config import GeneratorConfig
from rfm_reportgen.model import ReportGenerator, decoder_from_config, decoders, embedding_shape, projectors

__all__ = ["CONFIG_NAME", "FORMAT", "build_generator", "load_generator", "save_generator"]

FORMAT, FORMAT_VERSION = "rfm-reportgen", 1
CONFIG_NAME, WEIGHTS_NAME = "generator_config.json", "model.safetensors"


def _tokenizer(config: GeneratorConfig) -> TextTokenizer:
    path = config.tokenizer_path or config.decoder_path
    if not path:
        raise ConfigError("GeneratorConfig.tokenizer_path: give the directory of a tokenizer trained on reports "
                          "(rfm-reportgen pretrain-decoder writes one beside the decoder)")
    return TextTokenizer.load(path)


def _encoder_name(config: GeneratorConfig) -> GeneratorConfig:
    """Record the architecture and training resolution of an encoder taken from an rfm model directory, so a
    saved generator rebuilds it by name (a ViT's position embeddings are sized by the resolution)."""
    url = io.join(config.encoder_weights or "", "config.json")
    if not config.encoder_weights or not io.exists(url):
        return config
    model = json.loads(io.read_text(url)).get("model", {})
    if "image_encoder" not in model:
        raise ConfigError(f"GeneratorConfig.encoder_weights={config.encoder_weights}: its config.json names no "
                          "image_encoder; give an rfm model directory or a .safetensors file")
    return replace(config, image_encoder=model["image_encoder"], image_options=dict(model.get("image_options", {})),
                   image_size=int(model.get("image_size", config.image_size)))


def build_generator(config: GeneratorConfig, seed: int = 0) -> ReportGenerator:
    """A new generator (weights from ``encoder_weights`` / a ``local`` decoder where configured)."""
    import torch

    from rfm_reportgen.model import build_image_encoder, special_ids

    torch.manual_seed(seed)
    config = _encoder_name(config)
    tokenizer = _tokenizer(config)
    encoder = build_image_encoder(config)
    decoder = decoders.create(config.decoder, vocab_size=tokenizer.vocab_size, ids=special_ids(tokenizer),
                              path=config.decoder_path)
    width = embedding_shape(decoder)[1]
    projector = projectors.create(config.projector, in_dim=_token_dim(encoder, config.image_size), out_dim=width,
                                  num_query_tokens=config.num_query_tokens)
    config = replace(config, decoder_config=decoder.config.to_dict())
    return ReportGenerator(config, encoder, projector, decoder, tokenizer)


def _token_dim(encoder: Any, image_size: int) -> int:
    """Width of the encoder's tokens (``forward_features``), measured on one blank image."""
    import torch

    with torch.no_grad():
        feats = encoder.model.eval().forward_features(torch.zeros(1, 1, image_size, image_size))
    encoder.model.train()
    return int(feats.shape[1] if feats.ndim == 4 else feats.shape[-1])


def save_generator(model: ReportGenerator, directory: str) -> None:
    """Write ``model`` into ``directory`` (config last: a directory without it is an interrupted save)."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    for key in _tied_keys(model):
        state.pop(key, None)  # tied output embedding: the same tensor as the input embedding
    with io.atomic_write(io.join(directory, WEIGHTS_NAME)) as f:
        f.write(save_safetensors_bytes(state, metadata={"format": "pt", "rfm_format": FORMAT}))
    model.tokenizer.save(directory)
    config = replace(model.config, decoder_config=model.decoder.config.to_dict(), tokenizer_path=None,
                     decoder_path=None, decoder="saved", encoder_weights=None)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "rfm_reportgen_version": __version__,
               "config": config.to_dict()}
    io.write_text(io.join(directory, CONFIG_NAME), json.dumps(payload, indent=2, sort_keys=True, default=str))


def _tied_keys(model: ReportGenerator) -> list[str]:
    out = model.decoder.get_output_embeddings()  # type: ignore[no-untyped-call]
    if out is None or out.weight is not model.decoder.get_input_embeddings().weight:
        return []
    return [f"decoder.{name}" for name, p in model.decoder.named_parameters(remove_duplicate=False)
            if p is out.weight and name.startswith(("lm_head", "embed_out"))]


def load_generator(directory: str, device: str = "cpu") -> ReportGenerator:
    """Rebuild a saved generator from its config and load its safetensors strictly (named errors)."""
    url = io.join(directory, CONFIG_NAME)
    if not io.exists(url):
        raise ConfigError(f"{directory} is not a saved report generator (no {CONFIG_NAME}; interrupted save?)")
    payload = json.loads(io.read_text(url))
    if payload.get("format") != FORMAT:
        raise ConfigError(f"{url}: format {payload.get('format')!r}, expected {FORMAT!r}")
    config = GeneratorConfig(**payload["config"])
    tokenizer = TextTokenizer.load(directory)
    encoder = create_image_encoder(config.image_encoder, image_size=config.image_size, **config.image_options)
    decoder = decoder_from_config(config.decoder_config or {})
    projector = projectors.create(config.projector, in_dim=_token_dim(encoder, config.image_size),
                                  out_dim=embedding_shape(decoder)[1],
                                  num_query_tokens=config.num_query_tokens)
    model = ReportGenerator(config, encoder, projector, decoder, tokenizer)
    state = load_safetensors_bytes(io.read_bytes(io.join(directory, WEIGHTS_NAME)))
    expected = {k: v for k, v in model.state_dict().items() if k not in _tied_keys(model)}
    check_state(expected, state, f"generator weights in {directory}")
    model.load_state_dict(state, strict=False)
    model.decoder.tie_weights()
    return model.to(device).eval()
