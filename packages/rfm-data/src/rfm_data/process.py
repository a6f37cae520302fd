"""One input item → its manifest row and, when accepted, its shard row. Pure per-item logic."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

from rfm_data import io
from rfm_data.config import IngestConfig
from rfm_data.errors import QuarantineError, Reason
from rfm_data.preprocess import preprocess
from rfm_data.quality import image_stats
from rfm_data.readers import ReadOptions, detect_format, read_image
from rfm_data.records import Image2D, ImageMeta, Report, SourceItem
from rfm_data.shards import encode_pixels

# Report problems that always quarantine: the text exists but is unusable (silently dropping it would
# turn a corrupt report into a report-less image).
_ALWAYS_QUARANTINE = {Reason.NON_UTF8_REPORT.value}
_MISSING_REPORT = {Reason.MISSING_REPORT.value, Reason.EMPTY_REPORT.value}
MAX_FILE_BYTES = 2 * 1024**3


@dataclass
class ItemResult:
    manifest_row: dict[str, Any]
    shard_row: dict[str, Any] | None  # None when quarantined


def _base_row(item: SourceItem) -> dict[str, Any]:
    report = item.report or Report()
    return {
        "sample_id": item.sample_id,
        "dataset": item.dataset,
        "source_uri": item.uri,
        "format": item.fmt,
        "view": item.view,
        "split": item.split,
        "labels": dict(item.labels),
        "report_indication": report.indication,
        "report_comparison": report.comparison,
        "report_findings": report.findings,
        "report_impression": report.impression,
        "report_text": report.text,
    }


def quarantined_row(item: SourceItem, err: QuarantineError, row: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest row of an item that cannot be used, with its reason."""
    out = row if row is not None else _base_row(item)
    out.update(status="quarantined", reason=err.reason.value, reason_detail=err.detail)
    return out


def _check_report(item: SourceItem, cfg: IngestConfig) -> list[str]:
    """Quality flags for the report; raises for reports that must quarantine the item."""
    error = item.report_error
    missing = error in _MISSING_REPORT or item.report is None or item.report.is_empty()
    if error in _ALWAYS_QUARANTINE or (missing and cfg.require_report):
        reason = Reason(error) if error else Reason.MISSING_REPORT
        raise QuarantineError(reason, "the report is required (require_report) but unusable" if missing else "")
    return ["no_report"] if missing else []


def _meta_columns(meta: ImageMeta, item: SourceItem, options: ReadOptions) -> dict[str, Any]:
    spacing = meta.pixel_spacing or (math.nan, math.nan)
    pseudonymize = options.pseudonymize
    return {
        # Ids from the file (already pseudonymised by the reader) win; ids from a dataset table are
        # pseudonymised here too, because hospital tables carry real MRNs and accession numbers.
        "patient_id": meta.patient_id or pseudonymize("patient", item.patient_id),
        "study_id": meta.study_id or pseudonymize("study", item.study_id),
        "series_id": meta.series_id,
        "modality": meta.modality,
        "view": item.view or meta.view,
        "body_part": meta.body_part,
        "photometric": meta.photometric,
        "bits_stored": meta.bits_stored,
        "frames": meta.frames,
        "orig_height": meta.orig_height,
        "orig_width": meta.orig_width,
        "pixel_spacing_row": spacing[0],
        "pixel_spacing_col": spacing[1],
        "transfer_syntax": meta.transfer_syntax,
    }


def _decode(item: SourceItem, options: ReadOptions, row: dict[str, Any]) -> Image2D:
    data = io.read_bytes(item.uri, max_bytes=MAX_FILE_BYTES)
    row["content_hash"] = hashlib.sha256(data).hexdigest()
    row["format"] = item.fmt or detect_format(data, item.uri)
    image = read_image(data, item.uri, options, fmt=row["format"])
    if not isinstance(image, Image2D):
        raise QuarantineError(Reason.NOT_2D, "a 3D volume cannot go into 2D image shards")
    return image


def process_item(item: SourceItem, options: ReadOptions, cfg: IngestConfig) -> ItemResult:
    """Read, decode, de-identify, check and preprocess one item. Never raises for bad input."""
    row = _base_row(item)
    try:
        if item.error:  # the adapter found the record itself unusable (e.g. a malformed table row)
            raise QuarantineError(Reason(item.error), item.error_detail)
        flags = _check_report(item, cfg)
        image = _decode(item, options, row)
    except QuarantineError as err:
        return ItemResult(quarantined_row(item, err, row), None)
    meta = image.meta
    source_shape = (meta.orig_height, meta.orig_width) if meta.orig_height and meta.orig_width else None
    stored = preprocess(image.pixels, cfg.preprocess, source_shape)
    stats = image_stats(stored, image.meta)
    row.update(_meta_columns(image.meta, item, options))
    row.update(
        status="accepted", reason="", reason_detail="", height=stored.shape[0], width=stored.shape[1],
        quality_flags=stats.flags + flags, intensity_mean=stats.mean, intensity_std=stats.std,
    )
    shard_row = {
        "sample_id": item.sample_id,
        "image": encode_pixels(stored, cfg.preprocess.encoding),
        "height": stored.shape[0],
        "width": stored.shape[1],
        "dtype": stored.dtype.name,
        "encoding": cfg.preprocess.encoding.value,
        **{k: row[k] for k in ("patient_id", "study_id", "view", "split", "labels", "report_findings",
                               "report_impression", "report_text")},
    }
    return ItemResult(row, shard_row)
