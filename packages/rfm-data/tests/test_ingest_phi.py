"""DICOMs full of PHI go through a real ingest (worker processes, CLI, logs): none of it comes out."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from rfm_data.cli import main


def _texts_of_outputs(dest: Path) -> list[str]:
    """Every output file as text: Parquet tables decoded row by row (their bytes are compressed)."""
    texts = []
    for path in sorted(p for p in dest.rglob("*") if p.is_file()):
        if path.suffix == ".parquet":
            texts.append(repr(pq.read_table(path).drop_columns(
                [c for c in ("image",) if c in pq.read_schema(path).names]).to_pylist()))
        texts.append(path.read_bytes().decode("latin-1"))
        texts.append(str(path))
    return texts


@pytest.mark.slow
def test_no_phi_reaches_shards_manifest_dataset_json_or_logs(
    tmp_path: Path,
    make_dicom: Callable[..., bytes],
    phi_sentinel_values: Callable[[int], dict[str, str]],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = tmp_path / "dicoms"
    src.mkdir()
    sentinels: set[str] = set()
    for i in range(6):
        burned = i == 5  # one quarantined file must not leak either
        (src / f"image{i}.dcm").write_bytes(make_dicom(phi=True, instance=i, burned_in=burned or None))
        sentinels |= {v for v in phi_sentinel_values(i).values() if len(v) >= 6}
    monkeypatch.setenv("RFM_DEID_KEY", "phi-test-key")
    dest = tmp_path / "out"

    with caplog.at_level(logging.DEBUG):
        assert main(["-v", "ingest", str(src), str(dest), "--dataset", "dicom_folder", "--shard-size", "2",
                     "--workers", "2", "--no-progress"]) == 0
        assert main(["inspect", str(dest)]) == 0
    captured = capsys.readouterr()

    haystacks = [*_texts_of_outputs(dest), captured.out, captured.err, caplog.text]
    leaks = sorted({s for s in sentinels for text in haystacks if s in text})
    assert not leaks, f"PHI values found in outputs or logs: {leaks[:10]}"
    manifest = pq.read_table(dest / "manifest.parquet").to_pylist()
    assert sum(r["status"] == "accepted" for r in manifest) == 5
    assert [r["reason"] for r in manifest if r["status"] == "quarantined"] == ["burned_in_annotation"]
    # ids are keyed pseudonyms, distinct per patient / study
    accepted = [r for r in manifest if r["status"] == "accepted"]
    assert all(r["patient_id"].startswith("patient-") for r in accepted)
    assert len({r["patient_id"] for r in accepted}) == 5
    assert "phi-test-key" not in "".join(haystacks)
