"""The dataset-adapter registry and the helpers every adapter shares.

An adapter factory is called as ``factory(root, **options)``. It checks the layout at once (raising
:class:`~rfm_data.errors.ConfigError` naming what it expected) and returns an iterator of
:class:`~rfm_data.records.SourceItem`. Iterating never opens an image and never raises for one bad row:
report problems go to ``report_error``, unusable rows to ``error`` (``invalid_record``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from rfm_data import io
from rfm_data.errors import ConfigError, QuarantineError, Reason
from rfm_data.records import Report, SourceItem
from rfm_data.registry import Registry

AdapterFn = Callable[..., Iterator[SourceItem]]
datasets: Registry[Iterator[SourceItem]] = Registry("dataset adapter")
register_dataset = datasets.register

_SPLITS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validate": "val",
           "validation": "val", "dev": "val", "test": "test", "testing": "test"}
_LABEL_VALUES = {"1": 1, "1.0": 1, "0": 0, "0.0": 0, "-1": -1, "-1.0": -1}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def list_datasets(pattern: str = "*") -> list[str]:
    """Names of the registered dataset adapters matching the glob ``pattern``, sorted."""
    return datasets.names(pattern)


def iter_items(name: str, root: str, **options: Any) -> Iterator[SourceItem]:
    """The items of the dataset at ``root``, read with the adapter registered as ``name``.

    Args:
        name: adapter name (:func:`list_datasets`).
        root: dataset root URL or table URL, as the adapter expects (any fsspec URL).
        **options: adapter options; strings are accepted for every option (they come from a CLI).

    Raises:
        ConfigError: unknown adapter or option, or ``root`` is not in the adapter's layout.
    """
    try:
        factory = datasets.get(name)
    except KeyError as err:
        raise ConfigError(err.args[0]) from err
    try:
        inspect.signature(factory).bind(root, **options)
    except TypeError as err:
        known = [p for p in inspect.signature(factory).parameters if p != "root"]
        raise ConfigError(
            f"dataset {name!r} does not take these options ({err}); its options are {known}"
        ) from err
    return factory(root, **options)


def as_bool(value: bool | str, option: str) -> bool:
    """An option that may arrive as a CLI string (``"true"``, ``"0"``, ...)."""
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered not in _TRUE | _FALSE:
        raise ConfigError(f"option {option}={value!r} must be true or false")
    return lowered in _TRUE


def as_names(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """A list option given as a sequence or as one comma-separated string; empty entries dropped."""
    if value is None:
        return ()
    parts = value.split(",") if isinstance(value, str) else value
    return tuple(p.strip() for p in parts if p.strip())


def normalize_split(value: str) -> str:
    """``train`` / ``val`` / ``test`` for common spellings (``validate``, ``valid``, ...), else as given."""
    cleaned = value.strip().lower()
    return _SPLITS.get(cleaned, cleaned)


def label_value(cell: str) -> int | None:
    """A 1 / 0 / -1 label cell (``1.0`` spellings accepted); ``None`` for a blank cell (not mentioned).

    Raises:
        ValueError: any other value.
    """
    cleaned = cell.strip()
    if not cleaned:
        return None
    if cleaned not in _LABEL_VALUES:
        # The value itself stays out of the message: a shifted row can put report text (PHI) here.
        raise ValueError("a label cell holds a value other than 1, 0, -1 or blank")
    return _LABEL_VALUES[cleaned]


def labels_from_columns(cells: dict[str, str], columns: Iterable[str]) -> dict[str, int]:
    """Labels from one column per finding; blank cells are left out.

    Raises:
        ValueError: a cell that is not 1 / 0 / -1 / blank (the message names the column, not the value).
    """
    labels: dict[str, int] = {}
    for column in columns:
        try:
            value = label_value(cells.get(column, ""))
        except ValueError as err:
            raise ValueError(f"column {column!r}: {err}") from err
        if value is not None:
            labels[column] = value
    return labels


def labels_from_list(cell: str, separator: str = "|") -> dict[str, int]:
    """Labels from one cell listing the positive findings (``"Pneumonia|Viral"`` → both 1)."""
    return {name.strip(): 1 for name in cell.split(separator) if name.strip()}


def report_or_error(read: Callable[[], Report]) -> tuple[Report | None, str]:
    """``(report, "")``, or ``(None, reason value)`` when reading the report raises ``QuarantineError``."""
    try:
        return read(), ""
    except QuarantineError as err:
        return None, err.reason.value


def is_absolute(url: str) -> bool:
    """Whether ``url`` names a location by itself (a URL with a protocol or an absolute local path)."""
    return "://" in url or url.startswith("/")


def parent(url: str) -> str:
    """The folder holding ``url`` (``"."`` for a bare file name)."""
    head, sep, _ = url.rstrip("/").rpartition("/")
    return head if sep and head else ("/" if sep else ".")


def resolve(base: str, location: str) -> str:
    """``location`` as is when absolute, else relative to the folder URL ``base``."""
    return location if is_absolute(location) else io.join(base, location)


def require_file(url: str, expected: str) -> str:
    """``url`` if it exists; :class:`ConfigError` saying what was ``expected`` there otherwise."""
    if not io.exists(url):
        raise ConfigError(f"{url} does not exist: expected {expected}")
    return url


def is_dir(url: str) -> bool:
    fs, path = io.filesystem(url)
    return bool(fs.isdir(path))


def mark_invalid(item: SourceItem, detail: str) -> None:
    """Flag ``item`` as an ``invalid_record`` (the first problem found is the one reported)."""
    if not item.error:
        item.error, item.error_detail = Reason.INVALID_RECORD.value, detail
