"""Configuration dataclasses and choices of rfm-reportgen (one dataclass per component)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from rfm_data.errors import ConfigError

__all__ = ["DecodeStrategy", "GenerationConfig", "GeneratorConfig", "Target", "target_text"]


class Target(str, Enum):
    """Which report section the generator learns and is scored on. Results of different targets are not
    comparable, so the choice is explicit and recorded in every config and result."""

    FINDINGS = "findings"
    IMPRESSION = "impression"
    FINDINGS_IMPRESSION = "findings_impression"


def target_text(findings: str | None, impression: str | None, target: Target) -> str:
    """The text of ``target`` from a report's sections ("" when that section is missing)."""
    f, i = (findings or "").strip(), (impression or "").strip()
    parts = {Target.FINDINGS: [f], Target.IMPRESSION: [i], Target.FINDINGS_IMPRESSION: [f, i]}[Target(target)]
    return " ".join(p for p in parts if p)


class DecodeStrategy(str, Enum):
    """Decoding algorithm."""

    GREEDY = "greedy"
    BEAM = "beam"
    SAMPLE = "sample"


@dataclass(frozen=True)
class GenerationConfig:
    """How reports are decoded (passed to transformers' ``generate``).

    Attributes:
        strategy: greedy, beam search or sampling.
        max_new_tokens: length limit of a generated report, in tokens.
        num_beams: beams for ``beam``.
        temperature, top_p: sampling settings for ``sample``.
        repetition_penalty: > 1 discourages repeating tokens (1 = off).
        no_repeat_ngram_size: forbid repeating n-grams of this size (0 = off).
        use_cache: reuse past keys / values (KV cache) between decoding steps.
        seed: sampling seed.
    """

    strategy: DecodeStrategy = DecodeStrategy.BEAM
    max_new_tokens: int = 96
    num_beams: int = 3
    temperature: float = 1.0
    top_p: float = 0.9
    repetition_penalty: float = 1.2
    no_repeat_ngram_size: int = 3
    use_cache: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "strategy", DecodeStrategy(self.strategy))
        if self.max_new_tokens < 1 or self.num_beams < 1:
            raise ConfigError(f"GenerationConfig: max_new_tokens={self.max_new_tokens} and num_beams="
                              f"{self.num_beams} must be >= 1")
        if self.repetition_penalty <= 0 or self.temperature <= 0:
            raise ConfigError("GenerationConfig: repetition_penalty and temperature must be > 0")


@dataclass
class GeneratorConfig:
    """Architecture of a report generator: image encoder → projector → causal decoder.

    Attributes:
        image_encoder: rfm-models image encoder name (``resnet18``, ``vit_small``, ``test_vit``, ...).
        image_size: input resolution.
        image_options: extra arguments of the image encoder factory.
        encoder_weights: an exported rfm model directory (its image encoder is used at the resolution it was
            trained at, e.g. a CLIP model's: ``image_encoder`` and ``image_size`` then come from it) or a weights
            file for ``image_encoder``; None = from scratch.
        freeze_encoder: keep the image encoder fixed (its features are computed without gradients).
        projector: ``projectors`` registry name: ``linear``, ``mlp`` (per image token) or ``query``
            (learned query tokens cross-attending to the image tokens).
        num_query_tokens: prefix length of the ``query`` projector.
        decoder: ``decoders`` registry name: ``test_gpt2``, ``gpt2_tiny``, ``gpt2_small`` (built from a
            GPT-2 config) or ``local`` (a transformers causal-LM directory in ``decoder_path``).
        decoder_path: directory of a ``local`` decoder (e.g. written by ``pretrain_decoder``).
        tokenizer_path: directory with ``tokenizer.json``; defaults to ``decoder_path``.
        target: report section to learn.
        max_target_tokens: teacher-forcing length limit (longer targets are cut).
        decoder_config: the decoder's transformers config (filled in when the model is built; used to rebuild
            it from a saved directory).
    """

    image_encoder: str = "resnet18"
    image_size: int = 224
    image_options: dict[str, Any] = field(default_factory=dict)
    encoder_weights: str | None = None
    freeze_encoder: bool = False
    projector: str = "mlp"
    num_query_tokens: int = 16
    decoder: str = "gpt2_small"
    decoder_path: str | None = None
    tokenizer_path: str | None = None
    target: Target = Target.FINDINGS
    max_target_tokens: int = 128
    decoder_config: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        try:
            self.target = Target(self.target)
        except ValueError:
            raise ConfigError(f"GeneratorConfig.target={self.target!r}: use one of "
                              f"{[t.value for t in Target]}") from None
        if self.max_target_tokens < 4:
            raise ConfigError(f"GeneratorConfig.max_target_tokens={self.max_target_tokens}: must be >= 4")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields."""
        out = asdict(self)
        out["target"] = self.target.value
        return out
