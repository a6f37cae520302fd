"""RSNA Pneumonia Detection Challenge: ``stage_2_train_labels.csv`` + DICOMs named by patientId."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from rfm_data import io
from rfm_data.adapters.base import as_bool, mark_invalid, register_dataset
from rfm_data.errors import ConfigError
from rfm_data.records import SourceItem
from rfm_data.reports import clean_cell, csv_header, iter_csv_rows

RSNA_LABELS = "stage_2_train_labels.csv"
RSNA_CLASSES = "stage_2_detailed_class_info.csv"
RSNA_TRAIN, RSNA_TEST = "stage_2_train_images", "stage_2_test_images"
#: detailed class → labels beyond Pneumonia (from Target). "No Lung Opacity / Not Normal" images have other
#: abnormalities: neither No Finding nor Lung Opacity.
_CLASS_LABELS = {
    "Normal": {"No Finding": 1, "Lung Opacity": 0},
    "No Lung Opacity / Not Normal": {"No Finding": 0, "Lung Opacity": 0},
    "Lung Opacity": {"No Finding": 0, "Lung Opacity": 1},
}


def holdout_split(key: str, fraction: float) -> str:
    """``test`` for a stable pseudo-random ``fraction`` of keys (by SHA-1 of ``key``), else ``train``.

    For layouts without an official labelled test split: the same key always lands on the same side, so
    every image of one patient (the key) stays together and re-ingestion gives the same split.
    """
    bucket = int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big") / 2**64
    return "test" if bucket < fraction else "train"


def as_fraction(value: float | str, option: str) -> float:
    """A fraction option in [0, 1) that may arrive as a CLI string."""
    try:
        fraction = float(value)
    except ValueError as err:
        raise ConfigError(f"option {option}={value!r} must be a number in [0, 1)") from err
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"option {option}={value!r} must be in [0, 1), e.g. 0.2 to hold out 20 %")
    return fraction


@dataclass
class _Image:
    target: int | None = None
    boxes: int = 0
    problem: str = ""
    extra: dict[str, int] = field(default_factory=dict)


def _read_targets(url: str) -> dict[str, _Image]:
    """patientId → target and box count (one row per box; Target is the same on every row of an image)."""
    images: dict[str, _Image] = {}
    for row in iter_csv_rows(url):
        pid, target = clean_cell(row.cells.get("patientId", "")), clean_cell(row.cells.get("Target", ""))
        image = images.setdefault(pid or f"line-{row.line}", _Image())
        if target not in ("0", "1") or not pid:
            image.problem = image.problem or f"{RSNA_LABELS} line {row.line}: patientId empty or Target not 0/1"
            continue
        if image.target is not None and image.target != int(target):
            image.problem = f"{RSNA_LABELS} line {row.line}: Target differs between rows of {pid}"
        image.target = int(target)
        image.boxes += int(target)
    return images


def _add_classes(root: str, images: dict[str, _Image]) -> None:
    url = io.join(root, RSNA_CLASSES)
    if not io.exists(url):
        return
    for row in iter_csv_rows(url):
        pid, name = clean_cell(row.cells.get("patientId", "")), clean_cell(row.cells.get("class", ""))
        if pid in images:
            if name in _CLASS_LABELS:
                images[pid].extra = dict(_CLASS_LABELS[name])
            else:
                images[pid].problem = images[pid].problem or f"{RSNA_CLASSES} line {row.line}: unknown class"


def _train_items(root: str, images: dict[str, _Image], holdout: float) -> Iterator[SourceItem]:
    for pid, image in images.items():
        item = SourceItem(sample_id=pid, uri=io.join(root, RSNA_TRAIN, f"{pid}.dcm"),
                          dataset="rsna_pneumonia", fmt="dicom", patient_id=pid,
                          split=holdout_split(pid, holdout))
        if image.problem:
            mark_invalid(item, image.problem)
        if image.target is not None:
            item.labels = {"Pneumonia": image.target, **image.extra}
        yield item


def _test_items(root: str) -> Iterator[SourceItem]:
    folder = io.join(root, RSNA_TEST)
    for url in io.list_files(folder, (".dcm",), recursive=False) if io.exists(folder) else []:
        pid = url.rsplit("/", 1)[-1][: -len(".dcm")]
        yield SourceItem(sample_id=pid, uri=url, dataset="rsna_pneumonia", fmt="dicom", patient_id=pid,
                         split="challenge_test")


@register_dataset("rsna_pneumonia")
def rsna_pneumonia(root: str, with_test: bool | str = False, holdout: float | str = 0.0
                   ) -> Iterator[SourceItem]:
    """RSNA Pneumonia Detection Challenge (stage 2: 26,684 labelled DICOMs, one per patient).

    Layout: ``stage_2_train_labels.csv`` (patientId, x, y, width, height, Target; one row per box),
    optional ``stage_2_detailed_class_info.csv`` (patientId, class), DICOMs in
    ``stage_2_train_images/<patientId>.dcm`` and ``stage_2_test_images/``.

    ``sample_id`` and ``patient_id`` are the patientId (one image per patient), ``split`` ``train``, or
    ``test`` for the ``holdout`` fraction (the challenge's own test images are unlabelled, so a labelled
    test split has to be held out of its train set: stable by patientId, see :func:`holdout_split`).
    Labels: ``Pneumonia`` from Target; with the class table also ``No Finding`` and ``Lung Opacity``.
    Bounding boxes are not carried (rfm items hold image-level labels); the view comes from the DICOM header when read.

    Args:
        root: the challenge folder.
        with_test: also yield the unlabelled challenge test DICOMs (split ``challenge_test``).
        holdout: fraction of labelled patients put in split ``test`` (0 = none).

    Raises:
        ConfigError: no label table, or one without patientId / Target.
    """
    url = io.join(root, RSNA_LABELS)
    if not io.exists(url):
        raise ConfigError(f"no {RSNA_LABELS} in {root}: expected the RSNA Pneumonia Detection layout")
    missing = [c for c in ("patientId", "Target") if c not in csv_header(url)]
    if missing:
        raise ConfigError(f"{url} lacks columns {missing}: expected the RSNA stage 2 label table")
    images = _read_targets(url)
    _add_classes(root, images)
    items = _train_items(root, images, as_fraction(holdout, "holdout"))
    if as_bool(with_test, "with_test"):
        return (item for part in (items, _test_items(root)) for item in part)
    return items
