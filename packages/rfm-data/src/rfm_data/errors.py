"""Why an input was quarantined: a closed set of reason codes, and the exception that carries one.

Every reader, adapter and writer reports bad input by raising :class:`QuarantineError`; ingestion
catches it, records ``status="quarantined"`` with the reason in the manifest, and carries on. Details
must never contain header values (they may be PHI): say what is wrong, not what the value was.
"""

from __future__ import annotations

from enum import Enum


class Reason(str, Enum):
    """Machine-readable reason codes written to the manifest's ``reason`` column."""

    UNREADABLE_URL = "unreadable_url"
    EMPTY_FILE = "empty_file"
    UNSUPPORTED_FORMAT = "unsupported_format"
    NOT_DICOM = "not_dicom"
    TRUNCATED = "truncated"
    MISSING_PIXEL_DATA = "missing_pixel_data"
    CODEC_MISSING = "codec_missing"
    UNSUPPORTED_SYNTAX = "unsupported_syntax"
    BAD_DIMENSIONS = "bad_dimensions"
    DECODE_ERROR = "decode_error"
    CORRUPT_IMAGE = "corrupt_image"
    BURNED_IN_ANNOTATION = "burned_in_annotation"
    NOT_2D = "not_2d"
    MIXED_SERIES = "mixed_series"  # slices of a DICOM series disagree on series UID or orientation
    MISSING_GEOMETRY = "missing_geometry"  # a slice lacks ImagePositionPatient / ImageOrientationPatient
    INCONSISTENT_SLICES = "inconsistent_slices"  # slice sizes/spacings differ, duplicate or uneven positions
    EMPTY_REPORT = "empty_report"
    MISSING_REPORT = "missing_report"
    NON_UTF8_REPORT = "non_utf8_report"
    DUPLICATE_ID = "duplicate_id"
    INVALID_RECORD = "invalid_record"


class QuarantineError(Exception):
    """Raised for an input that cannot be used; ingestion quarantines it with ``reason``."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


class ConfigError(ValueError):
    """A user configuration error; the message names the field and the fix."""
