"""Synthetic CT phantoms with exact geometry, written as NIfTI files or DICOM series.

For tests, smoke runs and docs when no patient volume may be used: an ellipsoid "body" of soft tissue in air
with two "lungs", an optional "lesion" and a bright marker voxel block in one corner (so orientation errors
show), in HU, on a known grid (spacing, direction, origin). Writing then reading back through
:mod:`rfm_data.readers.volume` must reproduce the :class:`~rfm_data.records.Volume` exactly (HU are integers).
"""

from __future__ import annotations

import gzip
import io as pyio
from dataclasses import dataclass

import numpy as np

from rfm_data import io
from rfm_data.records import Volume

__all__ = ["PhantomSpec", "ct_phantom", "write_dicom_series", "write_nifti"]

_AIR, _SOFT, _LUNG, _LESION, _MARKER = -1000.0, 40.0, -850.0, 60.0, 1000.0
_CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_UID_ROOT = "1.2.826.0.1.3680043.10.1443."  # a private test root; never collides with scanner UIDs


@dataclass(frozen=True)
class PhantomSpec:
    """A phantom: grid ``shape`` (slices, rows, cols), ``spacing`` (mm, same order), ``origin`` (LPS mm),
    ``lesion`` (a 60 HU sphere in the right lung) and ``body`` (semi-axes as fractions of the field of view)."""

    shape: tuple[int, int, int] = (24, 32, 32)
    spacing: tuple[float, float, float] = (2.5, 0.8, 0.8)
    origin: tuple[float, float, float] = (-12.4, -12.4, 0.0)
    lesion: bool = False
    body: tuple[float, float, float] = (0.45, 0.40, 0.45)


def ct_phantom(spec: PhantomSpec | None = None) -> Volume:
    """An axial chest-like phantom in HU with identity (LPS-axial) direction; see the module docstring."""
    spec = spec or PhantomSpec()
    d, h, w = spec.shape
    k, j, i = np.meshgrid(np.linspace(-0.5, 0.5, d), np.linspace(-0.5, 0.5, h), np.linspace(-0.5, 0.5, w),
                          indexing="ij")
    voxels = np.full(spec.shape, _AIR, dtype=np.float32)
    bk, bj, bi = spec.body
    voxels[(k / bk) ** 2 + (j / bj) ** 2 + (i / bi) ** 2 <= 1] = _SOFT
    for side in (-1, 1):  # two lungs left and right of the midline
        voxels[(k / (0.8 * bk)) ** 2 + (j / (0.6 * bj)) ** 2 + ((i - side * 0.2) / 0.15) ** 2 <= 1] = _LUNG
    if spec.lesion:
        voxels[k ** 2 + (j + 0.05) ** 2 + (i + 0.2) ** 2 <= 0.07 ** 2] = _LESION
    voxels[:2, :2, :2] = _MARKER  # first slice, first row, first column: makes flips visible
    return Volume(voxels=voxels, spacing=spec.spacing, origin=spec.origin)


def _nifti_affine(volume: Volume) -> np.ndarray:
    """NIfTI RAS affine of ``volume``: NIfTI index (i, j, k) = (column, row, slice)."""
    direction = np.asarray(volume.direction, dtype=np.float64)
    ss, sr, sc = volume.spacing
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2] = direction[:, 0] * sc, direction[:, 1] * sr, direction[:, 2] * ss
    lps[:3, 3] = volume.origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def write_nifti(volume: Volume, url: str) -> None:
    """Write ``volume`` as a NIfTI-1 file (``.nii`` or gzipped ``.nii.gz``) with int16 voxels at ``url``."""
    import nibabel as nib  # the 3d extra; imported here so the module loads without it

    data = np.rint(volume.voxels).astype(np.int16).transpose(2, 1, 0)  # (slice, row, col) → (i, j, k)
    img = nib.Nifti1Image(data, _nifti_affine(volume))  # type: ignore[no-untyped-call]
    img.header.set_xyzt_units("mm")  # type: ignore[no-untyped-call]
    raw = img.to_bytes()
    io.write_bytes(url, gzip.compress(raw, mtime=0) if url.endswith(".gz") else raw)


def _slice_dataset(volume: Volume, k: int, series_uid: str, study_uid: str) -> bytes:
    """One CT slice (uint16 stored = HU + 1024, RescaleIntercept -1024) as DICOM Part 10 bytes."""
    from pydicom.dataset import Dataset as DicomDataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID

    direction = np.asarray(volume.direction, dtype=np.float64)
    position = np.asarray(volume.origin) + direction[:, 2] * volume.spacing[0] * k
    ds = DicomDataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(_CT_STORAGE)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(f"{series_uid}.{k + 1}")
    ds.file_meta.TransferSyntaxUID = UID(_EXPLICIT_LE)
    ds.SOPClassUID, ds.SOPInstanceUID = _CT_STORAGE, f"{series_uid}.{k + 1}"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.Modality, ds.PatientID, ds.InstanceNumber = "CT", "PHANTOM", k + 1
    ds.ImageOrientationPatient = [float(v) for v in (*direction[:, 0], *direction[:, 1])]
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.PixelSpacing = [float(volume.spacing[1]), float(volume.spacing[2])]
    ds.SliceThickness = float(volume.spacing[0])
    ds.Rows, ds.Columns = volume.voxels.shape[1:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1.0, -1024.0
    ds.BurnedInAnnotation = "NO"
    ds.PixelData = (np.rint(volume.voxels[k]) + 1024).clip(0, 65535).astype("<u2").tobytes()
    buf = pyio.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def write_dicom_series(volume: Volume, folder: str, series: int = 1) -> list[str]:
    """Write ``volume`` as one CT DICOM file per slice under ``folder`` (any fsspec URL); returns the URLs.

    ``series`` makes the UIDs unique when several phantoms are written.
    """
    series_uid, study_uid = f"{_UID_ROOT}{series}.2", f"{_UID_ROOT}{series}.1"
    urls = []
    for k in range(volume.voxels.shape[0]):
        url = io.join(folder, f"slice-{k:04d}.dcm")
        io.write_bytes(url, _slice_dataset(volume, k, series_uid, study_uid))
        urls.append(url)
    return urls
