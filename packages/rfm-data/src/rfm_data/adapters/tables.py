"""Table-driven adapters: ``image_table`` (a CSV listing images), the public layouts built on it
(``covid_chestxray_ieee8023``, ``pediatric_pneumonia_kermany``) and the bundled ``sample``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources

from rfm_data import io
from rfm_data.adapters.base import (
    as_names,
    labels_from_columns,
    labels_from_list,
    mark_invalid,
    normalize_split,
    parent,
    register_dataset,
    report_or_error,
    resolve,
)
from rfm_data.errors import ConfigError
from rfm_data.records import Report, SourceItem
from rfm_data.reports import (
    CsvRow,
    clean_cell,
    csv_header,
    iter_csv_rows,
    report_from_sections,
    report_from_text,
)

DEFAULT_COLUMNS: Mapping[str, str] = {
    "path": "path", "sample_id": "sample_id", "patient_id": "patient_id", "study_id": "study_id",
    "view": "view", "split": "split", "labels": "labels", "report": "report", "findings": "findings",
    "impression": "impression", "indication": "indication", "comparison": "comparison",
}
_SECTION_FIELDS = ("findings", "impression", "indication", "comparison")
_TABLE_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zst")
PUBLIC_TABLE_SOURCES: Mapping[str, str] = {
    # dataset adapter → the value of the ``source`` column in its metadata.csv (the layout's marker)
    "covid_chestxray_ieee8023": "ieee8023_covid_chestxray",
    "pediatric_pneumonia_kermany": "kermany_pediatric_pneumonia",
}


@dataclass(frozen=True)
class TableLayout:
    """How the columns of one table map onto :class:`SourceItem` fields ("" = not in this table)."""

    url: str
    dataset: str
    columns: Mapping[str, str]
    width: int  # header length
    label_columns: tuple[str, ...] = ()
    label_separator: str = "|"
    fmt: str = ""


def table_url(root: str, table: str = "metadata.csv") -> str:
    """``root`` when it is a CSV file URL, else ``root/<table>``."""
    return root if root.lower().endswith(_TABLE_SUFFIXES) else io.join(root, table)


def open_table(root: str, table: str, expected: str) -> tuple[str, list[str]]:
    """The table URL under ``root`` and its header; :class:`ConfigError` naming ``expected`` otherwise."""
    url = table_url(root, table)
    if not io.exists(url):
        raise ConfigError(f"no table at {url}: expected {expected}")
    header = csv_header(url)
    if not header:
        raise ConfigError(f"{url} is empty: expected {expected}")
    return url, header


def resolve_columns(header: Sequence[str], requested: Mapping[str, str | None], url: str) -> dict[str, str]:
    """Column per field: an option the caller set must exist; a default is used only when present.

    ``None`` means "the default name if the table has it", ``""`` disables the field.
    """
    columns: dict[str, str] = {}
    for field, default in DEFAULT_COLUMNS.items():
        name = requested.get(field)
        if name is None:
            columns[field] = default if default in header else ""
        elif name and name not in header:
            raise ConfigError(f"{url} has no column {name!r} (option {field}); its columns: {list(header)}")
        else:
            columns[field] = name
    if not columns["path"]:
        raise ConfigError(f"{url} has no {DEFAULT_COLUMNS['path']!r} column: name the image column with "
                          f"path_column=...; its columns are {list(header)}")
    return columns


def _cell(row: CsvRow, layout: TableLayout, field: str) -> str:
    column = layout.columns.get(field, "")
    return clean_cell(row.cells.get(column, "")) if column else ""


def _row_report(row: CsvRow, layout: TableLayout) -> tuple[Report | None, str]:
    columns = layout.columns
    if columns["findings"] or columns["impression"]:
        sections = {kind: row.cells.get(columns[kind]) if columns[kind] else None for kind in _SECTION_FIELDS}
        return report_or_error(lambda: report_from_sections(sections))
    if columns["report"]:
        return report_or_error(lambda: report_from_text(row.cells.get(columns["report"])))
    return None, ""  # the table has no reports: nothing is wrong with the row


def _row_labels(row: CsvRow, layout: TableLayout) -> dict[str, int]:
    if layout.label_columns:
        return labels_from_columns({c: clean_cell(row.cells.get(c, "")) for c in layout.label_columns},
                                   layout.label_columns)
    return labels_from_list(_cell(row, layout, "labels"), layout.label_separator)


def row_item(row: CsvRow, layout: TableLayout) -> SourceItem:
    """The :class:`SourceItem` of one table row; never raises (problems go to the item's error fields)."""
    location = _cell(row, layout, "path")
    item = SourceItem(
        sample_id=_cell(row, layout, "sample_id") or location or f"line-{row.line}",
        uri=resolve(parent(layout.url), location) if location else "",
        dataset=layout.dataset, fmt=layout.fmt,
        patient_id=_cell(row, layout, "patient_id"), study_id=_cell(row, layout, "study_id"),
        view=_cell(row, layout, "view"), split=normalize_split(_cell(row, layout, "split")),
    )
    item.report, item.report_error = _row_report(row, layout)
    if row.width != layout.width:
        mark_invalid(item, f"line {row.line} has {row.width} cells but the header has {layout.width} "
                           "(an unquoted comma in a text cell?)")
    if not location:
        mark_invalid(item, f"line {row.line} has an empty {layout.columns['path']!r} cell")
    try:
        item.labels = _row_labels(row, layout)
    except ValueError as err:
        mark_invalid(item, f"line {row.line}: {err}")
    return item


def iter_table(layout: TableLayout) -> Iterator[SourceItem]:
    """Stream the items of a table, one per data row."""
    for row in iter_csv_rows(layout.url):
        yield row_item(row, layout)


@register_dataset("image_table")
def image_table(
    root: str,
    table: str = "metadata.csv",
    dataset_name: str = "image_table",
    path_column: str | None = None,
    id_column: str | None = None,
    patient_column: str | None = None,
    study_column: str | None = None,
    view_column: str | None = None,
    split_column: str | None = None,
    labels_column: str | None = None,
    label_columns: str | Sequence[str] | None = None,
    label_separator: str = "|",
    report_column: str | None = None,
    findings_column: str | None = None,
    impression_column: str | None = None,
    indication_column: str | None = None,
    comparison_column: str | None = None,
    fmt: str = "",
) -> Iterator[SourceItem]:
    """A CSV table listing images (PNG, JPEG, DICOM, ...), one row per image.

    Default columns: ``path`` (required; relative to the table's folder, or an absolute URL),
    ``sample_id`` (default: the path cell), ``patient_id``, ``study_id``, ``view``, ``split``,
    ``labels`` (``|``-separated positive findings), and the report as free text in ``report`` or as
    sections in ``findings`` / ``impression`` (+ ``indication``, ``comparison``), which win when present.
    Every ``*_column`` option renames a column (it must then exist; ``""`` ignores the field).

    Args:
        root: the table URL (``.csv``, ``.csv.gz``), or a folder holding ``table``.
        table: the table's file name inside a ``root`` folder.
        dataset_name: the ``dataset`` value given to every item.
        label_columns: one column per finding holding 1 / 0 / -1 / blank, instead of ``labels``
            (a list, or a comma-separated string).
        label_separator: separator of the ``labels`` column.
        fmt: reader name forced on every item (``""``: detect from the file's bytes).

    Returns:
        The items, streamed from the table.

    Raises:
        ConfigError: no table at ``root``, no path column, or a named column is missing.
    """
    url, header = open_table(root, table, "a CSV table with a 'path' column (a .csv URL, or a folder holding "
                                          f"{table})")
    requested = {"path": path_column, "sample_id": id_column, "patient_id": patient_column,
                 "study_id": study_column, "view": view_column, "split": split_column,
                 "labels": labels_column, "report": report_column, "findings": findings_column,
                 "impression": impression_column, "indication": indication_column,
                 "comparison": comparison_column}
    per_label = as_names(label_columns)
    missing = [c for c in per_label if c not in header]
    if missing:
        raise ConfigError(f"{url} has no label column(s) {missing}; its columns are {header}")
    layout = TableLayout(url, dataset_name, resolve_columns(header, requested, url), len(header), per_label,
                         label_separator, fmt)
    return iter_table(layout)


def table_source(url: str) -> str:
    """The ``source`` cell of the first row of a public-layout ``metadata.csv`` (``""`` if none)."""
    for row in iter_csv_rows(url):
        return clean_cell(row.cells.get("source", ""))
    return ""


def _public_table(root: str, dataset: str, report_column: str) -> Iterator[SourceItem]:
    marker = PUBLIC_TABLE_SOURCES[dataset]
    expected = f"the {dataset} layout: metadata.csv with image_path, image_id, source={marker}, ..."
    url, header = open_table(root, "metadata.csv", expected)
    needed = ["image_path", "image_id", "patient_id", "study_id", "split", "view", "labels", "source"]
    missing = [c for c in needed if c not in header]
    found = table_source(url) if not missing else ""
    if missing or found != marker:
        problem = f"lacks columns {missing}" if missing else f"holds source {found!r}"
        raise ConfigError(f"{url} {problem}: expected {expected}")
    requested = {"path": "image_path", "sample_id": "image_id", "report": report_column,
                 **{f: "" for f in ("findings", "impression", "indication", "comparison")}}
    return iter_table(TableLayout(url, dataset, resolve_columns(header, requested, url), len(header)))


@register_dataset("covid_chestxray_ieee8023")
def covid_chestxray_ieee8023(root: str) -> Iterator[SourceItem]:
    """The COVID-19 image data collection (Cohen et al.) as prepared in ``covid_chestxray_ieee8023/``.

    Labels are the upstream diagnoses, ``|``-separated and hierarchical (``Pneumonia|Viral|COVID-19``),
    each kept as a positive label; the report is the upstream clinical note (headerless: findings).

    Args:
        root: the dataset folder (holding ``metadata.csv`` and ``images/``) or its ``metadata.csv``.
    """
    return _public_table(root, "covid_chestxray_ieee8023", "report")


@register_dataset("pediatric_pneumonia_kermany")
def pediatric_pneumonia_kermany(root: str) -> Iterator[SourceItem]:
    """The pediatric pneumonia CXRs of Kermany et al. as prepared in ``pediatric_pneumonia_kermany/``.

    Labels: ``No Finding``, ``Pneumonia`` + ``Bacterial`` or ``Viral``. The dataset has no reports.

    Args:
        root: the dataset folder (holding ``metadata.csv`` and ``images/``) or its ``metadata.csv``.
    """
    return _public_table(root, "pediatric_pneumonia_kermany", "")


def sample_root() -> str:
    """Folder of the sample dataset shipped inside the package (``rfm_data/sample_data``)."""
    return str(resources.files("rfm_data").joinpath("sample_data"))


@register_dataset("sample")
def sample(root: str = "") -> Iterator[SourceItem]:
    """The small sample dataset bundled with rfm-data (an ``image_table`` over its ``metadata.csv``).

    Args:
        root: ``""`` or ``"sample"``; the sample's location comes from the installed package.
    """
    if root not in ("", "sample"):
        raise ConfigError(f"the sample dataset is bundled with rfm-data: pass SOURCE 'sample', not {root!r}")
    folder = sample_root()
    url = table_url(folder)
    if not io.exists(url):
        raise ConfigError(f"the bundled sample is missing from this installation: expected {url}")
    return image_table(folder, dataset_name="sample")
