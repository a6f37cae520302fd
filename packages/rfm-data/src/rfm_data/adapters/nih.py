"""NIH ChestX-ray14: ``Data_Entry_2017.csv`` + PNGs, with the official ``train_val_list.txt`` / ``test_list.txt``."""

from __future__ import annotations

from collections.abc import Iterator

from rfm_data import io
from rfm_data.adapters.base import as_bool, mark_invalid, register_dataset
from rfm_data.errors import ConfigError
from rfm_data.records import SourceItem
from rfm_data.reports import CsvRow, clean_cell, csv_header, iter_csv_rows

NIH_TABLES = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")
#: NIH finding → rfm (CheXpert) observation. Mass and Nodule are both CheXpert "Lung Lesion"; Infiltration
#: falls under "Lung Opacity"; Pleural_Thickening under "Pleural Other". Emphysema, Fibrosis and Hernia have
#: no CheXpert counterpart and keep their NIH names.
NIH_TO_RFM = {
    "No Finding": "No Finding", "Atelectasis": "Atelectasis", "Cardiomegaly": "Cardiomegaly",
    "Effusion": "Pleural Effusion", "Infiltration": "Lung Opacity", "Mass": "Lung Lesion",
    "Nodule": "Lung Lesion", "Pneumonia": "Pneumonia", "Pneumothorax": "Pneumothorax",
    "Consolidation": "Consolidation", "Edema": "Edema", "Emphysema": "Emphysema", "Fibrosis": "Fibrosis",
    "Pleural_Thickening": "Pleural Other", "Hernia": "Hernia",
}
_REQUIRED = ("Image Index", "Finding Labels", "Patient ID")


def nih_labels(cell: str, rfm_names: bool = True) -> dict[str, int]:
    """Labels of one ``Finding Labels`` cell (``"Effusion|Mass"``).

    NIH's text-mined labels are exhaustive over its 15 names, so every name not listed is a negative (0);
    with ``rfm_names`` they are mapped to rfm observations (an observation fed by several NIH findings is
    positive when any is).

    Raises:
        ValueError: a finding name NIH does not define (the table is not ChestX-ray14's).
    """
    found = {name.strip() for name in cell.split("|") if name.strip()}
    unknown = sorted(found - set(NIH_TO_RFM))
    if unknown:
        raise ValueError(f"Finding Labels holds names ChestX-ray14 does not define: {unknown}")
    labels: dict[str, int] = {}
    for nih, rfm in NIH_TO_RFM.items():
        key = rfm if rfm_names else nih
        labels[key] = max(labels.get(key, 0), int(nih in found))
    return labels


def _split_lists(root: str) -> dict[str, str]:
    """Image name → ``train`` / ``test`` from the official lists (train_val is ``train``: NIH has no val)."""
    out: dict[str, str] = {}
    for name, split in (("train_val_list.txt", "train"), ("test_list.txt", "test")):
        url = io.join(root, name)
        if io.exists(url):
            out.update(dict.fromkeys((ln.strip() for ln in io.read_text(url).splitlines() if ln.strip()), split))
    return out


def _image_index(root: str) -> dict[str, str]:
    """Image name → URL: ``images/`` (the NIH box release unpacked) or ``images_001/images/`` ... (Kaggle)."""
    fs, path = io.filesystem(root)
    folders = [io.join(root, "images")] if io.exists(io.join(root, "images")) else sorted(
        io.join(root, p.rstrip("/").rsplit("/", 1)[-1], "images") for p in fs.glob(f"{path}/images_*"))
    return {url.rsplit("/", 1)[-1]: url for folder in folders if io.exists(folder)
            for url in io.list_files(folder, (".png",), recursive=False)}


def _nih_item(row: CsvRow, root: str, images: dict[str, str], splits: dict[str, str], width: int,
              rfm_names: bool) -> SourceItem:
    name, patient = clean_cell(row.cells.get("Image Index", "")), clean_cell(row.cells.get("Patient ID", ""))
    follow_up = clean_cell(row.cells.get("Follow-up #", ""))
    item = SourceItem(sample_id=name.rsplit(".", 1)[0] or f"line-{row.line}",
                      uri=images.get(name, io.join(root, "images", name)), dataset="nih_chestxray14",
                      patient_id=patient, study_id=f"{patient}/{follow_up}" if follow_up else "",
                      view=clean_cell(row.cells.get("View Position", "")), split=splits.get(name, ""))
    if not name or not patient:
        mark_invalid(item, f"Data_Entry line {row.line} lacks Image Index or Patient ID")
    elif images and name not in images:
        mark_invalid(item, f"Data_Entry line {row.line}: no image {name} under images/ or images_*/images/")
    if row.width != width:
        mark_invalid(item, f"Data_Entry line {row.line} has {row.width} cells, the header {width}")
    try:
        item.labels = nih_labels(clean_cell(row.cells.get("Finding Labels", "")), rfm_names)
    except ValueError as err:
        mark_invalid(item, f"Data_Entry line {row.line}: {err}")
    return item


@register_dataset("nih_chestxray14")
def nih_chestxray14(root: str, rfm_names: bool | str = True) -> Iterator[SourceItem]:
    """NIH ChestX-ray14 (112,120 frontal PNGs of 30,805 patients).

    Layout: ``Data_Entry_2017.csv`` (or ``Data_Entry_2017_v2020.csv``) with Image Index, Finding Labels,
    Follow-up #, Patient ID, View Position, ...; images in ``images/`` or ``images_001/images/`` ...
    ``images_012/images/``; the official patient-wise split in ``train_val_list.txt`` / ``test_list.txt``.

    ``sample_id`` is the image name without ``.png``, ``patient_id`` the Patient ID, ``study_id``
    ``<patient>/<follow-up>``, ``view`` PA / AP, ``split`` ``train`` (train_val list) or ``test`` ("" when
    the lists are absent). Labels: see :func:`nih_labels`. No reports are public.

    Args:
        root: the dataset folder.
        rfm_names: map findings to rfm observation names (default) or keep NIH's names.

    Raises:
        ConfigError: no Data_Entry table, or one without the ChestX-ray14 columns.
    """
    table = next((io.join(root, t) for t in NIH_TABLES if io.exists(io.join(root, t))), "")
    if not table:
        raise ConfigError(f"no {' or '.join(NIH_TABLES)} in {root}: expected the NIH ChestX-ray14 layout")
    header = csv_header(table)
    missing = [c for c in _REQUIRED if c not in header]
    if missing:
        raise ConfigError(f"{table} lacks columns {missing}: expected NIH ChestX-ray14's Data_Entry table")
    mapped = as_bool(rfm_names, "rfm_names")
    images, splits = _image_index(root), _split_lists(root)
    return (_nih_item(row, root, images, splits, len(header), mapped) for row in iter_csv_rows(table))
