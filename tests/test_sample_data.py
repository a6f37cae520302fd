"""The sample bundled in rfm_data/sample_data: every shipped file is listed and attributed under an open
licence, the DICOM headers carry only synthetic identifiers, and the committed files are exactly what
tools/data/make_sample.py produces.
"""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pydicom
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE = REPO_ROOT / "packages" / "rfm-data" / "src" / "rfm_data" / "sample_data"
GENERATOR = REPO_ROOT / "tools" / "data" / "make_sample.py"
DOCS = {"metadata.csv", "ATTRIBUTION.md"}
OPEN_LICENCES = {"CC BY", "CC BY 4.0", "CC BY-SA", "CC0 1.0 (rfm project)"}


def data_files() -> set[str]:
    return {p.relative_to(SAMPLE).as_posix() for p in SAMPLE.rglob("*") if p.is_file()} - DOCS


def metadata_rows() -> list[dict[str, str]]:
    with (SAMPLE / "metadata.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def attribution_rows() -> dict[str, list[str]]:
    """file → the cells of its row in ATTRIBUTION.md's per-file table."""
    rows = {}
    for line in (SAMPLE / "ATTRIBUTION.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("| ") and len(cells) == 6 and cells[0] != "file":
            rows[cells[0]] = cells
    return rows


def test_every_shipped_file_is_listed_once_in_metadata() -> None:
    paths = [row["path"] for row in metadata_rows()]
    assert len(paths) == len(set(paths))
    assert set(paths) == data_files()


def test_every_shipped_file_is_attributed_under_an_open_licence() -> None:
    attributed = attribution_rows()
    assert set(attributed) == data_files()
    licences = {cells[3] for cells in attributed.values()}
    assert licences <= OPEN_LICENCES, f"not an allowed licence: {licences - OPEN_LICENCES}"


def test_dicom_identifiers_are_synthetic() -> None:
    dicoms = sorted((SAMPLE / "dicom").glob("*.dcm"))
    assert len(dicoms) == 6
    for path in dicoms:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert str(ds.PatientName).startswith("SAMPLE^"), path.name
        assert ds.PatientID.startswith("SAMPLE-"), path.name
        assert ds.BodyPartExamined == "CHEST" and ds.Modality in {"CR", "DX"}, path.name


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_sample", GENERATOR)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_committed_sample_is_what_the_generator_builds(shared_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("pylibjpeg", reason="the generator needs the rfm-data[codecs] encoders")
    load_generator().build(shared_data, tmp_path / "sample")
    rebuilt = {
        p.relative_to(tmp_path / "sample").as_posix(): p.read_bytes()
        for p in (tmp_path / "sample").rglob("*")
        if p.is_file()
    }
    committed = {name: (SAMPLE / name).read_bytes() for name in data_files() | DOCS}
    assert rebuilt.keys() == committed.keys()
    differing = sorted(name for name in rebuilt if rebuilt[name] != committed[name])
    assert not differing, f"re-run tools/data/make_sample.py and commit: {differing}"
