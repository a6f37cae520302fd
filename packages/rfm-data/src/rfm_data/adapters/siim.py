"""SIIM-ACR Pneumothorax Segmentation: DICOMs in study/series folders + ``train-rle.csv`` run-length masks."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from rfm_data import io
from rfm_data.adapters.base import mark_invalid, register_dataset
from rfm_data.adapters.rsna import as_fraction, holdout_split
from rfm_data.errors import ConfigError
from rfm_data.records import SourceItem
from rfm_data.reports import clean_cell, csv_header, iter_csv_rows

SIIM_TABLES = ("train-rle.csv", "stage_2_train.csv")
SIIM_IMAGE_DIRS = ("dicom-images-train", "stage_2_images", "dicom-images-test")
_NO_MASK = "-1"


def decode_siim_rle(encoded: str, width: int = 1024, height: int = 1024) -> np.ndarray:
    """The ``(height, width)`` uint8 mask of one SIIM run-length string (``"-1"`` → empty).

    SIIM's encoding is *relative*: pairs ``(gap, length)`` where each gap counts from the end of the
    previous run, over pixels in column-major order (the image transposed).

    Raises:
        ValueError: an odd number of values, or runs beyond the image.
    """
    flat = np.zeros(width * height, dtype=np.uint8)
    values = [int(v) for v in encoded.split()] if encoded.strip() != _NO_MASK else []
    if len(values) % 2:
        raise ValueError("a SIIM run-length string needs (gap, length) pairs: odd number of values")
    position = 0
    for gap, length in zip(values[::2], values[1::2], strict=True):
        position += gap
        if position < 0 or length < 0 or position + length > flat.size:
            raise ValueError(f"run at {position} (+{length}) lies outside a {width}x{height} image")
        flat[position:position + length] = 1
        position += length
    return flat.reshape(width, height).T.copy()


def _find_table(root: str) -> str:
    for name in SIIM_TABLES:
        if io.exists(io.join(root, name)):
            return io.join(root, name)
    raise ConfigError(f"no {' or '.join(SIIM_TABLES)} in {root}: expected the SIIM-ACR Pneumothorax layout")


def _dicom_index(root: str) -> dict[str, tuple[str, str]]:
    """SOP instance UID (file stem) → (URL, study UID folder), over the study/series/instance trees."""
    index: dict[str, tuple[str, str]] = {}
    for name in SIIM_IMAGE_DIRS:
        folder = io.join(root, name)
        for url in io.list_files(folder, (".dcm",)) if io.exists(folder) else []:
            parts = url.rsplit("/", 3)
            study = parts[-3] if len(parts) == 4 and parts[-3] != name else ""
            index[parts[-1][: -len(".dcm")]] = (url, study)
    return index


def _masks(table: str) -> tuple[dict[str, list[str]], dict[str, str], str]:
    """ImageId → its run-length strings (``[]`` when it has no pneumothorax), problems, the column name."""
    header = csv_header(table)
    # Kaggle's original table names the second column " EncodedPixels" (with a leading space).
    column = next((c for c in header if c.strip() == "EncodedPixels"), "")
    if "ImageId" not in header or not column:
        raise ConfigError(f"{table} lacks ImageId / EncodedPixels: expected SIIM's run-length table")
    masks: dict[str, list[str]] = {}
    problems: dict[str, str] = {}
    for row in iter_csv_rows(table):
        image, rle = clean_cell(row.cells.get("ImageId", "")), clean_cell(row.cells.get(column, ""))
        runs = masks.setdefault(image, [])
        if not rle:
            problems[image] = f"{table.rsplit('/', 1)[-1]} line {row.line}: empty EncodedPixels"
        elif rle != _NO_MASK:
            runs.append(rle)
    return masks, problems, column


@register_dataset("siim_acr_pneumothorax")
def siim_acr_pneumothorax(root: str, holdout: float | str = 0.0) -> Iterator[SourceItem]:
    """SIIM-ACR Pneumothorax (12,047 train DICOMs; Kaggle 2019).

    Layout: ``train-rle.csv`` (ImageId, EncodedPixels; ``-1`` = no pneumothorax; one row per region) or
    stage 2's ``stage_2_train.csv``; DICOMs at ``dicom-images-train/<study>/<series>/<ImageId>.dcm`` (or
    ``stage_2_images/``). Every image of the table is yielded with split ``train``, or ``test`` for the
    ``holdout`` fraction, stable by study folder (SIIM's own test masks were never released; the patient
    id is only in the DICOM header, so a patient with several studies may straddle the split).

    ``sample_id`` is the ImageId (SOP instance UID), ``study_id`` the study folder, ``patient_id`` empty
    here (only the DICOM header has it; the reader fills it, pseudonymised). Label ``Pneumothorax`` 1 when
    the image has a mask. The masks themselves: :func:`decode_siim_rle` on the table's strings.

    Args:
        root: the challenge folder.
        holdout: fraction of studies put in split ``test`` (0 = none).

    Raises:
        ConfigError: no run-length table, or one without ImageId / EncodedPixels.
    """
    fraction = as_fraction(holdout, "holdout")
    masks, problems, _ = _masks(_find_table(root))  # layout errors raise here, before iteration
    return _siim_items(root, masks, problems, _dicom_index(root), fraction)


def _siim_items(root: str, masks: dict[str, list[str]], problems: dict[str, str],
                index: dict[str, tuple[str, str]], holdout: float) -> Iterator[SourceItem]:
    for image, runs in masks.items():
        url, study = index.get(image, (io.join(root, SIIM_IMAGE_DIRS[0], f"{image}.dcm"), ""))
        item = SourceItem(sample_id=image, uri=url, dataset="siim_acr_pneumothorax", fmt="dicom",
                          study_id=study, split=holdout_split(study or image, holdout),
                          labels={"Pneumothorax": int(bool(runs))})
        if image in problems:
            mark_invalid(item, problems[image])
        elif image not in index:
            mark_invalid(item, f"no DICOM {image}.dcm under {' or '.join(SIIM_IMAGE_DIRS[:2])}")
        yield item
