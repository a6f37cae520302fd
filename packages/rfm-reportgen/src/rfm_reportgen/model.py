"""The report generator: an rfm-models image encoder → a projector → a causal language decoder.

Image tokens (ViT patch tokens, or the cells of a CNN feature map) are projected into the decoder's
embedding space and put in front of the report as a prefix; the decoder is trained with teacher forcing on
the report tokens only, and decodes with transformers' ``generate`` from that prefix (greedy, beam search or
sampling, with or without the KV cache).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, cast

import torch
from torch import Tensor, nn
from transformers import AutoConfig, AutoModelForCausalLM, GPT2Config, PreTrainedModel

from rfm_data.errors import ConfigError
from rfm_data.registry import Registry
from rfm_models.encoders import ImageEncoder, create_image_encoder
from rfm_models.encoders.tokenizer import TextTokenizer
from rfm_reportgen.config import GenerationConfig, GeneratorConfig, target_text

__all__ = ["QueryProjector", "ReportGenerator", "decoders", "embedding_shape", "projectors", "special_ids"]

BOS, EOS, PAD = "[CLS]", "[SEP]", "[PAD]"


def special_ids(tokenizer: TextTokenizer) -> dict[str, int]:
    """``bos`` / ``eos`` / ``pad`` ids: the WordPiece tokenizer's [CLS] starts and [SEP] ends a report."""
    ids = {name: tokenizer.tokenizer.token_to_id(tok) for name, tok in (("bos", BOS), ("eos", EOS), ("pad", PAD))}
    missing = [name for name, i in ids.items() if i is None]
    if missing:
        raise ConfigError(f"tokenizer lacks the {missing} token(s) {BOS}/{EOS}/{PAD}: train it with "
                          "rfm_models.encoders.train_tokenizer")
    return {k: int(v) for k, v in ids.items() if v is not None}


# -- projectors ----------------------------------------------------------------------------------------
projectors: Registry[nn.Module] = Registry("projector")


@projectors.register("linear")
def _linear(in_dim: int, out_dim: int, num_query_tokens: int = 0) -> nn.Module:
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.LayerNorm(out_dim))


@projectors.register("mlp")
def _mlp(in_dim: int, out_dim: int, num_query_tokens: int = 0) -> nn.Module:
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim), nn.LayerNorm(out_dim))


class QueryProjector(nn.Module):
    """Learned query tokens that cross-attend to the image tokens: a fixed-length prefix whatever the
    number of image tokens (a one-layer Q-Former)."""

    def __init__(self, in_dim: int, out_dim: int, num_query_tokens: int) -> None:
        super().__init__()
        if num_query_tokens < 1:
            raise ConfigError(f"num_query_tokens={num_query_tokens}: the query projector needs >= 1")
        heads = next(h for h in (8, 4, 2, 1) if out_dim % h == 0)
        self.queries = nn.Parameter(torch.randn(num_query_tokens, out_dim) * 0.02)
        self.kv = nn.Linear(in_dim, out_dim)
        self.attn = nn.MultiheadAttention(out_dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.LayerNorm(out_dim), nn.Linear(out_dim, out_dim), nn.GELU(),
                                 nn.Linear(out_dim, out_dim))
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, tokens: Tensor) -> Tensor:
        kv = self.kv(tokens)
        q = self.queries.unsqueeze(0).expand(tokens.shape[0], -1, -1)
        x = q + self.attn(q, kv, kv, need_weights=False)[0]
        out: Tensor = self.norm(x + self.mlp(x))
        return out


projectors.register("query")(QueryProjector)


# -- decoders ------------------------------------------------------------------------------------------
decoders: Registry[PreTrainedModel] = Registry("decoder")


def _gpt2(n_layer: int, n_embd: int, n_head: int, n_positions: int = 512) -> Any:
    def factory(vocab_size: int, ids: Mapping[str, int], path: str | None = None) -> PreTrainedModel:
        config = GPT2Config(vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
                            n_head=n_head, bos_token_id=ids["bos"], eos_token_id=ids["eos"],
                            pad_token_id=ids["pad"], resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1)
        model: PreTrainedModel = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
        return model
    return factory


decoders.register("test_gpt2")(_gpt2(n_layer=1, n_embd=32, n_head=2, n_positions=256))
decoders.register("gpt2_tiny")(_gpt2(n_layer=2, n_embd=128, n_head=4))
decoders.register("gpt2_small")(_gpt2(n_layer=4, n_embd=256, n_head=4))


@decoders.register("local")
def _local(vocab_size: int, ids: Mapping[str, int], path: str | None = None) -> PreTrainedModel:
    if not path:
        raise ConfigError("decoder='local' needs GeneratorConfig.decoder_path: a transformers causal-LM directory")
    # safetensors only: a pickled pytorch_model.bin is never unpickled.
    model: PreTrainedModel = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True)
    if embedding_shape(model)[0] < vocab_size:
        raise ConfigError(f"decoder {path} has {embedding_shape(model)[0]} token embeddings "
                          f"but the tokenizer has {vocab_size}: use the tokenizer saved with that decoder")
    return model


def embedding_shape(decoder: PreTrainedModel) -> tuple[int, int]:
    """``(vocabulary, width)`` of the decoder's input token embedding."""
    weight = decoder.get_input_embeddings().weight
    if not isinstance(weight, Tensor):
        raise ConfigError(f"{type(decoder).__name__}: its input embedding has no weight matrix")
    return int(weight.shape[0]), int(weight.shape[1])


def decoder_from_config(config: Mapping[str, Any]) -> PreTrainedModel:
    """An untrained decoder with the architecture of a stored transformers config (weights loaded after)."""
    cfg = AutoConfig.for_model(**dict(config))
    model: PreTrainedModel = AutoModelForCausalLM.from_config(cfg)  # type: ignore[no-untyped-call]
    return model


def positions_of(decoder: PreTrainedModel) -> int:
    """The decoder's longest sequence (prefix + report) in tokens."""
    cfg = decoder.config
    return int(getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", 0) or 1 << 30)


def build_image_encoder(config: GeneratorConfig) -> ImageEncoder:
    """The configured image encoder, with ``encoder_weights`` when given (a file or an rfm model directory)."""
    from rfm_models.export import load_image_encoder
    from rfm_models.weights import resolve_weights

    weights = config.encoder_weights
    if weights and not weights.endswith(".safetensors") and _is_model_dir(weights):
        return load_image_encoder(weights).train()
    return create_image_encoder(config.image_encoder, image_size=config.image_size,
                                weights=resolve_weights(weights) if weights else None, **config.image_options)


def _is_model_dir(path: str) -> bool:
    from rfm_data import io

    return io.exists(io.join(path, "config.json"))


class ReportGenerator(nn.Module):
    """Image → report. Follows the rfm trainer's model contract: ``model(batch, keep)`` → ``{"loss", ...}``.

    Args:
        config: the architecture (``decoder_config`` filled in).
        image_encoder: the rfm-models image encoder.
        projector: image tokens ``(B, N, D_img)`` → prefix ``(B, P, D_dec)``.
        decoder: a transformers causal LM.
        tokenizer: the decoder's tokenizer ([CLS] = start, [SEP] = end of report, [PAD]).
    """

    def __init__(self, config: GeneratorConfig, image_encoder: ImageEncoder, projector: nn.Module,
                 decoder: PreTrainedModel, tokenizer: TextTokenizer) -> None:
        super().__init__()
        self.config, self.image_encoder, self.projector, self.decoder = config, image_encoder, projector, decoder
        self.tokenizer = TextTokenizer(tokenizer.tokenizer, max_length=config.max_target_tokens,
                                       pad_token=tokenizer.pad_token)
        self.ids = special_ids(self.tokenizer)
        if config.freeze_encoder:
            self.image_encoder.requires_grad_(False)

    def image_tokens(self, images: Tensor) -> Tensor:
        """``(B, N, D)`` image tokens: ViT tokens as they are, CNN feature maps flattened over space."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_encoder):
            if self.config.freeze_encoder:
                self.image_encoder.eval()  # a frozen encoder also keeps its batch-norm statistics
            feats: Tensor = self.image_encoder.model.forward_features(images)  # type: ignore[operator]
        return feats.flatten(2).transpose(1, 2) if feats.ndim == 4 else feats

    def prefix(self, images: Tensor) -> Tensor:
        """The decoder-space prefix ``(B, P, D_dec)`` of ``images`` ``(B, 1, H, W)``."""
        out: Tensor = self.projector(self.image_tokens(images))
        return out

    def _check_length(self, prefix_len: int, text_len: int) -> None:
        limit = positions_of(self.decoder)
        if prefix_len + text_len > limit:
            raise ConfigError(f"prefix ({prefix_len} image tokens) + report ({text_len} tokens) exceeds the "
                              f"decoder's {limit} positions: lower max_target_tokens / max_new_tokens, the image "
                              "size, or use the 'query' projector")

    def forward(self, batch: Mapping[str, Any], keep: Tensor | None = None) -> dict[str, Tensor]:
        """Teacher-forced loss of the ``config.target`` text of ``batch`` (``image`` or cached
        ``image_tokens``, ``findings``, ``impression``); ``per_sample_loss`` is the mean token loss of each row."""
        texts = [target_text(f, i, self.config.target) for f, i in zip(batch["findings"], batch["impression"],
                                                                         strict=True)]
        tok = self.tokenizer(texts)
        # Cached tokens of a frozen encoder (see training.cached_token_rows) skip the image encoder.
        tokens = batch.get("image_tokens")
        prefix = self.projector(tokens) if tokens is not None else self.prefix(batch["image"])
        ids, mask = tok["input_ids"].to(prefix.device), tok["attention_mask"].to(prefix.device)
        self._check_length(prefix.shape[1], ids.shape[1])
        embeds = torch.cat([prefix, self.decoder.get_input_embeddings()(ids)], dim=1)
        attn = torch.cat([torch.ones(prefix.shape[:2], dtype=mask.dtype, device=mask.device), mask], dim=1)
        logits = self.decoder(inputs_embeds=embeds, attention_mask=attn).logits
        # Position t predicts token t+1: the report tokens after [CLS] are predicted from the positions before.
        pred = logits[:, prefix.shape[1]:-1]
        target = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
        token_loss = nn.functional.cross_entropy(pred.transpose(1, 2).float(), target, ignore_index=-100,
                                                 reduction="none")
        counts = (target != -100).sum(dim=1).clamp(min=1)
        per_sample = token_loss.sum(dim=1) / counts
        rows = keep if keep is not None else torch.ones_like(per_sample, dtype=torch.bool)
        loss = per_sample[rows].mean() if bool(rows.any()) else per_sample.sum() * 0.0
        return {"loss": loss, "per_sample_loss": per_sample.detach()}

    @torch.no_grad()
    def generate(self, images: Tensor, config: GenerationConfig | None = None) -> list[str]:
        """Reports for ``images`` ``(B, 1, H, W)``; never longer than ``config.max_new_tokens`` tokens."""
        cfg = config or GenerationConfig()
        was_training = self.training
        self.eval()
        try:
            ids = self.generate_ids(images, cfg)
        finally:
            self.train(was_training)
        return [t.strip() for t in self.tokenizer.tokenizer.decode_batch(ids.tolist(), skip_special_tokens=True)]

    def generate_ids(self, images: Tensor, cfg: GenerationConfig) -> Tensor:
        """Generated token ids ``(B, <= max_new_tokens)`` (eval mode expected)."""
        prefix = self.prefix(images)
        self._check_length(prefix.shape[1] + 1, cfg.max_new_tokens)
        bos = torch.full((images.shape[0], 1), self.ids["bos"], dtype=torch.long, device=images.device)
        embeds = torch.cat([prefix, self.decoder.get_input_embeddings()(bos)], dim=1)
        attn = torch.ones(embeds.shape[:2], dtype=torch.long, device=images.device)
        torch.manual_seed(cfg.seed)
        sample = cfg.strategy.value == "sample"
        beams = cfg.num_beams if cfg.strategy.value == "beam" else 1
        kwargs: dict[str, Any] = {"temperature": cfg.temperature, "top_p": cfg.top_p} if sample else {}
        with warnings.catch_warnings():
            # The penalties apply to generated tokens only, which is what we want: the prefix is an image.
            warnings.filterwarnings("ignore", message=".*inputs_embeds.*", category=UserWarning)
            out: Tensor = cast(Any, self.decoder).generate(
                    inputs_embeds=embeds, attention_mask=attn, max_new_tokens=cfg.max_new_tokens, num_beams=beams,
                do_sample=sample, repetition_penalty=cfg.repetition_penalty, use_cache=cfg.use_cache,
                no_repeat_ngram_size=cfg.no_repeat_ngram_size, bos_token_id=self.ids["bos"],
                eos_token_id=self.ids["eos"], pad_token_id=self.ids["pad"], **kwargs)
        return out
