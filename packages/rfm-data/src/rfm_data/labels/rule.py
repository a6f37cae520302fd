"""The rule backend: phrase mentions, negation and uncertainty with scope, CheXpert-style aggregation.

Per sentence, every phrase hit is found (:mod:`~rfm_data.labels.matcher`). A mention is negative or
uncertain when the nearest trigger in scope says so:
- a pre-trigger (``no``, ``without``, ``possible``) acts on mentions up to ``pre_window`` words after it;
  a post-trigger (``is not seen``, ``cannot be excluded``) on mentions up to ``post_window`` words before
  it, not across a comma ("cardiomegaly, effusion has resolved" keeps the cardiomegaly);
- a terminator (``but``, ``however``, ``which``, ``there is``) or a sentence end closes every scope;
- "no change in ..." and friends are pseudo-negations: consumed, they negate nothing.
Per report: positive if any mention is positive, else uncertain if any is, else negative (the CheXpert
aggregation); a positive line / tube makes Support Devices positive; No Finding is positive when no
pathology and no other abnormality is positive or uncertain and the report says something (a normal
statement or a negated finding), so an empty or foreign-language text never comes out "normal".
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from rfm_data.labels import phrases
from rfm_data.labels.base import MAX_CHARS, label_each, labelers
from rfm_data.labels.matcher import Hit, Kind, PhraseMatcher
from rfm_data.labels.observations import (
    NEGATIVE,
    NO_FINDING,
    OBSERVATIONS,
    PATHOLOGIES,
    POSITIVE,
    SUPPORT_DEVICES,
    UNCERTAIN,
    LabelResult,
)

RULE_VERSION = "1"
# Sentence ends: . ; ! followed by space, a full stop glued to the next sentence ("apex.There"), a
# numbered list item ("1. ... 2. ..."), a line break.
_SENTENCE_END = re.compile(r"(?<=[.;!])\s+|\.(?=[A-Z])|\s+(?=\d+\.\s)|\n+")
_PRE = {Kind.PRE_NEG: NEGATIVE, Kind.PRE_UNC: UNCERTAIN}
_POST = {Kind.POST_NEG: NEGATIVE, Kind.POST_UNC: UNCERTAIN}
_STOP_BACKWARD = frozenset({Kind.TERM})


def split_sentences(text: str) -> list[str]:
    """Sentences of a report, lower-cased (split before lower-casing: a capital marks a glued sentence)."""
    return [s.strip().lower() for s in _SENTENCE_END.split(text) if s and s.strip()]


def _entries() -> Iterable[tuple[str, Kind, tuple[str, ...]]]:
    for observation, items in phrases.MENTIONS.items():
        for item in items:
            phrase, *more = item.split("+")
            yield phrase, Kind.MENTION, tuple(more) or (observation,)
    for observation, items in phrases.NORMAL_OF.items():
        yield from ((p, Kind.NORMAL_OF, (observation,)) for p in items)
    lists = [(phrases.NORMAL_STUDY, Kind.NORMAL_STUDY), (phrases.OTHER_ABNORMAL, Kind.OTHER),
             (phrases.PRE_NEGATION, Kind.PRE_NEG), (phrases.POST_NEGATION, Kind.POST_NEG),
             (phrases.PRE_UNCERTAINTY, Kind.PRE_UNC), (phrases.POST_UNCERTAINTY, Kind.POST_UNC),
             (phrases.PSEUDO_NEGATION, Kind.PSEUDO), (phrases.NEUTRAL, Kind.PSEUDO), (phrases.TERMINATORS, Kind.TERM)]
    for items, kind in lists:
        yield from ((p, kind, ()) for p in items)


# The fingerprint (which keys label caches) covers the phrase lists themselves: editing a list invalidates
# cached labels without anyone having to remember to bump RULE_VERSION.
PHRASES_HASH = hashlib.sha256(repr(sorted(_entries())).encode()).hexdigest()[:12]


@dataclass
class _Evidence:
    values: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    other_abnormal: bool = False
    normal_study: bool = False


def _backward(hits: Sequence[Hit], i: int, window: int) -> tuple[int, int] | None:
    for j in range(i - 1, -1, -1):
        hit = hits[j]
        if hit.kinds & _STOP_BACKWARD:
            return None
        kind = next((k for k in _PRE if k in hit.kinds), None)
        if kind is not None:
            distance = hits[i].word - hit.end_word
            return (distance, _PRE[kind]) if distance <= window else None
    return None


def _forward(hits: Sequence[Hit], i: int, sentence: str, window: int) -> tuple[int, int] | None:
    for j in range(i + 1, len(hits)):
        hit = hits[j]
        if Kind.TERM in hit.kinds:
            return None
        kind = next((k for k in _POST if k in hit.kinds), None)
        if kind is not None:
            distance = hit.word - hits[i].end_word
            if distance > window or "," in sentence[hits[i].end: hit.start]:
                return None
            return distance, _POST[kind]
    return None


def _capped(target: str, value: int) -> tuple[str, int]:
    # A target written "Name?" is at most uncertain: the phrase implies the observation only possibly
    # ("enlarged cardiomediastinal silhouette": the heart surely, the mediastinum perhaps).
    if target.endswith("?"):
        return target[:-1], UNCERTAIN if value == POSITIVE else value
    return target, value


class RuleLabeler:
    """Rule-based report labeler (phrase lists in :mod:`rfm_data.labels.phrases`); deterministic and fast."""

    name = "rule"

    def __init__(self, pre_window: int = 12, post_window: int = 6, max_chars: int = MAX_CHARS) -> None:
        self.pre_window = pre_window
        self.post_window = post_window
        self.max_chars = max_chars
        self._matcher = PhraseMatcher(_entries())

    def fingerprint(self) -> str:
        return (f"rule/v{RULE_VERSION}/phrases-{PHRASES_HASH}/pre{self.pre_window}/post{self.post_window}"
                f"/max{self.max_chars}")

    def _value(self, hits: Sequence[Hit], i: int, sentence: str) -> int:
        before = _backward(hits, i, self.pre_window)
        after = _forward(hits, i, sentence, self.post_window)
        found = [c for c in (before, after) if c is not None]
        return min(found, key=lambda c: c[0])[1] if found else POSITIVE

    def _sentence(self, sentence: str, evidence: _Evidence) -> None:
        hits = list(self._matcher.find(sentence))
        for i, hit in enumerate(hits):
            if Kind.MENTION in hit.kinds:
                value = self._value(hits, i, sentence)
                for target in hit.targets:
                    name, capped = _capped(target, value)
                    evidence.values[name].append(capped)
            elif Kind.NORMAL_OF in hit.kinds:
                for target in hit.targets:
                    evidence.values[target].append(NEGATIVE)
            elif Kind.OTHER in hit.kinds:
                evidence.other_abnormal |= self._value(hits, i, sentence) != NEGATIVE
            elif Kind.NORMAL_STUDY in hit.kinds:
                evidence.normal_study = True

    def label_text(self, text: str) -> dict[str, int]:
        """Labels of one report text (findings and impression); see the module docstring for the rules."""
        evidence = _Evidence()
        for sentence in split_sentences(text):
            self._sentence(sentence, evidence)
        return aggregate(evidence.values, evidence.other_abnormal, evidence.normal_study)

    def label_batch(self, texts: Sequence[str | bytes | None]) -> list[LabelResult]:
        """Label each text; empty, non-UTF-8 and over-long input get a defined status (never an exception)."""
        return label_each(self.label_text, texts, self.max_chars)


def _combine(values: Sequence[int]) -> int:
    # CheXpert aggregation: one positive mention wins, then uncertainty, then negation.
    if POSITIVE in values:
        return POSITIVE
    return UNCERTAIN if UNCERTAIN in values else NEGATIVE


def aggregate(values: dict[str, list[int]], other_abnormal: bool = False, normal_study: bool = False) -> dict[str, int]:
    """Mention values per observation → report labels, with the device hierarchy and the No Finding rule."""
    labels = {name: _combine(vals) for name, vals in values.items() if vals}
    children = [labels[c] for c in phrases.DEVICE_CHILDREN if labels.get(c) in (POSITIVE, UNCERTAIN)]
    if children and labels.get(SUPPORT_DEVICES) != POSITIVE:
        labels[SUPPORT_DEVICES] = _combine(children)
    abnormal = other_abnormal or any(labels.get(p) in (POSITIVE, UNCERTAIN) for p in PATHOLOGIES)
    if not abnormal and (normal_study or labels):
        labels[NO_FINDING] = POSITIVE
    return {name: labels[name] for name in OBSERVATIONS if name in labels}


@labelers.register("rule")
def rule_labeler(pre_window: int = 12, post_window: int = 6, max_chars: int = MAX_CHARS) -> RuleLabeler:
    """The rule backend (default): phrase lists, negation / uncertainty scopes, CheXpert aggregation."""
    return RuleLabeler(pre_window=pre_window, post_window=post_window, max_chars=max_chars)
