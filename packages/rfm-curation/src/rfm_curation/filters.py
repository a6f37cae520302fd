"""Quality filters, one registry entry each: image statistics, report statistics and views.

Filters read manifest columns only: ingest already measured every image (``quality_flags``,
``intensity_*``, sizes), so no filter decodes pixels again. Each filter answers "drop this row?" and carries
the reason code that the selection table and the curated manifest record.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from rfm_curation.errors import ConfigError, CurationReason, create_from
from rfm_data.registry import Registry

BoolArray = npt.NDArray[np.bool_]


class QualityFilter(Protocol):
    """Something that marks manifest rows to drop, with one reason code."""

    @property
    def reason(self) -> CurationReason:
        """The reason code written for the rows it removes (read-only: implementations are frozen)."""
        ...

    def drops(self, manifest: pa.Table) -> BoolArray:
        """True for each manifest row this filter drops."""
        ...


FILTERS: Registry[QualityFilter] = Registry("quality filter")


def create_filter(name: str, **options: object) -> QualityFilter:
    """The filter registered as ``name`` with keyword ``options`` (e.g. ``create_filter("view", allowed=["PA"])``)."""
    return create_from(FILTERS, "filters", name, **options)


def list_filters(pattern: str = "*") -> list[str]:
    """Registered filter names matching a glob."""
    names: list[str] = FILTERS.names(pattern)
    return names


@dataclass(frozen=True)
class FlagFilter:
    """Drops rows whose ingest ``quality_flags`` contain ``flag``."""

    reason: CurationReason

    def drops(self, manifest: pa.Table) -> BoolArray:
        flags = manifest["quality_flags"].to_pylist()
        return np.array([self.reason.value in (cell or ()) for cell in flags], dtype=bool)


def _register_flag(reason: CurationReason) -> None:
    FILTERS.register(reason.value)(lambda: FlagFilter(reason))


for _reason in (CurationReason.BLANK, CurationReason.SATURATED, CurationReason.LOW_CONTRAST,
                CurationReason.EXTREME_ASPECT, CurationReason.TINY):
    _register_flag(_reason)


def _texts(manifest: pa.Table) -> list[str]:
    return [t or "" for t in manifest["report_text"].to_pylist()]


@dataclass(frozen=True)
class EmptyReport:
    """Drops rows whose report text is empty or whitespace."""

    reason: CurationReason = CurationReason.EMPTY_REPORT

    def drops(self, manifest: pa.Table) -> BoolArray:
        return np.array([not t.strip() for t in _texts(manifest)], dtype=bool)


@dataclass(frozen=True)
class ShortReport:
    """Drops rows whose report has fewer than ``min_words`` words (an empty report counts as 0 words)."""

    min_words: int = 5
    reason: CurationReason = CurationReason.SHORT_REPORT

    def drops(self, manifest: pa.Table) -> BoolArray:
        return np.array([len(t.split()) < self.min_words for t in _texts(manifest)], dtype=bool)


_NOT_WORD = re.compile(r"[^a-z]+")


def _template_key(text: str) -> str:
    # Case, punctuation, numbers and spacing vary between copies of one template ("Exam 1 of 2:", dates).
    return _NOT_WORD.sub(" ", text.lower()).strip()


@dataclass(frozen=True)
class TemplatedReport:
    """Caps identical (templated) reports: at most ``max_copies`` rows per normalised text are kept.

    The copies kept are those with the smallest ``sample_id`` (deterministic); empty reports are left to
    ``empty_report``.
    """

    max_copies: int = 20
    reason: CurationReason = CurationReason.TEMPLATED_REPORT

    def drops(self, manifest: pa.Table) -> BoolArray:
        if self.max_copies < 1:
            raise ConfigError(f"filters.templated_report.max_copies={self.max_copies} must be >= 1")
        keys = [_template_key(t) for t in _texts(manifest)]
        ids = manifest["sample_id"].to_pylist()
        seen: dict[str, int] = {}
        out = np.zeros(len(keys), dtype=bool)
        for i in sorted(range(len(keys)), key=ids.__getitem__):
            if keys[i]:
                seen[keys[i]] = seen.get(keys[i], 0) + 1
                out[i] = seen[keys[i]] > self.max_copies
        return out


@dataclass(frozen=True)
class ViewFilter:
    """Keeps only the ``allowed`` view positions (case-insensitive); unknown views kept when ``keep_unknown``."""

    allowed: Sequence[str] = ("PA", "AP")
    keep_unknown: bool = True
    reason: CurationReason = CurationReason.VIEW_EXCLUDED

    def drops(self, manifest: pa.Table) -> BoolArray:
        if not self.allowed:
            raise ConfigError("filters.view.allowed is empty: name at least one view (e.g. PA, AP)")
        allowed = {v.upper() for v in self.allowed}
        views = [(v or "").upper() for v in manifest["view"].to_pylist()]
        return np.array([not (v in allowed or (not v and self.keep_unknown)) for v in views], dtype=bool)


FILTERS.register("empty_report")(EmptyReport)
FILTERS.register("short_report")(ShortReport)
FILTERS.register("templated_report")(TemplatedReport)
FILTERS.register("view")(ViewFilter)
