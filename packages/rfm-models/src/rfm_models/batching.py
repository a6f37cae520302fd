"""From the loader's items to what :class:`~rfm_models.model.VisionLanguageModel` consumes.

The model needs, beside ``image``: ``input_ids`` / ``attention_mask`` (the tokenized text), ``labels``
``(B, C)`` float (1 positive, 0 negative, -1 uncertain = masked; observations a report does not mention
count as ``absent_label``, 0 by default as in CheXpert training) and ``label_ids`` ``(B,)`` for UniCL.

UniCL: with ``prompt_fraction`` > 0, that fraction of samples (drawn per sample id from ``seed``) has its
report replaced by a prompt naming its positive findings; samples with the same prompt share a label id
and are positives for each other, report samples keep id -1 (positive only with their own image).

Label-only images (an empty report, e.g. classification datasets) always get their label prompt, whatever
``prompt_fraction``: an empty text is the same for every such image, so it would teach the model nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from rfm_data.labels.observations import NO_FINDING
from rfm_data.loader import collate
from rfm_models.encoders.tokenizer import TextTokenizer

__all__ = ["Collator", "label_prompt", "label_tensor", "prepare_batch"]

_ID_BITS = 62  # non-negative int64 ids, far from the negative "own class" ids of UniCL


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "big") >> (64 - _ID_BITS)


def label_tensor(labels: Sequence[Mapping[str, int]], observations: Sequence[str], absent_label: int = 0) -> Tensor:
    """``(B, C)`` float labels in ``observations`` order; unmentioned observations get ``absent_label``."""
    rows = [[float(item.get(name, absent_label)) for name in observations] for item in labels]
    return torch.tensor(rows, dtype=torch.float32).reshape(len(labels), len(observations))


def label_prompt(labels: Mapping[str, int], observations: Sequence[str]) -> str | None:
    """A text prompt for a sample's positive findings, or None when it has no labels to speak of."""
    positives = [o for o in observations if labels.get(o) == 1 and o != NO_FINDING]
    if positives:
        return "chest x-ray with " + ", ".join(p.lower() for p in positives)
    if labels.get(NO_FINDING) == 1:
        return "chest x-ray with no finding"
    return None


def _uses_prompt(sample_id: str, seed: int, fraction: float) -> bool:
    return fraction > 0 and _hash(f"{seed}:{sample_id}") / 2**_ID_BITS < fraction


def prepare_batch(batch: Mapping[str, Any], tokenizer: TextTokenizer, observations: Sequence[str],
                  prompt_fraction: float = 0.0, seed: int = 0, absent_label: int = 0) -> dict[str, Any]:
    """Add ``input_ids``, ``attention_mask``, ``labels`` and ``label_ids`` to a collated loader batch."""
    out = dict(batch)
    reports = list(batch["report"])
    item_labels: list[Mapping[str, int]] = list(batch.get("labels") or [{} for _ in reports])
    ids = list(batch.get("sample_id") or [str(i) for i in range(len(reports))])
    texts, label_ids = [], []
    for report, labels, sample_id in zip(reports, item_labels, ids, strict=True):
        wants_prompt = not report.strip() or _uses_prompt(sample_id, seed, prompt_fraction)
        prompt = label_prompt(labels, observations) if wants_prompt else None
        texts.append(report if prompt is None else prompt)
        label_ids.append(-1 if prompt is None else _hash(prompt))
    out.update(tokenizer(texts))
    out["text"] = texts
    out["labels"] = label_tensor(item_labels, observations, absent_label)
    out["label_ids"] = torch.tensor(label_ids, dtype=torch.long)
    return out


class Collator:
    """``collate_fn`` for loaders: :func:`rfm_data.loader.collate` then :func:`prepare_batch` (picklable).

    Args:
        tokenizer: the model's tokenizer (``model.tokenizer``).
        observations: label names, in the model's order (``model.config.observations``).
        prompt_fraction: UniCL share of samples trained on label prompts instead of reports.
        seed: seed of the prompt draw.
        absent_label: value of observations a report does not mention (0, or -1 to mask them).
    """

    def __init__(self, tokenizer: TextTokenizer, observations: Sequence[str], prompt_fraction: float = 0.0,
                 seed: int = 0, absent_label: int = 0) -> None:
        self.tokenizer, self.observations = tokenizer, list(observations)
        self.prompt_fraction, self.seed, self.absent_label = prompt_fraction, seed, absent_label

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return prepare_batch(collate(items), self.tokenizer, self.observations, self.prompt_fraction,
                             self.seed, self.absent_label)
