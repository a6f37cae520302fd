"""Text tokenization with the ``tokenizers`` library: load a local ``tokenizer.json`` or train one on reports."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from torch import Tensor

from rfm_data import io
from rfm_data.errors import ConfigError

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

__all__ = ["TOKENIZER_CONFIG", "TOKENIZER_FILE", "TextTokenizer", "train_tokenizer"]


class TextTokenizer:
    """Batches texts into ``input_ids`` / ``attention_mask`` (padded to the longest, cut at ``max_length``).

    Args:
        tokenizer: a ``tokenizers.Tokenizer``.
        max_length: longest sequence in tokens, special tokens included.
        pad_token: the padding token (must be in the vocabulary).
    """

    def __init__(self, tokenizer: Tokenizer, max_length: int = 128, pad_token: str = "[PAD]") -> None:
        pad_id = tokenizer.token_to_id(pad_token)
        if pad_id is None:
            raise ConfigError(f"tokenizer has no pad token {pad_token!r}")
        self.tokenizer, self.max_length, self.pad_token = tokenizer, max_length, pad_token
        # Settings stored in a downloaded tokenizer.json (fixed-length padding, other limits) are replaced so
        # every source batches the same way.
        tokenizer.enable_truncation(max_length)
        tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token)

    @property
    def vocab_size(self) -> int:
        """Number of tokens in the vocabulary, special tokens included."""
        return int(self.tokenizer.get_vocab_size(with_added_tokens=True))

    def __call__(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """``{"input_ids", "attention_mask"}``, int64 ``(B, L)``."""
        encodings = self.tokenizer.encode_batch([t or "" for t in texts])
        return {"input_ids": torch.tensor([e.ids for e in encodings], dtype=torch.long),
                "attention_mask": torch.tensor([e.attention_mask for e in encodings], dtype=torch.long)}

    def save(self, directory: str) -> None:
        """Write ``tokenizer.json`` and ``tokenizer_config.json`` into ``directory``."""
        io.write_text(io.join(directory, TOKENIZER_FILE), self.tokenizer.to_str())
        config = {"max_length": self.max_length, "pad_token": self.pad_token}
        io.write_text(io.join(directory, TOKENIZER_CONFIG), json.dumps(config, indent=2))

    @classmethod
    def load(cls, directory: str, max_length: int | None = None) -> TextTokenizer:
        """Read ``tokenizer.json`` (and our ``tokenizer_config.json`` when present) from ``directory``."""
        path = io.join(directory, TOKENIZER_FILE)
        if not io.exists(path):
            raise ConfigError(f"no {TOKENIZER_FILE} in {directory}")
        tokenizer = Tokenizer.from_str(io.read_text(path))
        config_url = io.join(directory, TOKENIZER_CONFIG)
        config = json.loads(io.read_text(config_url)) if io.exists(config_url) else {}
        # HF tokenizer_config.json files store the limit as model_max_length (often a huge sentinel).
        stored = config.get("max_length") or min(int(config.get("model_max_length", 512)), 512)
        return cls(tokenizer, max_length or int(stored), str(config.get("pad_token", "[PAD]")))


def train_tokenizer(texts: Iterable[str], vocab_size: int = 8000, max_length: int = 128,
                    lowercase: bool = True) -> TextTokenizer:
    """Train a BERT-style WordPiece tokenizer on report ``texts``.

    The ``tokenizers`` trainer breaks ties between equally frequent merges in hash order, so two trainings on
    the same input can differ by a token: train once and save it (:meth:`TextTokenizer.save`).

    Args:
        texts: training corpus, e.g. the ``report`` of every training sample.
        vocab_size: target vocabulary size.
        max_length: longest sequence produced when batching.
        lowercase: lowercase and strip accents first (reports rarely need case).
    """
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                        show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls_id),
                                                                                   ("[SEP]", sep_id)])
    return TextTokenizer(tokenizer, max_length=max_length)


def fixed_vocab_tokenizer(texts: Iterable[str], max_length: int = 128) -> TextTokenizer:
    """A WordPiece tokenizer whose vocabulary is built, not trained: the special tokens, every character and
    its ``##`` continuation, then every whole word of ``texts``, each sorted. Identical on every call (test
    models are rebuilt on resume and must match their checkpoints), and any text still tokenizes."""
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    words: set[str] = set()
    for text in texts:
        words.update(w for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for w in words for c in w} | set("abcdefghijklmnopqrstuvwxyz0123456789.,;:-()/%"))
    tokens = [*SPECIAL_TOKENS, *chars, *(f"##{c}" for c in chars), *sorted(words - set(chars))]
    tokenizer = Tokenizer(models.WordPiece({t: i for i, t in enumerate(dict.fromkeys(tokens))}, unk_token="[UNK]"))
    tokenizer.normalizer, tokenizer.pre_tokenizer, tokenizer.decoder = normalizer, pre, decoders.WordPiece()
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls_id),
                                                                                   ("[SEP]", sep_id)])
    return TextTokenizer(tokenizer, max_length=max_length)
