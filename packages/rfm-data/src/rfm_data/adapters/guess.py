"""``guess_dataset``: which adapter reads a SOURCE given without ``--dataset``."""

from __future__ import annotations

from collections.abc import Callable

from rfm_data import io
from rfm_data.adapters.base import is_dir, list_datasets
from rfm_data.adapters.layouts import CHEXPERT_TABLES, MIMIC_PREFIX
from rfm_data.adapters.tables import PUBLIC_TABLE_SOURCES, table_source, table_url
from rfm_data.errors import ConfigError
from rfm_data.reports import csv_header


def _is_table(source: str) -> bool:
    return table_url(source) == source


def _is_mimic(source: str) -> bool:
    names = (f"{MIMIC_PREFIX}metadata.csv", f"{MIMIC_PREFIX}metadata.csv.gz")
    return is_dir(source) and any(io.exists(io.join(source, name)) for name in names)


def _is_chexpert(source: str) -> bool:
    tables = [io.join(source, f"{name}.csv") for name in CHEXPERT_TABLES] if is_dir(source) else []
    return any(io.exists(t) and {"Path", "Frontal/Lateral"} <= set(csv_header(t)) for t in tables)


def _public_table(dataset: str) -> Callable[[str], bool]:
    def detect(source: str) -> bool:
        url = table_url(source)
        return io.exists(url) and table_source(url) == PUBLIC_TABLE_SOURCES[dataset]

    return detect


def _is_image_table(source: str) -> bool:
    if _is_table(source):
        return io.exists(source)
    url = table_url(source)
    return io.exists(url) and "path" in csv_header(url)


# Most specific first: a public layout is also "a folder with a CSV" and "a folder".
DETECTORS: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("sample", lambda source: source == "sample"),
    ("mimic_cxr", _is_mimic),
    ("chexpert", _is_chexpert),
    *((name, _public_table(name)) for name in PUBLIC_TABLE_SOURCES),
    ("image_table", _is_image_table),
    ("dicom_folder", is_dir),
)


def _matches(detect: Callable[[str], bool], source: str) -> bool:
    try:
        return detect(source)
    except (ConfigError, OSError, ValueError):
        return False  # an unreadable marker file means "not this layout"; the next detector decides


def guess_dataset(source: str) -> str:
    """The adapter for ``source``: ``sample`` for the literal ``"sample"``; ``mimic_cxr`` / ``chexpert`` /
    ``covid_chestxray_ieee8023`` / ``pediatric_pneumonia_kermany`` when their marker tables are present;
    ``image_table`` for a CSV file (or a folder whose ``metadata.csv`` has a ``path`` column);
    ``dicom_folder`` for any other folder.

    Raises:
        ConfigError: ``source`` matches no layout (e.g. it does not exist).
    """
    for name, detect in DETECTORS:
        if _matches(detect, source):
            return name
    raise ConfigError(f"cannot tell which dataset {source!r} is (does it exist?): pass --dataset, one of "
                      f"{', '.join(list_datasets())}")
