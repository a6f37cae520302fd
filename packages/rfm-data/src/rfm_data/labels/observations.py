"""The label schema: observations, label values and the result of labelling one report.

Values follow the CheXpert convention: ``1`` positive, ``0`` negative, ``-1`` uncertain, and an observation
that the report does not mention is *absent* from the labels dict (never stored as ``0``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

POSITIVE, NEGATIVE, UNCERTAIN = 1, 0, -1
VALUES = frozenset({POSITIVE, NEGATIVE, UNCERTAIN})

NO_FINDING = "No Finding"
SUPPORT_DEVICES = "Support Devices"

#: The 14 CheXpert observations, in CheXpert's order.
CHEXPERT = (
    NO_FINDING, "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
    "Fracture", SUPPORT_DEVICES,
)
#: Lines, tubes and hardware, each a kind of Support Devices.
LINES_AND_TUBES = (
    "Endotracheal Tube", "Nasogastric Tube", "Central Venous Catheter", "PICC", "Pulmonary Artery Catheter",
    "Chest Tube", "Pacemaker/ICD Leads", "Sternotomy Wires",
)
OBSERVATIONS = CHEXPERT + LINES_AND_TUBES
#: Observations whose positive or uncertain mention means the study is not "No Finding" (CheXpert: all
#: pathologies; devices do not count).
PATHOLOGIES = tuple(o for o in CHEXPERT if o not in (NO_FINDING, SUPPORT_DEVICES))


class LabelStatus(str, Enum):
    """Why a report's labels look the way they do; written beside them so empty labels are explained."""

    OK = "ok"
    EMPTY = "empty"  # no findings / impression text: nothing to label
    TRUNCATED = "truncated"  # the text was longer than the backend's limit; only its beginning was labelled
    INVALID_TEXT = "invalid_text"  # bytes that are not UTF-8 text (or NUL bytes): not labelled
    BACKEND_ERROR = "backend_error"  # the backend failed for this report (e.g. LLM replies never valid)


@dataclass(frozen=True)
class LabelResult:
    """Labels of one report.

    Attributes:
        labels: observation name → 1 / 0 / -1; observations not mentioned are absent.
        status: what happened (``ok`` unless the input or the backend was bad).
        detail: a short explanation for a non-``ok`` status (never report text).
    """

    labels: Mapping[str, int] = field(default_factory=dict)
    status: LabelStatus = LabelStatus.OK
    detail: str = ""


class SchemaError(ValueError):
    """Labels that do not fit the schema (unknown observation, value not in 1 / 0 / -1)."""


def validate_labels(labels: object) -> dict[str, int]:
    """Check a labels mapping against the schema and return it as a plain dict.

    Accepts ``None`` values as *not mentioned* (dropped) and integral floats / bools are refused, so a
    model that answers ``true`` or ``0.7`` is caught rather than silently coerced.

    Raises:
        SchemaError: not a mapping, an unknown observation name, or a value outside 1 / 0 / -1.
    """
    if not isinstance(labels, Mapping):
        raise SchemaError(f"labels must be an object, not {type(labels).__name__}")
    out: dict[str, int] = {}
    for name, value in labels.items():
        if name not in OBSERVATIONS:
            raise SchemaError(f"unknown observation {str(name)[:80]!r}")
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value not in VALUES:
            raise SchemaError(f"{name}: value must be 1, 0, -1 or null, not {str(value)[:20]!r}")
        out[name] = value
    return {name: out[name] for name in OBSERVATIONS if name in out}
