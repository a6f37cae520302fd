"""The labeler interface, the backend registry, and input checks shared by every backend."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from rfm_data.labels.observations import LabelResult, LabelStatus
from rfm_data.registry import Registry

#: Reports longer than this many characters are labelled on their first ``MAX_CHARS`` characters (status
#: ``truncated``). A chest X-ray report is a few hundred to a few thousand characters; 100 kB of "report"
#: is a pasted document or a broken export, and labelling all of it would only add noise and time.
MAX_CHARS = 20_000


@runtime_checkable
class Labeler(Protocol):
    """A report labeler: texts in, one :class:`LabelResult` per text out, same order, never raising for bad text."""

    name: str

    def fingerprint(self) -> str:
        """A string that changes whenever the labels it would produce may change (backend, version, config)."""
        ...

    def label_batch(self, texts: Sequence[str | bytes | None]) -> list[LabelResult]:
        """Label each text; bad input gives a result with a non-``ok`` status, never an exception."""
        ...


labelers: Registry[Labeler] = Registry("labeler")


def create_labeler(name: str, **overrides: object) -> Labeler:
    """Build the registered labeler ``name`` (``rule``, ``keyword``, ``llm``, ``learned``) with ``overrides``."""
    return labelers.create(name, **overrides)


def list_labelers(pattern: str = "*") -> list[str]:
    """Names of the registered labelers matching the glob ``pattern``."""
    return labelers.names(pattern)


def check_text(text: str | bytes | None, max_chars: int = MAX_CHARS) -> tuple[str, LabelResult | None]:
    """Normalise one input for labelling.

    Returns:
        ``(text, None)`` when it should be labelled (cut to ``max_chars``), or ``("", result)`` with the
        final result for input that cannot be: ``empty`` for ``None`` / blank, ``invalid_text`` for bytes
        that are not UTF-8, NUL bytes, lone surrogates (undecodable bytes read with ``surrogateescape``) or
        a value that is not text at all.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError:
            return "", LabelResult({}, LabelStatus.INVALID_TEXT, "the report bytes are not UTF-8")
    if text is None or (isinstance(text, str) and not text.strip()):
        return "", LabelResult({}, LabelStatus.EMPTY, "no report text")
    if not isinstance(text, str):
        return "", LabelResult({}, LabelStatus.INVALID_TEXT, f"a report must be text, not {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "", LabelResult({}, LabelStatus.INVALID_TEXT, "the report holds undecodable bytes")
    if "\x00" in text:
        return "", LabelResult({}, LabelStatus.INVALID_TEXT, "the report holds NUL bytes")
    return text[:max_chars], None


def truncated(result: LabelResult, text: str | bytes | None, max_chars: int = MAX_CHARS) -> LabelResult:
    """``result`` marked ``truncated`` when ``text`` was longer than ``max_chars`` (and labelled anyway)."""
    if isinstance(text, str) and len(text) > max_chars and result.status is LabelStatus.OK:
        return LabelResult(result.labels, LabelStatus.TRUNCATED, f"only the first {max_chars} characters labelled")
    return result


def text_hash(text: str) -> str:
    """sha256 of the UTF-8 text: the cache key of a report."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def label_each(
    label_text: Callable[[str], dict[str, int]], texts: Sequence[str | bytes | None], max_chars: int = MAX_CHARS
) -> list[LabelResult]:
    """Label texts one at a time with ``label_text``; bad input gets its defined status, never an exception."""
    out = []
    for raw in texts:
        text, bad = check_text(raw, max_chars)
        out.append(bad if bad is not None else truncated(LabelResult(label_text(text)), raw, max_chars))
    return out
