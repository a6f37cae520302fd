"""The manifest: one Parquet table per dataset, a row per input image, accepted or quarantined.

Schema version 1 (documented in docs/data.md). The version is stored in the Parquet key-value metadata
under ``rfm.manifest.schema_version``; readers refuse a newer major version with a clear message.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from rfm_data import io
from rfm_data.errors import ConfigError

SCHEMA_VERSION = "1.0"
VERSION_KEY = b"rfm.manifest.schema_version"
LABELS_TYPE = pa.map_(pa.string(), pa.int8())

MANIFEST_FIELDS: list[tuple[str, pa.DataType, str]] = [
    ("sample_id", pa.string(), "unique id of the image within the dataset"),
    ("dataset", pa.string(), "adapter / dataset name"),
    ("source_uri", pa.string(), "URL of the source file (or series directory)"),
    ("format", pa.string(), "reader used: dicom, png, jpeg, nifti, dicom_series"),
    ("content_hash", pa.string(), "sha256 of the source bytes (exact-duplicate detection)"),
    ("status", pa.string(), "accepted | quarantined"),
    ("reason", pa.string(), "quarantine reason code (rfm_data.errors.Reason); empty when accepted"),
    ("reason_detail", pa.string(), "human-readable detail of the reason (never contains PHI)"),
    ("patient_id", pa.string(), "keyed pseudonym of the patient id"),
    ("study_id", pa.string(), "keyed pseudonym of the study id"),
    ("series_id", pa.string(), "keyed pseudonym of the series id"),
    ("modality", pa.string(), "DICOM Modality (CR, DX, CT, MR, ...) or empty"),
    ("view", pa.string(), "view position: PA, AP, LATERAL, LL, ... or empty"),
    ("body_part", pa.string(), "BodyPartExamined or empty"),
    ("photometric", pa.string(), "photometric interpretation of the source"),
    ("bits_stored", pa.int16(), "bits stored per pixel in the source"),
    ("frames", pa.int32(), "number of frames in the source"),
    ("orig_height", pa.int32(), "source rows"),
    ("orig_width", pa.int32(), "source columns"),
    ("pixel_spacing_row", pa.float32(), "source pixel spacing between rows, mm (NaN if unknown)"),
    ("pixel_spacing_col", pa.float32(), "source pixel spacing between columns, mm (NaN if unknown)"),
    ("transfer_syntax", pa.string(), "DICOM transfer syntax UID or empty"),
    ("height", pa.int32(), "stored (preprocessed) rows"),
    ("width", pa.int32(), "stored (preprocessed) columns"),
    ("split", pa.string(), "train | val | test | empty"),
    ("report_indication", pa.string(), "report section: indication / history"),
    ("report_comparison", pa.string(), "report section: comparison"),
    ("report_findings", pa.string(), "report section: findings"),
    ("report_impression", pa.string(), "report section: impression / conclusion"),
    ("report_text", pa.string(), "whole normalised report"),
    ("labels", LABELS_TYPE, "structured labels: 1 positive, 0 negative, -1 uncertain; absent = not mentioned"),
    ("quality_flags", pa.list_(pa.string()), "quality flags computed at ingest (blank, saturated, ...)"),
    ("intensity_mean", pa.float32(), "mean of the stored image in [0, 1]"),
    ("intensity_std", pa.float32(), "standard deviation of the stored image in [0, 1]"),
    ("shard", pa.string(), "shard file name (relative to the dataset URL) holding the pixels"),
    ("shard_row", pa.int32(), "row of the sample inside its shard; -1 when quarantined"),
]
MANIFEST_SCHEMA = pa.schema(
    [pa.field(name, dtype, metadata={b"doc": doc.encode()}) for name, dtype, doc in MANIFEST_FIELDS],
    metadata={VERSION_KEY: SCHEMA_VERSION.encode()},
)
_DEFAULTS: dict[str, Any] = {"bits_stored": 0, "frames": 0, "orig_height": 0, "orig_width": 0,
                             "height": 0, "width": 0, "shard_row": -1, "labels": {}, "quality_flags": [],
                             "intensity_mean": float("nan"), "intensity_std": float("nan"),
                             "pixel_spacing_row": float("nan"), "pixel_spacing_col": float("nan")}


def empty_row() -> dict[str, Any]:
    """A manifest row with every column at its default (strings empty, numbers 0 / NaN)."""
    return {name: _DEFAULTS.get(name, "") for name, _, _ in MANIFEST_FIELDS}


def to_table(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Rows (dicts with manifest columns; missing columns take defaults) → a manifest table."""
    full = [{**empty_row(), **row} for row in rows]
    for row in full:
        if isinstance(row["labels"], Mapping):
            row["labels"] = list(row["labels"].items())
    return pa.Table.from_pylist(full, schema=MANIFEST_SCHEMA)


def write_manifest(table: pa.Table, url: str) -> None:
    """Write atomically, with the schema version in the file metadata."""
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), VERSION_KEY: SCHEMA_VERSION.encode()})
    with io.atomic_write(url) as f:
        pq.write_table(table, f, compression="zstd")


def read_manifest(url: str) -> pa.Table:
    """Read a manifest, checking its schema version."""
    table = io.read_parquet(url)
    version = (table.schema.metadata or {}).get(VERSION_KEY, b"").decode()
    if not version:
        raise ConfigError(f"{url} is not an rfm manifest (no {VERSION_KEY.decode()} metadata)")
    if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise ConfigError(
            f"{url} has manifest schema {version}; this rfm-data reads {SCHEMA_VERSION}: upgrade rfm-data"
        )
    return table


def labels_of(value: Any) -> dict[str, int]:
    """A manifest ``labels`` cell (list of pairs as pyarrow returns maps) → dict."""
    return dict(value or [])


def schema_markdown() -> str:
    """The schema as a Markdown table (for docs and ``rfm-data inspect --schema``)."""
    lines = [f"Manifest schema version {SCHEMA_VERSION}", "", "| column | type | meaning |", "|---|---|---|"]
    lines += [f"| `{name}` | `{dtype}` | {doc} |" for name, dtype, doc in MANIFEST_FIELDS]
    return "\n".join(lines)


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str)
