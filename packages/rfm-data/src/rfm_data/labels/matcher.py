"""Compile phrase lists into one fast matcher that finds every phrase in a lower-cased sentence.

Phrase syntax (a small layer over regular expressions, written in lower case):
- a space between words matches whitespace or hyphens (``chest tube`` also finds ``chest-tube``);
- ``word*`` is a stem (``opacit*`` finds opacity, opacities, opacification);
- ``(a|b c)`` alternatives, ``(x )?`` optional words, ``word? `` an optional single word;
- ``{be}``, ``{deg}``, ``{w}``: copulas, degree adverbs, up to three free words (never a negation word);
- a phrase matches whole words only and must not start with something optional.

Speed: a chest X-ray report has a few dozen words, and a regular expression alternation of hundreds of
phrases tried at every position is slow in Python. Phrases are indexed by the first two characters of their
first word, so each word of the text tries only the few phrases that could start there; among those the
longest match wins (``no findings of`` over ``no findings``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum

_SEP = r"[\s\-]+"
_MACROS = {
    "{be} ": r"(?:(?:is|are|was|were|be|been|has|have|appears?|remains?|seems?|again|now|still|also|stably|"
    r"otherwise|overall)" + _SEP + r")*",
    "{deg} ": r"(?:(?:mild(?:ly)?|moderate(?:ly)?|marked(?:ly)?|severe(?:ly)?|slight(?:ly)?|minimal(?:ly)?|"
    r"massive(?:ly)?|significant(?:ly)?|stabl[ey]|again|still|now|somewhat|very|overall|grossly|borderline|"
    r"at|top|upper|the|in|size|)" + _SEP + r")*",
    "{w} ": r"(?:(?!(?:not|no|without|normal|but|however)\b)[a-z0-9'/]+" + _SEP + r"){0,3}",
}
_TOKEN = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


class Kind(str, Enum):
    """What a matched phrase means."""

    MENTION = "mention"  # an observation is mentioned
    NORMAL_OF = "normal_of"  # an observation is stated to be normal (label 0)
    NORMAL_STUDY = "normal_study"  # the study is stated to be normal
    OTHER = "other"  # an abnormality outside the labelled observations
    PRE_NEG = "pre_neg"
    POST_NEG = "post_neg"
    PRE_UNC = "pre_unc"
    POST_UNC = "post_unc"
    PSEUDO = "pseudo"  # looks like a negation but is not one ("no change in")
    TERM = "term"  # ends a trigger's scope


@dataclass(frozen=True)
class Hit:
    """One phrase found in a text: character span, word span, what it means and which observations."""

    start: int
    end: int
    word: int  # index of its first word in the sentence
    end_word: int  # index one past its last word
    kinds: frozenset[Kind]
    targets: tuple[str, ...]


def phrase_regex(phrase: str) -> str:
    """The regular expression of one phrase (see the module docstring for the syntax)."""
    out = phrase.strip() + " "
    for macro, regex in _MACROS.items():
        out = out.replace(macro, regex)
    out = re.sub(r"\b([a-z0-9]+)\? ", lambda m: f"(?:{m.group(1)}{_SEP})?", out)
    out = re.sub(r"([a-z])\*", r"\1[a-z]*", out)
    out = re.sub(r"\((?!\?)", "(?:", out)
    out = out.rstrip(" ").replace(" ", _SEP)
    return rf"(?:{out})(?![a-z0-9])"


def _first_keys(phrase: str) -> set[str]:
    text = phrase.strip()
    if text.startswith("\\"):
        return {text[1]}
    if text.startswith("("):
        close = text.index(")")
        if text[close + 1: close + 2] in ("?", "*"):
            raise ValueError(f"phrase {phrase!r} must not start with an optional part")
        alternatives = text[1:close].split("|")
    else:
        alternatives = [text]
    keys = set()
    for alt in alternatives:
        word = re.match(r"[a-z0-9]+|.", alt.strip())
        if word is None:
            raise ValueError(f"phrase {phrase!r} has an empty alternative")
        keys.add(word.group()[:2])
    return keys


@dataclass(frozen=True)
class _Group:
    any_of: re.Pattern[str]
    phrases: list[tuple[int, re.Pattern[str]]]


@dataclass
class _Entry:
    regex: str
    kinds: set[Kind]
    targets: list[str]


class PhraseMatcher:
    """All phrases of all kinds, compiled once; :meth:`find` lists the hits of a sentence, left to right."""

    def __init__(self, entries: Iterable[tuple[str, Kind, tuple[str, ...]]]) -> None:
        merged: dict[str, _Entry] = {}
        by_key: dict[str, list[str]] = defaultdict(list)
        for phrase, kind, targets in entries:
            entry = merged.setdefault(phrase, _Entry(phrase_regex(phrase), set(), []))
            entry.kinds.add(kind)
            entry.targets.extend(t for t in targets if t not in entry.targets)
            for key in _first_keys(phrase):
                if phrase not in by_key[key]:
                    by_key[key].append(phrase)
        self._phrases = list(merged)
        self._meta = [(frozenset(merged[p].kinds), tuple(merged[p].targets)) for p in self._phrases]
        index = {p: i for i, p in enumerate(self._phrases)}
        self._by_key = {key: self._compile(phrases, index, merged) for key, phrases in by_key.items()}

    @staticmethod
    def _compile(phrases: list[str], index: dict[str, int], merged: dict[str, _Entry]) -> _Group:
        ordered = sorted(phrases, key=lambda p: (-len(p), p))
        any_of = re.compile("|".join(merged[p].regex for p in ordered))
        return _Group(any_of, [(index[p], re.compile(merged[p].regex)) for p in ordered])

    @staticmethod
    def _longest(group: _Group, sentence: str, pos: int) -> tuple[int, int] | None:
        # The one alternation rejects most words at once; only where something matches are the phrases
        # tried one by one, and the longest match wins ("no findings of" over "no findings", "pleural
        # effusion" over "pleural"), whatever the order of the lists.
        if group.any_of.match(sentence, pos) is None:
            return None
        best: tuple[int, int] | None = None
        for phrase_index, regex in group.phrases:
            match = regex.match(sentence, pos)
            if match is not None and (best is None or match.end() > best[1]):
                best = (phrase_index, match.end())
        return best

    def find(self, sentence: str) -> Iterator[Hit]:
        """Hits in a lower-cased sentence; matches do not overlap, the earliest-starting one wins."""
        words = [m.start() for m in _TOKEN.finditer(sentence)]
        taken_until = 0
        for i, pos in enumerate(words):
            if pos < taken_until:
                continue
            group = self._by_key.get(sentence[pos: pos + 2]) or self._by_key.get(sentence[pos])
            found = self._longest(group, sentence, pos) if group is not None else None
            if found is None:
                continue
            phrase_index, end = found
            kinds, targets = self._meta[phrase_index]
            end_word = i + 1
            while end_word < len(words) and words[end_word] < end:
                end_word += 1
            taken_until = end
            yield Hit(pos, end, i, end_word, kinds, targets)
