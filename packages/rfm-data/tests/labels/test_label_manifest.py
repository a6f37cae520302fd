"""Labelling a manifest: the bundled sample end to end through the CLI, idempotence, resume, prevalence."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from rfm_data.cli import main
from rfm_data.config import DeidConfig, IngestConfig
from rfm_data.ingest import ingest
from rfm_data.labels import LabelResult, create_labeler
from rfm_data.labels.apply import LABELS_COLUMN, METADATA_KEY, STATUS_COLUMN, coerce_options, label_texts
from rfm_data.manifest import read_manifest


@pytest.fixture(scope="module")
def sample_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("labels") / "sample"
    ingest("sample", str(dest), IngestConfig(workers=1, deid=DeidConfig(key="test-key-not-secret")))
    return dest


def test_cli_labels_the_bundled_sample_and_reruns_identically(sample_dataset: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    manifest = sample_dataset / "manifest.parquet"
    assert main(["label", str(sample_dataset)]) == 0
    first = manifest.read_bytes()
    out = capsys.readouterr().out
    assert "rows labelled with rule" in out and "0 of" in out
    table = read_manifest(str(manifest))
    rows = table.to_pylist()
    assert len(rows) == 65
    with_text = [r for r in rows if r["report_findings"] or r["report_impression"]]
    assert len(with_text) == 9 and all(r[STATUS_COLUMN] == "ok" for r in with_text)
    assert all(r[STATUS_COLUMN] == "empty" and not r[LABELS_COLUMN] for r in rows if r not in with_text)
    # the ARDS note "Person is intubated with an OG in place." -> endotracheal and gastric tubes
    ards = next(dict(r[LABELS_COLUMN]) for r in with_text if "intubated" in r["report_findings"])
    assert ards["Endotracheal Tube"] == 1 and ards["Nasogastric Tube"] == 1 and ards["Support Devices"] == 1
    # the dataset's own labels are untouched
    assert any(dict(r["labels"]).get("COVID-19") == 1 for r in rows)
    meta = json.loads(pq.read_schema(manifest).metadata[METADATA_KEY])
    assert meta["backend"] == "rule" and meta["sections"] == ["findings", "impression"]
    prevalence = json.loads((sample_dataset / "label_prevalence.json").read_text())
    assert prevalence["prevalence"]["Pneumonia"]["positive"] >= 3
    assert (sample_dataset / "label_prevalence.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # rerun: everything from the cache, and the same file byte for byte
    assert main(["label", str(sample_dataset), "--no-plot"]) == 0
    assert "10 of 10 texts from the cache" in capsys.readouterr().out
    assert manifest.read_bytes() == first


def test_cli_reports_a_missing_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["label", str(tmp_path / "absent")]) == 2
    assert "error" in capsys.readouterr().err


class _KilledError(RuntimeError):
    pass


class _DiesAfter:
    """A real rule labeler that dies (like a killed process) when asked for its ``n``-th chunk."""

    name = "rule"

    def __init__(self, chunks_before_death: int) -> None:
        self.inner = create_labeler("rule")
        self.left = chunks_before_death
        self.labelled = 0

    def fingerprint(self) -> str:
        return self.inner.fingerprint()

    def label_batch(self, texts: Sequence[str | bytes | None]) -> list[LabelResult]:
        if self.left == 0:
            raise _KilledError
        self.left -= 1
        self.labelled += len(texts)
        return self.inner.label_batch(texts)


def test_a_killed_run_resumes_from_its_finished_chunks(tmp_path: Path) -> None:
    texts = [f"Report {i}: mild cardiomegaly." if i % 2 else f"Report {i}: no effusion." for i in range(10)]
    cache = str(tmp_path / "cache")
    with pytest.raises(_KilledError):
        label_texts(_DiesAfter(2), texts, cache, chunk_size=3)
    resumed = _DiesAfter(10)
    results, from_cache = label_texts(resumed, texts, cache, chunk_size=3)
    assert from_cache == 6 and resumed.labelled == 4
    assert results == create_labeler("rule").label_batch(texts)


def test_option_values_are_typed() -> None:
    assert coerce_options({"concurrency": "4", "backoff_s": "0.5", "url": "http://127.0.0.1:1/v1", "x": "null"}) == {
        "concurrency": 4, "backoff_s": 0.5, "url": "http://127.0.0.1:1/v1", "x": None}
