"""The baseline: plain keyword matching with a simple "no ..." negation, kept to measure the rule backend by.

The same mention phrases as the rule backend; a mention is negative when the word "no" comes before it in
its sentence, positive otherwise; no uncertainty, no scopes, no pseudo-negations; No Finding when no
pathology is positive (the CheXpert rule). The evaluation reports it beside the rule backend.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence

from rfm_data.labels import phrases
from rfm_data.labels.base import MAX_CHARS, label_each, labelers
from rfm_data.labels.matcher import Kind, PhraseMatcher
from rfm_data.labels.observations import NEGATIVE, NO_FINDING, OBSERVATIONS, PATHOLOGIES, POSITIVE, LabelResult
from rfm_data.labels.rule import split_sentences

_NO = re.compile(r"\bno\b")


class KeywordLabeler:
    """Keyword matcher with "no ..." negation (the baseline)."""

    name = "keyword"

    def __init__(self, max_chars: int = MAX_CHARS) -> None:
        self.max_chars = max_chars
        entries = ((item.split("+")[0], Kind.MENTION, tuple(item.split("+")[1:]) or (observation,))
                   for observation, items in phrases.MENTIONS.items() for item in items)
        self._matcher = PhraseMatcher(entries)

    def fingerprint(self) -> str:
        return f"keyword/v1/max{self.max_chars}"

    def label_text(self, text: str) -> dict[str, int]:
        """Labels of one report text."""
        values: dict[str, list[int]] = defaultdict(list)
        for sentence in split_sentences(text):
            for hit in self._matcher.find(sentence):
                value = NEGATIVE if _NO.search(sentence, 0, hit.start) else POSITIVE
                for target in hit.targets:
                    values[target].append(value)
        labels = {name: max(vals) for name, vals in values.items()}
        if not any(labels.get(p) == POSITIVE for p in PATHOLOGIES):
            labels[NO_FINDING] = POSITIVE
        return {name: labels[name] for name in OBSERVATIONS if name in labels}

    def label_batch(self, texts: Sequence[str | bytes | None]) -> list[LabelResult]:
        """Label each text (bad input as in the rule backend)."""
        return label_each(self.label_text, texts, self.max_chars)


@labelers.register("keyword")
def keyword_labeler(max_chars: int = MAX_CHARS) -> KeywordLabeler:
    """Baseline: keyword mentions, negated by a preceding "no" in the sentence."""
    return KeywordLabeler(max_chars=max_chars)
