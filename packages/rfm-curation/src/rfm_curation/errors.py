"""Why a sample was not kept: the reason codes written into the selection table and the curated manifest.

Every dropped sample gets exactly one reason, the first stage that dropped it (quarantine, deduplication,
quality filters, strategy), so counts per reason add up to the number of dropped samples.
"""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

from rfm_data.errors import ConfigError
from rfm_data.registry import Registry

__all__ = ["ConfigError", "CurationReason", "create_from"]

T = TypeVar("T")


def create_from(registry: Registry[T], field: str, name: str, **options: object) -> T:
    """``registry.create(name, **options)``; unknown names and bad options become ConfigError naming ``field``."""
    try:
        return registry.create(name, **options)
    except KeyError as err:
        raise ConfigError(f"{field}: {err.args[0]}") from err
    except TypeError as err:
        raise ConfigError(f"{field}.{name}: bad option ({err})") from err


class CurationReason(str, Enum):
    """Machine-readable reason codes; ``KEPT`` (empty) for selected samples."""

    KEPT = ""
    QUARANTINED = "quarantined"  # not accepted at ingest: never a candidate
    NO_EMBEDDING = "no_embedding"  # accepted, but the embedding store has no row for it
    OTHER_SPLIT = "other_split"  # accepted, but not in the split being curated (e.g. val / test)
    EXACT_DUPLICATE = "exact_duplicate"
    PERCEPTUAL_DUPLICATE = "perceptual_duplicate"
    SEMANTIC_DUPLICATE = "semantic_duplicate"
    BLANK = "blank"
    SATURATED = "saturated"
    LOW_CONTRAST = "low_contrast"
    EXTREME_ASPECT = "extreme_aspect"
    TINY = "tiny"
    EMPTY_REPORT = "empty_report"
    SHORT_REPORT = "short_report"
    TEMPLATED_REPORT = "templated_report"
    VIEW_EXCLUDED = "view_excluded"
    OUTLIER = "outlier"  # beyond mu + 3 sigma of its prototype (CheXficient bands)
    NOT_SELECTED = "not_selected"  # a candidate the strategy left out to meet the budget
