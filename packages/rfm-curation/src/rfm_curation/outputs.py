"""Writing a curation's outputs: selection table, curated manifest, duplicate groups, report, curation.json."""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from rfm_curation.report import write_report
from rfm_data import io
from rfm_data.manifest import write_manifest

if TYPE_CHECKING:
    from rfm_curation.select import Decisions

SELECTION_SCHEMA = pa.schema([
    ("sample_id", pa.string()), ("kept", pa.bool_()), ("reason", pa.string()), ("cluster", pa.int64()),
    ("band", pa.string()), ("score", pa.float32()), ("duplicate_of", pa.string()),
])
DUPLICATES_SCHEMA = pa.schema([
    ("method", pa.string()), ("group", pa.string()), ("sample_id", pa.string()), ("representative", pa.string()),
    ("similarity", pa.float32()),
])


def selection_table(ids: npt.NDArray[np.str_], d: Decisions) -> pa.Table:
    """One row per manifest row: kept, reason, cluster, band, score, duplicate_of."""
    return pa.table({
        "sample_id": pa.array(ids, pa.string()), "kept": pa.array(d.reason == ""),
        "reason": pa.array(d.reason.astype(str), pa.string()), "cluster": pa.array(d.cluster),
        "band": pa.array(d.band.astype(str), pa.string()), "score": pa.array(d.score, pa.float32()),
        "duplicate_of": pa.array(d.duplicate_of.astype(str), pa.string()),
    }, schema=SELECTION_SCHEMA)


def _write_parquet(table: pa.Table, url: str) -> None:
    with io.atomic_write(url) as f:
        pq.write_table(table, f, compression="zstd")


def write_outputs(out: str, manifest: pa.Table, ids: npt.NDArray[np.str_], d: Decisions, config: dict[str, Any],
                  budget: int, stage_seconds: dict[str, float]) -> dict[str, int]:
    """Write every output under ``out`` (``curation.json`` last); returns the counts per reason."""
    selection = selection_table(ids, d)
    duplicates = pa.Table.from_pylist(d.duplicate_groups, schema=DUPLICATES_SCHEMA)
    curated = manifest.append_column("curation_kept", selection["kept"]).append_column(
        "curation_reason", selection["reason"])
    io.makedirs(out)
    _write_parquet(selection, io.join(out, "selection.parquet"))
    _write_parquet(duplicates, io.join(out, "duplicates.parquet"))
    write_manifest(curated, io.join(out, "manifest.parquet"))
    counts = dict(Counter(d.reason.tolist()).most_common())
    write_report(out, selection, manifest["labels"], duplicates, title=f"{config['strategy']}, budget {budget}")
    doc = {"config": config, "budget": budget, "stage_seconds": stage_seconds, "total": len(ids),
           "kept": counts.get("", 0), "by_reason": {k or "kept": v for k, v in counts.items()}}
    io.write_text(io.join(out, "curation.json"), json.dumps(doc, indent=2, sort_keys=True, default=str))
    return counts
