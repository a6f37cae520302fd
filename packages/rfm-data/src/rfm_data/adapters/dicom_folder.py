"""``dicom_folder``: every DICOM file under a folder, recursively."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from rfm_data import io
from rfm_data.adapters.base import as_bool, as_names, is_dir, register_dataset
from rfm_data.errors import ConfigError
from rfm_data.records import SourceItem

DICOM_SUFFIXES = (".dcm", ".dicom")


def _relative_files(root: str) -> list[str]:
    """Paths of the files under ``root`` relative to it, sorted; hidden files (``.DS_Store``, ...) skipped."""
    fs, base = io.filesystem(root)
    base = base.rstrip("/")
    relative = (p[len(base):].lstrip("/") for p in fs.find(base))
    return sorted(r for r in relative if r and not any(part.startswith(".") for part in r.split("/")))


def _strip_suffix(relative: str, suffixes: Sequence[str]) -> str:
    lower = relative.lower()
    for suffix in suffixes:
        if lower.endswith(suffix.lower()):
            return relative[: -len(suffix)]
    return relative


@register_dataset("dicom_folder")
def dicom_folder(
    root: str,
    all_files: bool | str = False,
    suffixes: str | Sequence[str] = DICOM_SUFFIXES,
    dataset_name: str = "dicom_folder",
) -> Iterator[SourceItem]:
    """Every DICOM file under ``root``, one item per file, in path order.

    ``sample_id`` is the path relative to ``root`` without its suffix. Patient, study and view are left
    empty: the DICOM reader takes them from the header (pseudonymised) during ingest. Every item is read
    with the ``dicom`` reader, so a non-DICOM file is quarantined as ``not_dicom``.

    Args:
        root: folder URL.
        all_files: include files of any name (many archives store DICOM without a suffix).
        suffixes: file suffixes to include otherwise (a list, or a comma-separated string).
        dataset_name: the ``dataset`` value given to every item.

    Raises:
        ConfigError: ``root`` is not a folder, or holds no matching file.
    """
    if not is_dir(root):
        raise ConfigError(f"{root} is not a folder: expected a folder of DICOM files")
    wanted = as_names(suffixes)
    include_all = as_bool(all_files, "all_files")
    lowered = tuple(s.lower() for s in wanted)
    files = [r for r in _relative_files(root) if include_all or r.lower().endswith(lowered)]
    if not files:
        raise ConfigError(f"no {'/'.join(wanted)} files under {root}: expected a folder of DICOM files "
                          "(all_files=true includes files without a suffix)")
    return (
        SourceItem(_strip_suffix(r, wanted), io.join(root, r), dataset=dataset_name, fmt="dicom")
        for r in files
    )
