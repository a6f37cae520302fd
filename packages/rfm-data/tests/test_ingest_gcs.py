"""Ingest to and from gs:// through gcsfs, against the loopback GCS emulator."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from rfm_data import io
from rfm_data.config import DeidConfig, IngestConfig
from rfm_data.ingest import MANIFEST_NAME, ingest
from rfm_data.manifest import read_manifest
from rfm_data.shards import read_shard


@pytest.mark.integration
def test_ingest_from_and_to_gcs_with_worker_processes(
    gcs_emulator: object, shared_data: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Worker processes are spawned: they see environment variables, not the parent's fsspec config.
    monkeypatch.setenv("FSSPEC_GCS_TOKEN", "anon")
    bucket = gcs_emulator.bucket_url  # type: ignore[attr-defined]
    root = shared_data / "pediatric_pneumonia_kermany"
    with open(root / "metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))[:6]
    lines = ["path,sample_id,patient_id,split,labels"]
    for r in rows:  # sources live in the bucket too; the table points at them with relative paths
        io.write_bytes(f"{bucket}/src/{Path(r['image_path']).name}", (root / r["image_path"]).read_bytes())
        lines.append(f"{Path(r['image_path']).name},{r['image_id']},{r['patient_id']},{r['split']},{r['labels']}")
    lines.append("missing.png,ghost,kermany:none,train,")  # an unreadable URL must be quarantined, not crash
    io.write_text(f"{bucket}/src/table.csv", "\n".join(lines) + "\n")

    dest = f"{bucket}/datasets/kermany6"
    cfg = IngestConfig(shard_size=4, workers=2, deid=DeidConfig(key="k"))
    result = ingest(f"{bucket}/src/table.csv", dest, cfg, dataset="image_table", progress=False)

    assert (result.summary.total, result.summary.accepted, result.summary.quarantined) == (7, 6, 1)
    assert result.summary.by_reason == {"unreadable_url": 1}
    manifest = read_manifest(f"{dest}/{MANIFEST_NAME}")
    assert manifest.num_rows == 7
    assert sum(read_shard(f"{dest}/{s['name']}").num_rows for s in result.shards) == 6
    assert io.exists(f"{dest}/dataset.json")
    assert not [u for u in io.list_files(dest) if "/.tmp-" in u]
