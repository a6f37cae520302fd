"""Pool several ingested shard datasets into one (hard links, no pixel copies), keeping each sample's source.

The ingest step takes one source and adapter; a study pools several (e.g. the COVID collection and the
pediatric set). The joined dataset is an ordinary rfm shard dataset: ``dataset.json`` lists every shard under
``shards/<source>-<name>``, and ``manifest.parquet`` is the sources' manifests stacked, with the ``shard``
column rewritten and the ``dataset`` column (the adapter) kept, so every sample's domain stays known.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from rfm_data.errors import ConfigError
from rfm_data.manifest import read_manifest, write_manifest

__all__ = ["JoinResult", "join_datasets"]


@dataclass
class JoinResult:
    """What :func:`join_datasets` wrote: sample counts per source and in all."""

    out: str
    samples: int
    shards: int
    by_source: dict[str, int] = field(default_factory=dict)


def _link(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another filesystem: copy
        shutil.copy2(src, dst)


def join_datasets(datasets: Sequence[str], out: str, names: Sequence[str] | None = None) -> JoinResult:
    """Join the ingested ``datasets`` (local folders) into ``out``.

    Args:
        datasets: folders written by ``rfm-data ingest`` (each with dataset.json and manifest.parquet).
        out: output folder (created).
        names: a prefix per dataset for its shard files (default: each manifest's ``dataset`` value).

    Raises:
        ConfigError: no dataset, a folder that is not an ingested dataset, or sample ids shared by two of them.
    """
    if not datasets:
        raise ConfigError("join_datasets needs at least one ingested dataset folder")
    root = Path(out)
    (root / "shards").mkdir(parents=True, exist_ok=True)
    tables: list[pa.Table] = []
    entries: list[dict[str, Any]] = []
    by_source: dict[str, int] = {}
    for i, folder in enumerate(datasets):
        meta_path = Path(folder) / "dataset.json"
        if not meta_path.exists():
            raise ConfigError(f"{folder} is not an ingested dataset (no dataset.json): pass ingest outputs")
        meta = json.loads(meta_path.read_text())
        table = read_manifest(str(Path(folder) / str(meta.get("manifest", "manifest.parquet"))))
        prefix = names[i] if names else (str(meta.get("dataset") or f"source{i}"))
        prefix = f"{prefix}-{i}" if any(e["name"].startswith(f"shards/{prefix}-") for e in entries) else prefix
        renamed: dict[str, str] = {}
        for shard in meta["shards"]:
            new = f"shards/{prefix}-{Path(shard['name']).name}"
            _link(Path(folder) / shard["name"], root / new)
            renamed[shard["name"]] = new
            entries.append({"name": new, "rows": shard["rows"]})
        shard_col = [renamed.get(s, s) if s else s for s in table["shard"].to_pylist()]
        table = table.set_column(table.schema.get_field_index("shard"), table.schema.field("shard"),
                                 pa.array(shard_col, pa.string()))
        by_source[prefix] = int(pc.sum(pc.equal(table["status"], "accepted")).as_py() or 0)
        tables.append(table)
    joined = pa.concat_tables(tables, promote_options="default")
    dupes = [s for s, n in Counter(joined["sample_id"].to_pylist()).items() if n > 1]
    if dupes:
        raise ConfigError(f"{len(dupes)} sample ids occur in more than one dataset (e.g. {dupes[0]!r}): join "
                          "distinct sources, or ingest them with adapters that prefix their ids")
    write_manifest(joined, str(root / "manifest.parquet"))
    accepted = int(pc.sum(pc.equal(joined["status"], "accepted")).as_py() or 0)
    meta_out = {"format": "rfm-shards", "dataset": "+".join(by_source), "source": list(map(str, datasets)),
                "manifest": "manifest.parquet", "shards": entries,
                "counts": {"accepted": accepted, "total": joined.num_rows, "by_dataset": by_source}}
    first = json.loads((Path(datasets[0]) / "dataset.json").read_text())
    for key in ("manifest_schema_version", "rfm_data_version", "shard_format_version", "config"):
        if key in first:
            meta_out[key] = first[key]
    (root / "dataset.json").write_text(json.dumps(meta_out, indent=2))
    return JoinResult(str(root), accepted, len(entries), by_source)
