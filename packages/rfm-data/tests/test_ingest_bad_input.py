"""Every kind of bad input in one real ingest: each is quarantined with its own reason, the run completes,
and accepted + quarantined = total. Sources are real files: real CXRs, DICOMs built from them, pydicom's
bundled malformed files."""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import dcmread, dcmwrite
from pydicom.data import get_testdata_file

from rfm_data.config import DeidConfig, IngestConfig
from rfm_data.ingest import MANIFEST_NAME, ingest
from rfm_data.manifest import read_manifest

COLUMNS = ["path", "sample_id", "patient_id", "view", "split", "labels", "report"]


def _with_unknown_syntax(data: bytes) -> bytes:
    """The same file declaring a private transfer syntax that no decoder knows."""
    ds = dcmread(BytesIO(data))
    ds.file_meta.TransferSyntaxUID = "1.2.826.0.1.3680043.8.498.1"
    out = BytesIO()
    dcmwrite(out, ds, implicit_vr=False, little_endian=True)
    return out.getvalue()


def _build_inputs(root: Path, shared_data: Path, make_dicom: Callable[..., bytes]) -> dict[str, str]:
    """Files on disk and the reason each must end with ("" = accepted)."""
    cxr = sorted((shared_data / "covid_chestxray_ieee8023" / "images").glob("*.png"))[:2]
    good_dcm = make_dicom()
    files: dict[str, tuple[bytes, str]] = {
        "good.png": (cxr[0].read_bytes(), ""),
        "good.dcm": (good_dcm, ""),
        "truncated.dcm": (good_dcm[: len(good_dcm) // 2], "truncated"),
        "png_named.dcm": (cxr[1].read_bytes()[:4000], "corrupt_image"),  # PNG magic wins, then it's cut
        "text_named.dcm": (b"this is not a DICOM file at all\n" * 10, "not_dicom"),
        "no_pixels.dcm": (make_dicom(drop=("PixelData",)), "missing_pixel_data"),
        "absurd.dcm": (make_dicom(extra={"Rows": 60000, "Columns": 60000}), "bad_dimensions"),
        "zero.dcm": (make_dicom(extra={"Rows": 0}), "bad_dimensions"),
        "unknown_syntax.dcm": (_with_unknown_syntax(good_dcm), "unsupported_syntax"),
        "burned_in.dcm": (make_dicom(burned_in=True), "burned_in_annotation"),
        "corrupt.png": (cxr[1].read_bytes()[:200] + b"\x00" * 500, "corrupt_image"),
        "empty.png": (b"", "empty_file"),
        "bundled_no_meta.dcm": (Path(get_testdata_file("no_meta.dcm")).read_bytes(), "not_dicom"),
    }
    for name, (data, _) in files.items():
        (root / name).write_bytes(data)
    return {name: reason for name, (_, reason) in files.items()}


def _row(path: str, sid: str, report: str = "Heart size normal. IMPRESSION: No acute disease.") -> dict[str, str]:
    return {"path": path, "sample_id": sid, "patient_id": f"p-{sid}", "view": "PA", "split": "train",
            "labels": "", "report": report}


@pytest.mark.slow
def test_each_bad_input_is_quarantined_with_its_reason_and_counted(
    tmp_path: Path, shared_data: Path, make_dicom: Callable[..., bytes], caplog: pytest.LogCaptureFixture
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    expected = _build_inputs(src, shared_data, make_dicom)
    rows = [_row(name, name) for name in expected]
    rows += [
        _row("does_not_exist.png", "missing_file"),
        _row("good.png", "good.png"),  # the same id again
        _row("good.png", "empty_report_row", report="   "),
        _row("good.png", "missing_report_row", report=""),
    ]
    expected |= {"missing_file": "unreadable_url", "empty_report_row": "empty_report",
                 "missing_report_row": "missing_report"}
    with open(src / "table.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    # a non-UTF-8 report: raw bytes appended to the CSV
    with open(src / "table.csv", "ab") as fb:
        fb.write(b"good.png,latin1_report,p-x,PA,train,,Coeur normal. \xe9panchement absent.\n")
    expected["latin1_report"] = "non_utf8_report"

    cfg = IngestConfig(shard_size=5, workers=2, require_report=True, deid=DeidConfig(key="k"))
    with caplog.at_level(logging.INFO):
        result = ingest(str(src / "table.csv"), str(tmp_path / "out"), cfg, dataset="image_table", progress=False)

    manifest = read_manifest(str(tmp_path / "out" / MANIFEST_NAME)).to_pylist()
    got: dict[str, list[str]] = {}
    for r in manifest:
        got.setdefault(r["sample_id"], []).append(r["reason"])
    assert result.summary.total == len(rows) + 1 == len(manifest)
    assert result.summary.accepted + result.summary.quarantined == result.summary.total
    assert got.pop("good.png") == ["", "duplicate_id"]  # first kept, the repeat quarantined
    assert {sid: reasons[0] for sid, reasons in got.items()} == {k: v for k, v in expected.items() if k != "good.png"}
    for r in manifest:
        if r["status"] == "quarantined":
            assert r["reason_detail"] or r["reason"] in ("duplicate_id",), r
            assert r["shard"] == "" and r["shard_row"] == -1
    assert result.summary.accepted == 2  # good.png, good.dcm
