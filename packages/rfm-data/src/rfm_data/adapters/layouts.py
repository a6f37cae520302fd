"""Adapters for the large public CXR layouts: ``mimic_cxr`` (MIMIC-CXR-JPG) and ``chexpert``."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from rfm_data import io
from rfm_data.adapters.base import (
    as_bool,
    as_names,
    labels_from_columns,
    mark_invalid,
    normalize_split,
    register_dataset,
    report_or_error,
)
from rfm_data.errors import ConfigError
from rfm_data.records import Report, SourceItem
from rfm_data.reports import (
    CsvRow,
    clean_cell,
    csv_header,
    iter_csv_rows,
    mimic_report_url,
    read_mimic_report,
)

MIMIC_PREFIX = "mimic-cxr-2.0.0-"
_MIMIC_KEYS = ("subject_id", "study_id")
CHEXPERT_TABLES = {"train": "train", "valid": "val", "test": "test"}  # table name → split
_CHEXPERT_FIXED = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA")
_CHEXPERT_IDS = re.compile(r"(patient\d+)(?:/(study\d+))?")


def find_mimic_table(root: str, name: str) -> str:
    """``<root>/mimic-cxr-2.0.0-<name>.csv`` or its ``.csv.gz`` (as PhysioNet ships it)."""
    for suffix in (".csv", ".csv.gz"):
        url = io.join(root, f"{MIMIC_PREFIX}{name}{suffix}")
        if io.exists(url):
            return url
    raise ConfigError(f"no {MIMIC_PREFIX}{name}.csv(.gz) in {root}: expected the MIMIC-CXR-JPG layout "
                      "(metadata, split and label tables beside files/pXX/)")


def _mimic_splits(url: str) -> dict[str, str]:
    return {clean_cell(r.cells.get("dicom_id", "")): normalize_split(r.cells.get("split", ""))
            for r in iter_csv_rows(url)}


def _mimic_labels(url: str) -> dict[tuple[str, str], dict[str, int] | str]:
    """(subject, study) → labels, or the reason the study's label row is invalid."""
    columns = [c for c in csv_header(url) if c not in _MIMIC_KEYS]
    out: dict[tuple[str, str], dict[str, int] | str] = {}
    for row in iter_csv_rows(url):
        key = (clean_cell(row.cells.get("subject_id", "")), clean_cell(row.cells.get("study_id", "")))
        try:
            out[key] = labels_from_columns({c: clean_cell(row.cells.get(c, "")) for c in columns}, columns)
        except ValueError as err:
            out[key] = f"{url.rsplit('/', 1)[-1]} line {row.line}: {err}"
    return out


@dataclass
class _MimicContext:
    root: str
    reports_root: str  # "" = no reports
    splits: dict[str, str]
    labels: dict[tuple[str, str], dict[str, int] | str]
    width: int
    suffix: str
    last_report: tuple[str, tuple[Report | None, str]] = ("", (None, ""))

    def report(self, subject: str, study: str) -> tuple[Report | None, str]:
        # Rows of one study are adjacent in the metadata table: a one-entry cache reads each report once.
        if not self.reports_root:
            return None, ""
        if self.last_report[0] != study:
            url = mimic_report_url(self.reports_root, subject, study)
            self.last_report = (study, report_or_error(lambda: read_mimic_report(url)))
        return self.last_report[1]


def _mimic_item(row: CsvRow, ctx: _MimicContext) -> SourceItem:
    dicom, subject, study = (clean_cell(row.cells.get(k, "")) for k in ("dicom_id", *_MIMIC_KEYS))
    item = SourceItem(
        sample_id=dicom or f"line-{row.line}", dataset="mimic_cxr", patient_id=subject, study_id=study,
        uri=io.join(ctx.root, "files", f"p{subject[:2]}", f"p{subject}", f"s{study}", f"{dicom}{ctx.suffix}"),
        view=clean_cell(row.cells.get("ViewPosition", "")), split=ctx.splits.get(dicom, ""),
    )
    if not (dicom and subject and study):
        mark_invalid(item, f"metadata line {row.line} lacks dicom_id, subject_id or study_id")
        return item
    if row.width != ctx.width:
        mark_invalid(item, f"metadata line {row.line} has {row.width} cells, the header {ctx.width}")
    labels = ctx.labels.get((subject, study), {})
    if isinstance(labels, str):
        mark_invalid(item, labels)
    else:
        item.labels = dict(labels)
    item.report, item.report_error = ctx.report(subject, study)
    return item


@register_dataset("mimic_cxr")
def mimic_cxr(
    root: str,
    reports_root: str | None = None,
    with_reports: bool | str = True,
    labeler: str = "chexpert",
    image_suffix: str = ".jpg",
) -> Iterator[SourceItem]:
    """MIMIC-CXR-JPG: tables ``mimic-cxr-2.0.0-{metadata,split,<labeler>}.csv(.gz)``, images in ``files/``.

    ``sample_id`` is the dicom_id, ``patient_id`` / ``study_id`` the subject and study numbers, ``view``
    the ViewPosition, ``split`` train / val / test (``validate`` → ``val``). Labels come from the labeler
    table per study (1 / 0 / -1; blank = not mentioned). Reports are MIMIC-CXR's
    ``files/pXX/pN/sM.txt``; a missing, empty or non-UTF-8 one sets ``report_error``.

    Args:
        root: the MIMIC-CXR-JPG folder (holding the tables and ``files/``).
        reports_root: the MIMIC-CXR folder holding the report ``files/`` tree (default: ``root``).
        with_reports: ``False`` to skip reports (items get none and no report error).
        labeler: ``chexpert`` or ``negbio`` (the label table to read), or ``none``.
        image_suffix: suffix of the image files (``.jpg``; ``.dcm`` for the DICOM release).

    Raises:
        ConfigError: the metadata, split or label table is missing.
    """
    metadata = find_mimic_table(root, "metadata")
    labels = {} if labeler == "none" else _mimic_labels(find_mimic_table(root, labeler))
    reports = (reports_root or root) if as_bool(with_reports, "with_reports") else ""
    header = csv_header(metadata)
    if "dicom_id" not in header:
        raise ConfigError(f"{metadata} has no dicom_id column: expected the MIMIC-CXR-JPG metadata table")
    ctx = _MimicContext(root, reports, _mimic_splits(find_mimic_table(root, "split")), labels, len(header),
                        image_suffix)
    return (_mimic_item(row, ctx) for row in iter_csv_rows(metadata))


def _chexpert_relative(location: str) -> str:
    """The CSV's ``Path`` relative to the dataset folder: its first part names that folder itself."""
    first, sep, rest = location.partition("/")
    return rest if sep and first.startswith("CheXpert-v1.0") else location


def _chexpert_view(row: CsvRow) -> str:
    projection = clean_cell(row.cells.get("AP/PA", ""))
    return projection or clean_cell(row.cells.get("Frontal/Lateral", "")).upper()


def _chexpert_item(row: CsvRow, root: str, split: str, labels: Sequence[str], width: int) -> SourceItem:
    relative = _chexpert_relative(clean_cell(row.cells.get("Path", "")))
    ids = _CHEXPERT_IDS.search(relative)
    patient, study = (ids.group(1), ids.group(2) or "") if ids else ("", "")
    item = SourceItem(
        sample_id=relative.rsplit(".", 1)[0] or f"{split}-line-{row.line}", uri=io.join(root, relative),
        dataset="chexpert", patient_id=patient, study_id=f"{patient}/{study}" if study else "",
        view=_chexpert_view(row), split=split,
    )
    if not relative:
        mark_invalid(item, f"{split} table line {row.line} has an empty Path")
    if row.width != width:
        mark_invalid(item, f"{split} table line {row.line} has {row.width} cells, the header {width}")
    try:
        item.labels = labels_from_columns({c: clean_cell(row.cells.get(c, "")) for c in labels}, labels)
    except ValueError as err:
        mark_invalid(item, f"{split} table line {row.line}: {err}")
    return item


def _chexpert_items(root: str, tables: Sequence[tuple[str, str, list[str]]]) -> Iterator[SourceItem]:
    for url, split, header in tables:
        labels = [c for c in header if c not in _CHEXPERT_FIXED]
        for row in iter_csv_rows(url):
            yield _chexpert_item(row, root, split, labels, len(header))


@register_dataset("chexpert")
def chexpert(root: str, tables: str | Sequence[str] | None = None) -> Iterator[SourceItem]:
    """CheXpert: ``train.csv`` / ``valid.csv`` (/ ``test.csv``) with Path, Sex, Age, Frontal/Lateral, AP/PA
    and one column per observation (1.0 / 0.0 / -1.0 / blank).

    ``sample_id`` is the image path inside the dataset folder without suffix
    (``train/patient00001/study1/view1_frontal``), ``patient_id`` ``patient00001``, ``study_id``
    ``patient00001/study1``, ``view`` the AP/PA cell (``LATERAL`` for laterals), ``split`` from the table
    (``valid`` → ``val``). CheXpert has no public reports: items carry none (and no report error).

    Args:
        root: the dataset folder (``CheXpert-v1.0-small/`` or ``CheXpert-v1.0/``).
        tables: which tables to read (``train``, ``valid``, ``test``); default: those present.

    Raises:
        ConfigError: a requested table is missing (or none is present), or a table has no Path column.
    """
    wanted = as_names(tables) or tuple(t for t in CHEXPERT_TABLES if io.exists(io.join(root, f"{t}.csv")))
    if not wanted:
        raise ConfigError(f"no train.csv, valid.csv or test.csv in {root}: expected the CheXpert layout")
    unknown = [t for t in wanted if t not in CHEXPERT_TABLES]
    if unknown:
        raise ConfigError(f"unknown CheXpert table(s) {unknown}: choose from {list(CHEXPERT_TABLES)}")
    found = []
    for name in wanted:
        url = io.join(root, f"{name}.csv")
        header = csv_header(url) if io.exists(url) else []
        if "Path" not in header:
            raise ConfigError(f"{url} is missing or has no Path column: expected the CheXpert layout")
        found.append((url, CHEXPERT_TABLES[name], header))
    return _chexpert_items(root, found)
