"""VolumeDataset / VolumeLoader over NIfTI files and DICOM-series folders: quarantine, items, exact resume."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pydicom.data
import pytest
import torch

pytest.importorskip("monai")
pytest.importorskip("nibabel")

from rfm_data.errors import ConfigError, QuarantineError, Reason
from rfm_data.loader import collate
from rfm_data.volume_dataset import VolumeDataset, VolumeLoader, VolumeRecord, read_volume, read_volume_table
from rfm_data.volume_phantoms import PhantomSpec, ct_phantom, write_dicom_series, write_nifti
from rfm_data.volume_transforms import VolumeTransformConfig, build_volume_transform

SMALL = PhantomSpec(shape=(12, 16, 16), spacing=(2.5, 1.5, 1.5), origin=(-12.0, -12.0, 0.0))


def _table(root: Path) -> str:
    """A JSONL table of 4 good volumes (2 NIfTI, 1 DICOM series, 1 real CT slice) and 6 bad rows."""
    write_nifti(ct_phantom(SMALL), str(root / "a.nii.gz"))
    write_nifti(ct_phantom(PhantomSpec(**{**SMALL.__dict__, "lesion": True})), str(root / "b.nii"))
    write_dicom_series(ct_phantom(SMALL), str(root / "series"), series=1)
    gap = write_dicom_series(ct_phantom(SMALL), str(root / "gap"), series=2)
    os.remove(gap[5])  # a missing slice doubles one gap
    (root / "ct_small").mkdir()
    shutil.copy(pydicom.data.get_testdata_file("CT_small.dcm"), root / "ct_small" / "0001.dcm")
    (root / "corrupt.nii.gz").write_bytes(b"\x1f\x8b" + b"not gzip at all" * 10)
    (root / "notes.txt").write_text("not a volume")
    rows = [
        {"sample_id": "a", "path": "a.nii.gz", "report": "Clear lungs.", "labels": {"Lung Lesion": 0}},
        {"sample_id": "b", "path": "b.nii", "report": "Right lung nodule.", "labels": {"Lung Lesion": 1}},
        {"sample_id": "s", "path": "series", "report": "Clear lungs.", "patient_id": "p1"},
        {"sample_id": "ct", "path": str(root / "ct_small"), "report": "Real CT slice."},
        {"sample_id": "gap", "path": "gap", "report": "x"},
        {"sample_id": "corrupt", "path": "corrupt.nii.gz", "report": "x"},
        {"sample_id": "missing", "path": "nowhere.nii", "report": "x"},
        {"sample_id": "txt", "path": "notes.txt", "report": "x"},
        {"sample_id": "a", "path": "b.nii", "report": "duplicate id"},
        {"sample_id": "empty", "path": "a.nii.gz", "report": "  "},
    ]
    url = root / "volumes.jsonl"
    url.write_text("\n".join(json.dumps(r) for r in rows))
    return str(url)


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _table(tmp_path_factory.mktemp("volumes"))


def test_quarantine_accounting(table: str) -> None:
    ds = VolumeDataset(table)
    acc = ds.accounting
    assert (acc.total, acc.accepted, len(acc.rejected)) == (10, 4, 6)
    assert acc.accepted + len(acc.rejected) == acc.total
    why = {r.sample_id: r.reason for r in acc.rejected}
    assert why["gap"] is Reason.INCONSISTENT_SLICES
    assert why["corrupt"] in (Reason.CORRUPT_IMAGE, Reason.TRUNCATED)
    assert why["missing"] is Reason.UNREADABLE_URL
    assert why["txt"] is Reason.UNSUPPORTED_FORMAT
    assert why["a"] is Reason.DUPLICATE_ID and why["empty"] is Reason.EMPTY_REPORT
    assert [r.sample_id for r in ds.records] == ["a", "b", "s", "ct"]
    assert json.loads(json.dumps(acc.to_dict()))["rejected"] == 6


def test_items_are_loader_shaped_and_in_hu(table: str) -> None:
    raw = VolumeDataset(table)
    item = raw[2]  # the DICOM series, no transform: the voxels as read, HU
    assert item["image"].shape == (1, 12, 16, 16) and item["patient_id"] == "p1"
    np.testing.assert_array_equal(item["image"][0].numpy(), ct_phantom(SMALL).voxels)
    real = raw[3]["image"]  # pydicom's CT_small.dcm: a real 128 x 128 CT slice in HU
    assert real.shape == (1, 1, 128, 128) and float(real.min()) < -500 and float(real.max()) > 500
    transform = build_volume_transform(VolumeTransformConfig(spacing=(1.5, 1.5, 1.5), size=16), train=True)
    ds = VolumeDataset(table, transform=transform, seed=1)
    items = [ds[i] for i in range(len(ds))]
    batch = collate(items)
    assert batch["image"].shape == (4, 1, 16, 16, 16) and batch["image"].dtype == torch.float32
    assert batch["report"][1] == "Right lung nodule." and batch["labels"][1] == {"Lung Lesion": 1}
    torch.testing.assert_close(ds[0]["image"], items[0]["image"])  # per-item seeding: reads repeat exactly
    ds.set_epoch(1)
    assert not torch.equal(ds[0]["image"], items[0]["image"])  # another epoch, another augmentation


def test_loader_resumes_exactly(table: str) -> None:
    transform = build_volume_transform(VolumeTransformConfig(spacing=(1.5, 1.5, 1.5), size=8), train=True)
    ds = VolumeDataset(table, transform=transform)
    loader = VolumeLoader(ds, batch_size=3, seed=5)
    assert len(loader) == 2
    loader.set_epoch(0)
    full = list(loader)
    assert loader.state_dict()["epoch"] == 1  # a finished epoch reads as the start of the next
    first = VolumeLoader(VolumeDataset(table, transform=transform), batch_size=3, seed=5)
    first.set_epoch(0)
    it = iter(first)
    next(it)
    state = first.state_dict()
    assert (state["epoch"], state["consumed"]) == (0, 3)
    resumed = VolumeLoader(VolumeDataset(table, transform=transform), batch_size=3, seed=5)
    resumed.load_state_dict(state)
    resumed.set_epoch(0)
    rest = list(resumed)
    assert [b["sample_id"] for b in rest] == [full[1]["sample_id"]]
    torch.testing.assert_close(rest[0]["image"], full[1]["image"])
    with pytest.raises(ConfigError, match="batch_size"):
        VolumeLoader(ds, batch_size=2, seed=5).load_state_dict(state)


def test_csv_table_and_bad_rows(tmp_path: Path) -> None:
    write_nifti(ct_phantom(SMALL), str(tmp_path / "a.nii.gz"))
    (tmp_path / "t.csv").write_text('sample_id,path,report,labels\na,a.nii.gz,Clear.,"{""Effusion"": 0}"\n')
    records = read_volume_table(str(tmp_path / "t.csv"))
    assert records == [VolumeRecord("a", f"{tmp_path}/a.nii.gz", "Clear.", {"Effusion": 0})]
    (tmp_path / "bad.csv").write_text("sample_id,path,report,labels\na,a.nii.gz,x,{oops\n")
    with pytest.raises(ConfigError, match=r"row 1: field 'labels'"):
        read_volume_table(str(tmp_path / "bad.csv"))
    (tmp_path / "nopath.jsonl").write_text(json.dumps({"sample_id": "a", "report": "x"}))
    with pytest.raises(ConfigError, match=r"row 1: field 'path'"):
        read_volume_table(str(tmp_path / "nopath.jsonl"))
    with pytest.raises(ConfigError, match=r"\.jsonl or \.csv"):
        read_volume_table(str(tmp_path / "a.nii.gz"))
    with pytest.raises(QuarantineError) as err:
        read_volume(str(tmp_path / "absent"))
    assert err.value.reason is Reason.UNREADABLE_URL


def test_empty_dataset_is_a_clear_error(tmp_path: Path) -> None:
    ds = VolumeDataset([VolumeRecord("x", str(tmp_path / "none.nii"), "report")])
    assert ds.accounting.reasons() == {"unreadable_url": 1}
    with pytest.raises(ConfigError, match="no usable row"):
        VolumeLoader(ds, batch_size=2)
