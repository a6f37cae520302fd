"""3D readers: NIfTI-1/2 files (nibabel) and DICOM series → :class:`~rfm_data.records.Volume`.

Axis convention (both readers): ``voxels[k, j, i]`` is slice ``k``, row ``j``, column ``i``; ``spacing`` is
(slice, row, column) in mm; ``direction`` is the 3x3 matrix (as a tuple of rows) whose columns are the unit
vectors of the column, row and slice axes in DICOM patient space (LPS+: x to the patient's left, y to the
posterior, z to the head); ``origin`` is the LPS position of voxel (0, 0, 0) in mm. NIfTI stores RAS+
world coordinates, so its affine is flipped on x and y to LPS; voxel ``(i, j, k)`` of the NIfTI array lands
at ``voxels[k, j, i]``. Values are in stored physical units (scl_slope/inter, or RescaleSlope/Intercept:
HU for CT). With this convention ``origin + direction @ (i*sc, j*sr, k*ss)`` is a voxel's position.
"""

from __future__ import annotations

import importlib
import struct
import zlib
from collections.abc import Sequence
from dataclasses import replace
from types import ModuleType
from typing import Any

import numpy as np

from rfm_data.config import DicomConfig, FramePolicy
from rfm_data.errors import QuarantineError, Reason
from rfm_data.readers import ReadOptions, readers
from rfm_data.readers.dicom import DicomFile, image_meta, modality_values, open_dicom
from rfm_data.records import ImageMeta, Volume

THREE_D_HINT = 'install the 3D extra: pip install "rfm-data[3d]"'
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])
_GZIP_MAGIC = b"\x1f\x8b"
_HEADER_BYTES = 4096  # NIfTI header + extensions are read in full before any voxel is inflated
Matrix3 = tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]]


# ------------------------------------------------------------------------------------------------ NIfTI
def _nibabel() -> ModuleType:
    try:
        return importlib.import_module("nibabel")
    except ImportError:
        raise QuarantineError(Reason.CODEC_MISSING, f"NIfTI needs nibabel: {THREE_D_HINT}") from None


def _inflate(data: bytes, limit: int) -> bytes:
    """Gunzip at most ``limit`` bytes: a gzip bomb costs ``limit``, not its claimed size."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        raw = inflater.decompress(data, limit)
    except zlib.error:
        raise QuarantineError(Reason.CORRUPT_IMAGE, "gzip stream is corrupt") from None
    if inflater.unconsumed_tail:
        raise QuarantineError(Reason.BAD_DIMENSIONS, f"NIfTI inflates to more than {limit} bytes")
    if not inflater.eof:
        raise QuarantineError(Reason.TRUNCATED, "gzip stream ends early")
    return raw


def _nifti_class(nib: ModuleType, raw: bytes) -> Any:
    """Nifti1Image or Nifti2Image from sizeof_hdr and the magic; single-file (``n+1``/``n+2``) only."""
    for endian in "<>":
        size = struct.unpack_from(f"{endian}i", raw, 0)[0] if len(raw) >= 4 else 0
        if size == 348 and raw[344:348] == b"n+1\x00":
            return nib.Nifti1Image
        if size == 540 and raw[4:8] == b"n+2\x00":
            return nib.Nifti2Image
    raise QuarantineError(Reason.CORRUPT_IMAGE, "not a single-file NIfTI-1/2 image (no n+1 / n+2 magic)")


def _volume_index(shape: tuple[int, ...], policy: FramePolicy) -> int | None:
    """Which 3D volume of a 4D image to keep (None for 3D); dims beyond 4 must be singletons."""
    if len(shape) > 4 and any(n != 1 for n in shape[4:]):
        raise QuarantineError(Reason.BAD_DIMENSIONS, f"{len(shape)}-D image with non-singleton extra axes")
    count = shape[3] if len(shape) >= 4 else 1
    if count == 1:
        return 0 if len(shape) >= 4 else None
    index = {FramePolicy.FIRST: 0, FramePolicy.MIDDLE: count // 2}.get(policy)
    if index is None:
        raise QuarantineError(Reason.NOT_2D, f"4D image ({count} volumes) and frame policy {policy.value}")
    return index


def _check_voxels(shape: Sequence[int], cfg: DicomConfig) -> None:
    if any(n < 1 for n in shape):
        raise QuarantineError(Reason.BAD_DIMENSIONS, "every axis must have >= 1 voxel")
    if max(shape) > cfg.max_side:
        raise QuarantineError(Reason.BAD_DIMENSIONS, f"an axis exceeds max_side={cfg.max_side}")
    if int(np.prod(shape, dtype=np.int64)) > cfg.max_voxels:
        raise QuarantineError(Reason.BAD_DIMENSIONS, f"voxel count exceeds max_voxels={cfg.max_voxels}")


def _as_tuple3(m: np.ndarray) -> Matrix3:
    rows = [tuple(float(v) for v in row) for row in m]
    return (rows[0][0], rows[0][1], rows[0][2]), (rows[1][0], rows[1][1], rows[1][2]), \
        (rows[2][0], rows[2][1], rows[2][2])


def _affine_geometry(affine: np.ndarray, zooms: Sequence[float]) -> tuple[tuple[float, float, float], Matrix3,
                                                                           tuple[float, float, float]]:
    """(spacing as (slice, row, col), direction, origin) in LPS from a NIfTI RAS affine."""
    lps = _RAS_TO_LPS @ np.asarray(affine, dtype=np.float64)[:3]
    norms = np.linalg.norm(lps[:, :3], axis=0)
    if not np.all(np.isfinite(lps)) or np.any(norms <= 0):  # degenerate affine: keep the pixdim spacing only
        direction, norms = np.eye(3), np.abs(np.asarray(zooms[:3], dtype=np.float64))
    else:
        direction = lps[:, :3] / norms
    spacing = (float(norms[2]), float(norms[1]), float(norms[0]))
    origin = (float(lps[0, 3]), float(lps[1, 3]), float(lps[2, 3]))
    return spacing, _as_tuple3(direction), origin


def _nifti_image(data: bytes, cfg: DicomConfig) -> Any:
    nib = _nibabel()
    limit = cfg.max_voxels * 8 + _HEADER_BYTES  # float64 voxels are the largest NIfTI stores
    raw = _inflate(data, limit) if data.startswith(_GZIP_MAGIC) else data
    cls = _nifti_class(nib, raw)
    try:
        return cls.from_bytes(raw)
    except Exception as err:  # nibabel raises several types for malformed headers
        raise QuarantineError(Reason.CORRUPT_IMAGE, f"NIfTI header is invalid ({type(err).__name__})") from None


def _nifti_voxels(img: Any, index: int | None) -> np.ndarray:
    try:
        proxy = img.dataobj if index is None else img.dataobj[:, :, :, index]
        arr = np.asarray(proxy, dtype=np.float32)  # the proxy applies scl_slope / scl_inter
    except Exception as err:  # short data surfaces as ValueError/OSError from the array proxy
        raise QuarantineError(Reason.TRUNCATED, f"voxel data could not be read ({type(err).__name__})") from None
    while arr.ndim > 3:
        arr = arr[..., 0]
    arr = arr.reshape(arr.shape + (1,) * (3 - arr.ndim))  # 1D/2D images become one-slice volumes
    return np.ascontiguousarray(arr.transpose(2, 1, 0))  # (i, j, k) → (slice, row, column)


@readers.register("nifti")
def read_nifti(data: bytes, source: str, options: ReadOptions) -> Volume:
    """Decode a ``.nii`` or ``.nii.gz`` (NIfTI-1 or NIfTI-2, single file) into a :class:`Volume`.

    Args:
        data: The file's bytes, gzipped or not.
        source: Where they came from (not parsed).
        options: ``options.dicom.max_side`` / ``max_voxels`` bound memory (checked from the header, and
            while inflating); ``options.dicom.frame`` picks the volume of a 4D image (first / middle /
            quarantine).

    Returns:
        ``Volume`` with float32 voxels (slice, row, column) in the file's physical units and LPS geometry
        (see the module docstring). ``meta.frames`` is the number of volumes in the file.

    Raises:
        QuarantineError: ``CODEC_MISSING`` (no nibabel), ``CORRUPT_IMAGE``, ``TRUNCATED``,
            ``BAD_DIMENSIONS`` or ``NOT_2D`` (4D with the quarantine policy).
    """
    img = _nifti_image(data, options.dicom)
    shape = tuple(int(n) for n in img.shape)
    _check_voxels(shape[:3], options.dicom)
    index = _volume_index(shape, options.dicom.frame)
    voxels = _nifti_voxels(img, index)
    spacing, direction, origin = _affine_geometry(img.affine, img.header.get_zooms())
    _, rows, cols = voxels.shape
    meta = ImageMeta(frames=shape[3] if len(shape) >= 4 else 1, orig_height=rows, orig_width=cols,
                     bits_stored=int(img.header.get_data_dtype().itemsize * 8))
    return Volume(voxels=voxels, spacing=spacing, origin=origin, direction=direction, meta=meta)


# ---------------------------------------------------------------------------------------------- series
def _floats(dcm: DicomFile, keyword: str, count: int) -> np.ndarray:
    try:
        values = np.array([float(v) for v in dcm.dataset.get(keyword) or ()], dtype=np.float64)
    except (TypeError, ValueError):
        values = np.empty(0)
    if values.size != count or not np.all(np.isfinite(values)):
        raise QuarantineError(Reason.MISSING_GEOMETRY, f"a slice has no valid {keyword}")
    return values


def _text(dcm: DicomFile, keyword: str) -> str:
    return str(dcm.dataset.get(keyword, "") or "").strip()


def _check_same_series(slices: Sequence[DicomFile]) -> np.ndarray:
    """All slices: one series, one orientation, one shape and pixel spacing. Returns the orientation (6,)."""
    if len({_text(s, "SeriesInstanceUID") for s in slices}) > 1:
        raise QuarantineError(Reason.MIXED_SERIES, "slices belong to more than one SeriesInstanceUID")
    orientations = np.stack([_floats(s, "ImageOrientationPatient", 6) for s in slices])
    if np.abs(orientations - orientations[0]).max() > 1e-4:
        raise QuarantineError(Reason.MIXED_SERIES, "slices have different ImageOrientationPatient")
    if len({(s.geometry.rows, s.geometry.cols, s.geometry.frames) for s in slices}) > 1:
        raise QuarantineError(Reason.INCONSISTENT_SLICES, "slices have different sizes")
    if any(s.geometry.frames != 1 or s.geometry.samples != 1 for s in slices):
        raise QuarantineError(Reason.INCONSISTENT_SLICES, "series slices must be single-frame grayscale")
    spacings = {tuple(_floats(s, "PixelSpacing", 2).round(6)) for s in slices}
    if len(spacings) > 1:
        raise QuarantineError(Reason.INCONSISTENT_SLICES, "slices have different PixelSpacing")
    first: np.ndarray = orientations[0]
    return first


def _thickness(dcm: DicomFile) -> float:
    try:
        value = float(dcm.dataset.get("SliceThickness") or 1.0)
    except (TypeError, ValueError):
        return 1.0
    return value if np.isfinite(value) and value > 0 else 1.0


def _slice_order(slices: Sequence[DicomFile], normal: np.ndarray) -> tuple[np.ndarray, float]:
    """Indices sorting slices along ``normal`` and the spacing between them, from ImagePositionPatient."""
    positions = np.array([_floats(s, "ImagePositionPatient", 3) @ normal for s in slices])
    order = np.argsort(positions, kind="stable")
    if len(slices) == 1:  # one slice: no positions to difference, the nominal thickness is all there is
        return order, _thickness(slices[0])
    gaps = np.diff(positions[order])
    spacing = float(np.median(gaps))
    if gaps.min() < 1e-3:
        raise QuarantineError(Reason.INCONSISTENT_SLICES, "two slices share a position")
    if np.abs(gaps - spacing).max() > max(0.01, 0.01 * spacing):  # 1 %: a missing slice doubles a gap
        raise QuarantineError(Reason.INCONSISTENT_SLICES, "uneven slice spacing (a slice may be missing)")
    return order, spacing


def _series_meta(first: DicomFile, slices: Sequence[DicomFile], options: ReadOptions) -> ImageMeta:
    meta = image_meta(first, options)
    # A volume is no single SOP instance: its identity is the series.
    return replace(meta, instance_id="", frames=len(slices), burned_in_annotation=any(s.burned_in for s in slices))


def read_dicom_series(files: Sequence[bytes], sources: Sequence[str], options: ReadOptions) -> Volume:
    """Assemble one DICOM series (one file per slice, any order) into a :class:`Volume` in physical units.

    Slices are sorted by ImagePositionPatient projected on the slice normal (the cross product of the two
    ImageOrientationPatient direction cosines); the slice spacing comes from those positions, not from
    SliceThickness (which describes the beam, not the grid, and is often wrong). Each slice's own
    RescaleSlope/Intercept is applied, so CT voxels are HU.

    Args:
        files: Each slice's bytes.
        sources: Where each came from, same order (for the caller; not parsed).
        options: As for :func:`~rfm_data.readers.dicom.read_dicom`; ``dicom.max_voxels`` bounds the volume.

    Returns:
        ``Volume`` (LPS geometry, see the module docstring); ids pseudonymised, ``meta.frames`` = slices.

    Raises:
        QuarantineError: any single-file DICOM reason, or ``MIXED_SERIES``, ``MISSING_GEOMETRY``,
            ``INCONSISTENT_SLICES``, ``BAD_DIMENSIONS`` (empty or too large).
    """
    if len(files) != len(sources):
        raise ValueError(f"{len(files)} files but {len(sources)} sources")
    if not files:
        raise QuarantineError(Reason.BAD_DIMENSIONS, "the series has no slices")
    slices = [open_dicom(data, options) for data in files]
    orientation = _check_same_series(slices)
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = np.cross(row_dir, col_dir)
    order, slice_spacing = _slice_order(slices, normal)
    _check_voxels((len(slices), slices[0].geometry.rows, slices[0].geometry.cols), options.dicom)
    voxels = np.empty((len(slices), slices[0].geometry.rows, slices[0].geometry.cols), dtype=np.float32)
    for k, i in enumerate(order):  # decode straight into place, one slice at a time
        voxels[k] = modality_values(slices[i])
    first = slices[int(order[0])]
    row_spacing, col_spacing = _floats(first, "PixelSpacing", 2)
    direction = _as_tuple3(np.stack([row_dir, col_dir, normal], axis=1))
    origin = _floats(first, "ImagePositionPatient", 3)
    return Volume(voxels=voxels, spacing=(slice_spacing, float(row_spacing), float(col_spacing)),
                  origin=(float(origin[0]), float(origin[1]), float(origin[2])), direction=direction,
                  meta=_series_meta(first, slices, options))


__all__ = ["THREE_D_HINT", "read_dicom_series", "read_nifti"]
