"""Typed records that flow through ingestion: what a reader returns and what an adapter yields."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ImageMeta:
    """De-identified metadata kept downstream. Identifiers are already pseudonymised (keyed hashes)."""

    modality: str = ""
    view: str = ""
    body_part: str = ""
    pixel_spacing: tuple[float, float] | None = None  # (row, column) mm
    patient_id: str = ""
    study_id: str = ""
    series_id: str = ""
    instance_id: str = ""
    photometric: str = ""
    bits_stored: int = 8
    frames: int = 1
    orig_height: int = 0
    orig_width: int = 0
    transfer_syntax: str = ""
    burned_in_annotation: bool = False


@dataclass
class Image2D:
    """A decoded 2D image: ``pixels`` float32 ``(H, W)`` in [0, 1], display-ready (VOI applied, 0 = black)."""

    pixels: np.ndarray
    meta: ImageMeta


@dataclass
class Volume:
    """A decoded 3D volume: ``voxels`` float32 ``(D, H, W)`` in stored physical units (e.g. HU).

    ``spacing`` is (slice, row, column) in mm; ``direction`` the 3x3 matrix whose columns are the patient-space
    directions of the (column, row, slice) axes; ``origin`` the patient-space position of the first voxel.
    """

    voxels: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[tuple[float, float, float], ...] = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    meta: ImageMeta = field(default_factory=ImageMeta)


@dataclass
class Report:
    """A free-text report split into sections; empty strings for absent sections."""

    indication: str = ""
    comparison: str = ""
    findings: str = ""
    impression: str = ""
    text: str = ""  # the whole normalised report

    def is_empty(self) -> bool:
        return not (self.text or self.findings or self.impression)


@dataclass
class SourceItem:
    """One input sample as a dataset adapter sees it, before any pixel is decoded.

    ``uri`` points at one image file (or a directory for a DICOM series). Adapters fill what their layout
    knows; readers add what the file knows. ``report_error`` lets an adapter pass on a report problem (a
    quarantine reason value) without raising, so the item is still accounted for. ``error`` does the same
    for a row that is unusable as a whole (e.g. ``invalid_record``: a label cell that is not 1/0/-1/blank,
    or a row with more or fewer cells than the table's header); ``error_detail`` says why, without PHI.
    """

    sample_id: str
    uri: str
    dataset: str = ""
    fmt: str = ""  # reader name; "" = detect from the bytes
    patient_id: str = ""
    study_id: str = ""
    view: str = ""
    split: str = ""
    report: Report | None = None
    labels: dict[str, int] = field(default_factory=dict)
    report_error: str = ""
    error: str = ""
    error_detail: str = ""
