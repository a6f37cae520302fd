"""Structured labels from report text: the 14 CheXpert observations plus lines and tubes (1 / 0 / -1 / absent).

Backends live in the registry ``labelers``: ``rule`` (default, phrase lists with negation and uncertainty),
``keyword`` (baseline), ``llm`` (an OpenAI-compatible endpoint, stdlib only) and ``learned`` (a
transformers sequence classifier from a local directory; needs ``rfm-data[learned]``).

Example:
    >>> from rfm_data.labels import create_labeler
    >>> create_labeler("rule").label_batch(["Mild cardiomegaly. No pleural effusion."])[0].labels
    {'Cardiomegaly': 1, 'Pleural Effusion': 0}
"""

from __future__ import annotations

from rfm_data.labels import keyword, learned, llm, rule  # noqa: F401  (imported to register the backends)
from rfm_data.labels.base import MAX_CHARS, Labeler, create_labeler, labelers, list_labelers
from rfm_data.labels.observations import (
    CHEXPERT,
    LINES_AND_TUBES,
    OBSERVATIONS,
    LabelResult,
    LabelStatus,
    SchemaError,
    validate_labels,
)

__all__ = [
    "CHEXPERT",
    "LINES_AND_TUBES",
    "MAX_CHARS",
    "OBSERVATIONS",
    "LabelResult",
    "LabelStatus",
    "Labeler",
    "SchemaError",
    "create_labeler",
    "labelers",
    "list_labelers",
    "validate_labels",
]
