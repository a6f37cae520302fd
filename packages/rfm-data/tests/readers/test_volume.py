"""Volume readers on real volumes: nibabel's bundled NIfTI files and a series built from pydicom's real CT."""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from nibabel.testing import data_path

from rfm_data.config import FramePolicy
from rfm_data.errors import QuarantineError, Reason
from rfm_data.readers import ReadOptions, detect_format, read_image, readers
from rfm_data.readers.volume import THREE_D_HINT, read_dicom_series, read_nifti
from rfm_data.records import Volume

MakeSeries = Callable[..., list[bytes]]
NIFTI = Path(data_path)


def _opts(options: ReadOptions, **dicom: object) -> ReadOptions:
    return dataclasses.replace(options, dicom=dataclasses.replace(options.dicom, **dicom))


def _nifti(data: bytes, options: ReadOptions, **dicom: object) -> Volume:
    volume = read_nifti(data, "memory://v.nii", _opts(options, **dicom))
    assert isinstance(volume, Volume)
    return volume


def _reason(fn: Callable[[], object]) -> Reason:
    with pytest.raises(QuarantineError) as info:
        fn()
    return info.value.reason


def _lps_of_voxel(volume: Volume, k: int, j: int, i: int) -> np.ndarray:
    """Patient position of voxels[k, j, i] from the Volume's documented geometry."""
    direction = np.asarray(volume.direction)
    ss, sr, sc = volume.spacing
    return np.asarray(volume.origin) + direction @ np.array([i * sc, j * sr, k * ss])


# ------------------------------------------------------------------------------------------------ NIfTI
@pytest.mark.parametrize("name", ["anatomical.nii", "standard.nii.gz", "example4d.nii.gz", "example_nifti2.nii.gz"])
def test_nifti_values_axes_and_geometry(read_options: ReadOptions, name: str) -> None:
    path = NIFTI / name
    assert detect_format(path.read_bytes(), name) == "nifti"
    volume = read_image(path.read_bytes(), str(path), read_options)
    assert isinstance(volume, Volume)
    ref = nib.load(path)
    data = np.asarray(ref.dataobj, dtype=np.float64)
    data = data[..., 0] if data.ndim == 4 else data
    assert volume.voxels.dtype == np.float32 and volume.voxels.flags.c_contiguous
    assert volume.voxels.shape == data.shape[::-1]
    np.testing.assert_allclose(volume.voxels, data.transpose(2, 1, 0), rtol=1e-6)
    np.testing.assert_allclose(sorted(volume.spacing), sorted(ref.header.get_zooms()[:3]), rtol=1e-5)
    # Any voxel: the documented LPS geometry must agree with nibabel's RAS affine (x and y flipped).
    for i, j, k in [(0, 0, 0), (1, 2, 3), tuple(n - 1 for n in data.shape[:3])]:
        ras = ref.affine @ np.array([i, j, k, 1.0])
        np.testing.assert_allclose(_lps_of_voxel(volume, k, j, i), ras[:3] * [-1, -1, 1], atol=1e-4)
    assert volume.meta.frames == (ref.shape[3] if len(ref.shape) == 4 else 1)


def test_nifti_anisotropic_spacing_order(read_options: ReadOptions) -> None:
    volume = _nifti((NIFTI / "standard.nii.gz").read_bytes(), read_options)  # zooms (x, y, z) = (1, 3, 2)
    assert volume.voxels.shape == (7, 5, 4)
    assert volume.spacing == pytest.approx((2.0, 3.0, 1.0))  # (slice, row, column)


def test_nifti_4d_frame_policy(read_options: ReadOptions) -> None:
    data = (NIFTI / "example4d.nii.gz").read_bytes()
    ref = np.asarray(nib.load(NIFTI / "example4d.nii.gz").dataobj, dtype=np.float32)
    first = _nifti(data, read_options, frame=FramePolicy.FIRST).voxels
    middle = _nifti(data, read_options, frame=FramePolicy.MIDDLE).voxels
    np.testing.assert_array_equal(first, ref[..., 0].transpose(2, 1, 0))
    np.testing.assert_array_equal(middle, ref[..., 1].transpose(2, 1, 0))
    assert not np.array_equal(first, middle)
    assert _reason(lambda: _nifti(data, read_options, frame=FramePolicy.QUARANTINE)) == Reason.NOT_2D


def test_nifti_scaling_gives_physical_units(read_options: ReadOptions) -> None:
    ref = nib.load(NIFTI / "anatomical.nii")
    raw = np.asarray(ref.dataobj).astype(np.int16)
    img = nib.Nifti1Image(raw, ref.affine)
    img.header.set_slope_inter(2.0, -100.0)
    volume = _nifti(img.to_bytes(), read_options)
    np.testing.assert_allclose(volume.voxels, raw.transpose(2, 1, 0) * 2.0 - 100.0)


def test_nifti_bad_input(read_options: ReadOptions) -> None:
    plain = (NIFTI / "anatomical.nii").read_bytes()
    zipped = (NIFTI / "example4d.nii.gz").read_bytes()
    assert _reason(lambda: _nifti(plain[: len(plain) // 2], read_options)) == Reason.TRUNCATED
    assert _reason(lambda: _nifti(zipped[: len(zipped) // 2], read_options)) == Reason.TRUNCATED
    corrupt = bytearray(zipped)
    corrupt[100:400] = bytes(300)
    assert _reason(lambda: _nifti(bytes(corrupt), read_options)) == Reason.CORRUPT_IMAGE
    assert _reason(lambda: _nifti(b"\x00" * 600, read_options)) == Reason.CORRUPT_IMAGE
    assert _reason(lambda: _nifti(plain, read_options, max_side=20)) == Reason.BAD_DIMENSIONS


def test_nifti_header_claiming_huge_volume(read_options: ReadOptions) -> None:
    img = nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4))
    header = bytearray(img.to_bytes())
    header[42:48] = np.array([10000, 10000, 10000], "<i2").tobytes()  # dim[1..3]
    reason = _reason(lambda: _nifti(bytes(header), read_options))
    assert reason == Reason.BAD_DIMENSIONS


def test_gzip_bomb_is_bounded(read_options: ReadOptions) -> None:
    # A valid 64x64x64 float64 NIfTI (2 MiB inflated) against a 1000-voxel budget: refused while inflating.
    img = nib.Nifti1Image(np.zeros((64, 64, 64), np.float64), np.eye(4))
    bomb = gzip.compress(img.to_bytes())
    tracemalloc.start()
    try:
        reason = _reason(lambda: _nifti(bomb, read_options, max_voxels=1000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert reason == Reason.BAD_DIMENSIONS and peak < 2**20


def test_nibabel_missing_names_the_extra() -> None:
    script = (
        "import sys; sys.modules['nibabel'] = None\n"
        "from rfm_data.deid import Pseudonymizer\nfrom rfm_data.errors import QuarantineError\n"
        "from rfm_data.readers import ReadOptions\nfrom rfm_data.readers.volume import read_nifti\n"
        "try:\n    read_nifti(b'x' * 400, 'x.nii', ReadOptions(pseudonymize=Pseudonymizer(b'k')))\n"
        "except QuarantineError as err:\n    print(err.reason.value, '|', err.detail)\n"
    )
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120,
                         check=True).stdout
    reason, detail = out.strip().split(" | ")
    assert reason == Reason.CODEC_MISSING.value and THREE_D_HINT in detail and "rfm-data[3d]" in detail


# ---------------------------------------------------------------------------------------------- series
def _ct_reference() -> tuple[np.ndarray, pydicom.Dataset]:
    ds = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    return hu, ds


def _series(files: list[bytes], options: ReadOptions) -> Volume:
    return read_dicom_series(files, [f"memory://s/{i}.dcm" for i in range(len(files))], options)


@pytest.mark.parametrize("orientation", ["axial", "oblique"])
def test_series_sorted_in_hu_with_position_spacing(
    make_ct_series: MakeSeries, read_options: ReadOptions, orientation: str
) -> None:
    files = make_ct_series(count=6, spacing=2.5, orientation=orientation, seed=3)
    volume = _series(files, read_options)
    hu, ds = _ct_reference()
    assert volume.voxels.shape == (6, 128, 128) and volume.voxels.dtype == np.float32
    for k in range(6):  # sorted: slice k is the reference rolled by 7*k rows, in HU
        np.testing.assert_array_equal(volume.voxels[k], np.roll(hu, 7 * k, axis=0))
    assert volume.spacing == pytest.approx((2.5, 0.661468, 0.661468))  # not SliceThickness (5.0)
    assert volume.origin == pytest.approx(tuple(float(v) for v in ds.ImagePositionPatient))
    direction = np.asarray(volume.direction)
    np.testing.assert_allclose(direction.T @ direction, np.eye(3), atol=1e-9)  # orthonormal columns
    last = pydicom.dcmread(io.BytesIO(max(files, key=lambda f: pydicom.dcmread(io.BytesIO(f)).InstanceNumber)))
    np.testing.assert_allclose(_lps_of_voxel(volume, 5, 0, 0), [float(v) for v in last.ImagePositionPatient],
                               atol=1e-4)


def test_series_order_independent_and_ids_pseudonymised(make_ct_series: MakeSeries, read_options: ReadOptions) -> None:
    a = _series(make_ct_series(seed=1), read_options)
    b = _series(make_ct_series(seed=2), read_options)
    np.testing.assert_array_equal(a.voxels, b.voxels)
    _, ds = _ct_reference()
    assert a.meta.series_id == read_options.pseudonymize("series", str(ds.SeriesInstanceUID))
    assert a.meta.patient_id == read_options.pseudonymize("patient", str(ds.PatientID))
    assert a.meta.instance_id == "" and a.meta.frames == 5 and a.meta.modality == "CT"
    assert str(ds.SeriesInstanceUID) not in repr(a.meta) and str(ds.PatientID) not in repr(a.meta)


def _edit(data: bytes, **changes: object) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


def test_per_slice_rescale_is_applied(make_ct_series: MakeSeries, read_options: ReadOptions) -> None:
    files = make_ct_series(count=3, seed=0)
    plain = _series(files, read_options)
    files[0] = _edit(files[0], RescaleIntercept=-1000)  # +24 HU for that slice only
    changed = _series(files, read_options)
    k = int(np.argmax([np.abs(plain.voxels[i] - changed.voxels[i]).max() for i in range(3)]))
    np.testing.assert_allclose(changed.voxels[k] - plain.voxels[k], 24.0)
    assert sum(not np.array_equal(plain.voxels[i], changed.voxels[i]) for i in range(3)) == 1


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"SeriesInstanceUID": "1.2.3.4"}, Reason.MIXED_SERIES),
        ({"ImageOrientationPatient": [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]}, Reason.MIXED_SERIES),
        ({"ImagePositionPatient": None}, Reason.MISSING_GEOMETRY),
        ({"ImageOrientationPatient": None}, Reason.MISSING_GEOMETRY),
        ({"PixelSpacing": [0.5, 0.5]}, Reason.INCONSISTENT_SLICES),
    ],
)
def test_series_inconsistencies(
    make_ct_series: MakeSeries, read_options: ReadOptions, changes: dict[str, object], reason: Reason
) -> None:
    files = make_ct_series(count=4)
    files[2] = _edit(files[2], **changes)
    assert _reason(lambda: _series(files, read_options)) == reason


def test_series_shape_duplicates_gaps(make_ct_series: MakeSeries, read_options: ReadOptions) -> None:
    files = make_ct_series(count=4, seed=0)
    ds = pydicom.dcmread(io.BytesIO(files[1]))
    small = ds.pixel_array[:64, :64].copy()
    ds.Rows, ds.Columns, ds.PixelData = 64, 64, small.tobytes()
    out = io.BytesIO()
    ds.save_as(out)
    mixed_sizes = [*files[:1], out.getvalue(), *files[2:]]
    assert _reason(lambda: _series(mixed_sizes, read_options)) == Reason.INCONSISTENT_SLICES
    assert _reason(lambda: _series([*files, files[0]], read_options)) == Reason.INCONSISTENT_SLICES  # duplicate
    ordered = sorted(files, key=lambda f: pydicom.dcmread(io.BytesIO(f)).InstanceNumber)
    gap = [ordered[0], ordered[1], ordered[3]]  # slice 2 missing
    assert _reason(lambda: _series(gap, read_options)) == Reason.INCONSISTENT_SLICES


def test_series_single_file_reasons_and_limits(make_ct_series: MakeSeries, read_options: ReadOptions) -> None:
    files = make_ct_series(count=3)
    assert _reason(lambda: _series([files[0][:-100], *files[1:]], read_options)) == Reason.TRUNCATED
    assert _reason(lambda: _series([], read_options)) == Reason.BAD_DIMENSIONS
    assert _reason(lambda: _series(files, _opts(read_options, max_voxels=128 * 128 * 2))) == Reason.BAD_DIMENSIONS
    one = _series(files[:1], read_options)
    assert one.voxels.shape == (1, 128, 128) and one.spacing[0] == pytest.approx(5.0)  # SliceThickness
    with pytest.raises(ValueError, match="sources"):
        read_dicom_series(files, ["only-one"], read_options)


def test_readers_registry_has_all_formats() -> None:
    assert set(readers.names()) >= {"dicom", "png", "jpeg", "nifti"}
