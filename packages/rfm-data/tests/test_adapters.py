"""Dataset adapters on the real development data and on small layouts built from its real images."""

from __future__ import annotations

import csv
import gzip
import shutil
from collections import Counter
from collections.abc import Callable
from io import StringIO
from pathlib import Path

import fsspec
import pydicom
import pytest
from PIL import Image

from rfm_data import io
from rfm_data.adapters import datasets, guess_dataset, iter_items, list_datasets
from rfm_data.adapters.tables import sample_root
from rfm_data.errors import ConfigError, Reason
from rfm_data.records import SourceItem

COVID = "covid_chestxray_ieee8023"
KERMANY = "pediatric_pneumonia_kermany"
CHEXPERT_OBSERVATIONS = ["No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity",
                         "Lung Lesion", "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax",
                         "Pleural Effusion",
                         "Pleural Other", "Fracture", "Support Devices"]
MIMIC_REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___M with cough  // ?pna

 FINDINGS:

 Lungs are clear.  No pleural effusion or pneumothorax.

 IMPRESSION:

 No acute cardiopulmonary process.
"""


@pytest.fixture
def real_pngs(shared_data: Path) -> list[Path]:
    """Eight real chest X-ray PNGs of the development data."""
    return sorted((shared_data / COVID / "images").glob("*.png"))[:8]


def _write_csv(path: Path, rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)


def _as_jpeg(png: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(png) as im:
        im.convert("L").save(dest, format="JPEG", quality=90)


def _by_id(items: list[SourceItem]) -> dict[str, SourceItem]:
    return {item.sample_id: item for item in items}


# ------------------------------------------------------------------------------------ registry & helpers
def test_list_datasets_and_unknown_names() -> None:
    expected = {"sample", "dicom_folder", "image_table", COVID, KERMANY, "mimic_cxr", "chexpert"}
    assert expected <= set(list_datasets())
    assert list_datasets("*_cxr") == ["mimic_cxr"]
    with pytest.raises(ConfigError, match=r"known: .*image_table"):
        iter_items("no_such_dataset", "/tmp")
    with pytest.raises(ConfigError, match="options are"):
        iter_items("dicom_folder", "/tmp", colour="blue")
    with pytest.raises(ValueError, match="already registered"):
        datasets.register("image_table")(lambda root: iter([]))


def test_guess_dataset_errors(tmp_path: Path) -> None:
    assert guess_dataset("sample") == "sample"
    with pytest.raises(ConfigError, match="--dataset"):
        guess_dataset(str(tmp_path / "missing"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ConfigError):
        guess_dataset(str(tmp_path / "notes.txt"))


# ------------------------------------------------------------------------------------ public tables (real)
def test_covid_on_the_real_dataset(shared_data: Path) -> None:
    root = str(shared_data / COVID)
    assert guess_dataset(root) == COVID
    assert guess_dataset(f"{root}/metadata.csv") == COVID
    items = list(iter_items(COVID, root))
    assert len(items) == 550 and len(_by_id(items)) == 550
    assert Counter(i.split for i in items) == {"train": 391, "val": 43, "test": 116}
    assert Counter(i.report_error for i in items) == {"": 532, Reason.MISSING_REPORT.value: 18}
    assert not any(i.error for i in items)
    assert all(Path(i.uri).is_file() for i in items)
    first = items[0]
    assert first.labels == {"Pneumonia": 1, "Viral": 1, "COVID-19": 1}
    assert first.patient_id == "ieee8023:2" and first.view == "PA" and first.dataset == COVID
    assert first.report is not None and first.report.findings.startswith("On January 22, 2020, a 65-year-old")
    assert sum(1 for i in items if not i.labels) == 78  # upstream "todo": unlabeled, not negative


def test_kermany_on_the_real_dataset(shared_data: Path) -> None:
    root = str(shared_data / KERMANY)
    assert guess_dataset(root) == KERMANY
    items = list(iter_items(KERMANY, root))
    assert len(items) == 1498
    assert Counter(i.split for i in items) == {"train": 1006, "val": 163, "test": 329}
    assert Counter(tuple(sorted(i.labels)) for i in items) == {
        ("No Finding",): 600, ("Bacterial", "Pneumonia"): 450, ("Pneumonia", "Viral"): 448}
    assert all(i.report is None and not i.report_error and not i.error for i in items)


def test_public_adapters_refuse_the_other_layout(shared_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="kermany_pediatric_pneumonia"):
        iter_items(COVID, str(shared_data / KERMANY))
    with pytest.raises(ConfigError, match="expected the covid"):
        iter_items(COVID, str(tmp_path))


def _csv_line(cells: list[str]) -> str:
    buffer = StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue()


def test_covid_layout_with_bad_rows(shared_data: Path, tmp_path: Path) -> None:
    """A small copy of the layout: a non-UTF-8 note, a missing image, a row shifted by an unquoted comma."""
    source = shared_data / COVID
    with (source / "metadata.csv").open(encoding="utf-8", newline="") as f:
        header, *rows = list(csv.reader(f))[:5]
    path_col, report_col = header.index("image_path"), header.index("report")
    (tmp_path / "images").mkdir()
    for row in rows[:3]:
        shutil.copy(source / row[path_col], tmp_path / row[path_col])
    rows[3][path_col] = "images/not_there.png"
    rows[1][report_col] = "Opacité basale gauche"
    shifted = [*rows[0][:report_col], "Bilateral opacities", " worse on the left", *rows[0][report_col + 1:]]
    shifted[0] = "extra_row"
    data = b"".join(
        _csv_line(row).encode("latin-1" if i == 2 else "utf-8")
        for i, row in enumerate([header, *rows, shifted])
    )
    (tmp_path / "metadata.csv").write_bytes(data)

    items = list(iter_items(COVID, str(tmp_path)))
    assert len(items) == 5
    assert items[0].report is not None and not items[0].report_error
    assert items[1].report is None and items[1].report_error == Reason.NON_UTF8_REPORT.value
    assert items[3].uri.endswith("images/not_there.png") and not Path(items[3].uri).exists()
    assert not items[3].error  # the reader quarantines it as unreadable_url during ingest
    assert items[4].error == Reason.INVALID_RECORD.value and "unquoted comma" in items[4].error_detail
    assert all(Path(i.uri).exists() for i in items[:3])


# ------------------------------------------------------------------------------------ image_table
@pytest.fixture
def image_folder(real_pngs: list[Path], tmp_path: Path, make_dicom: Callable[..., bytes]) -> Path:
    """``images/`` with real PNGs, a JPEG re-encoding and a DICOM built from a real image."""
    root = tmp_path / "site"
    (root / "images").mkdir(parents=True)
    for png in real_pngs[:3]:
        shutil.copy(png, root / "images" / png.name)
    _as_jpeg(real_pngs[3], root / "images" / "frontal.jpg")
    (root / "images" / "study.dcm").write_bytes(make_dicom())
    return root


def test_image_table_free_text_reports_and_label_lists(image_folder: Path, real_pngs: list[Path]) -> None:
    outside = image_folder.parent / "elsewhere.png"
    shutil.copy(real_pngs[4], outside)
    pngs = sorted(p.name for p in (image_folder / "images").glob("*.png"))
    _write_csv(image_folder / "metadata.csv", [
        ["path", "patient_id", "study_id", "view", "split", "labels", "report"],
        [f"images/{pngs[0]}", "p1", "s1", "PA", "Validate", "Cardiomegaly|Edema",
         "FINDINGS: Big heart.\nIMPRESSION: CHF."],
        ["images/frontal.jpg", "p1", "s2", "AP", "train", "", "Lungs clear."],
        ["images/study.dcm", "p2", "s3", "", "test", "No Finding", ""],
        [str(outside), "p3", "s4", "PA", "", "Nodule", "   "],
    ])
    assert guess_dataset(str(image_folder)) == "image_table"
    assert guess_dataset(str(image_folder / "metadata.csv")) == "image_table"
    items = list(iter_items("image_table", str(image_folder), dataset_name="site_a"))
    expected_ids = [f"images/{pngs[0]}", "images/frontal.jpg", "images/study.dcm", str(outside)]
    assert [i.sample_id for i in items] == expected_ids
    assert all(Path(i.uri).is_file() and i.dataset == "site_a" for i in items)
    assert items[0].split == "val" and items[0].labels == {"Cardiomegaly": 1, "Edema": 1}
    assert items[0].report is not None and items[0].report.impression == "CHF."
    assert items[1].labels == {}
    assert items[1].report is not None and items[1].report.findings == "Lungs clear."
    assert [i.report_error for i in items] == ["", "", "missing_report", "empty_report"]
    assert pydicom.dcmread(items[2].uri).Modality  # the path points at the real DICOM


def test_image_table_label_columns(image_folder: Path) -> None:
    png = next((image_folder / "images").glob("*.png")).name
    _write_csv(image_folder / "table.csv", [
        ["file", "id", "Edema", "Pleural Effusion", "Atelectasis", "group"],
        [f"images/{png}", "a", "1", "0.0", "", "x"],
        ["images/frontal.jpg", "b", "-1.0", "1.0", "0", "x"],
        ["images/study.dcm", "c", "2", "", "", "x"],
    ])
    items = list(iter_items("image_table", str(image_folder / "table.csv"), path_column="file",
                            id_column="id",
                            label_columns="Edema, Pleural Effusion,Atelectasis"))
    by_id = _by_id(items)
    assert by_id["a"].labels == {"Edema": 1, "Pleural Effusion": 0}
    assert by_id["b"].labels == {"Edema": -1, "Pleural Effusion": 1, "Atelectasis": 0}
    assert by_id["c"].error == Reason.INVALID_RECORD.value and "'Edema'" in by_id["c"].error_detail
    assert all(i.report is None and not i.report_error for i in items)  # this table has no reports


def test_image_table_section_columns_gzip(image_folder: Path) -> None:
    path = image_folder / "reports.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([
            ["path", "indication", "findings", "impression", "split"],
            ["images/frontal.jpg", "Cough", "Heart size normal.", "No acute disease.", "TEST"],
            ["images/study.dcm", "Fever", "", "", "train"],
        ])
    items = list(iter_items("image_table", str(path)))
    report = items[0].report
    assert report is not None and (report.indication, report.findings) == ("Cough", "Heart size normal.")
    assert report.text == "INDICATION: Cough\nFINDINGS: Heart size normal.\nIMPRESSION: No acute disease."
    assert items[0].split == "test"
    assert items[1].report_error == Reason.EMPTY_REPORT.value


def test_image_table_configuration_errors(image_folder: Path) -> None:
    with pytest.raises(ConfigError, match=r"metadata\.csv"):
        iter_items("image_table", str(image_folder))
    _write_csv(image_folder / "metadata.csv", [["image", "labels"], ["images/frontal.jpg", ""]])
    with pytest.raises(ConfigError, match="path_column"):
        iter_items("image_table", str(image_folder))
    with pytest.raises(ConfigError, match="'Edema'"):
        iter_items("image_table", str(image_folder), path_column="image", label_columns=["Edema"])
    with pytest.raises(ConfigError, match="'text'"):
        iter_items("image_table", str(image_folder), path_column="image", report_column="text")


def test_image_table_empty_path_and_memory_urls(real_pngs: list[Path]) -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe_file("/adapters-test/images/a.png", real_pngs[0].read_bytes())
    table = "path,sample_id,report\nimages/a.png,,Clear.\n,orphan,Clear.\n"
    fs.pipe_file("/adapters-test/metadata.csv", table.encode())
    items = list(iter_items("image_table", "memory://adapters-test"))
    assert items[0].sample_id == "images/a.png" and io.read_bytes(items[0].uri) == real_pngs[0].read_bytes()
    assert items[1].sample_id == "orphan" and items[1].error == Reason.INVALID_RECORD.value
    assert "empty 'path'" in items[1].error_detail
    fs.rm("/adapters-test", recursive=True)


# ------------------------------------------------------------------------------------ dicom_folder
def test_dicom_folder(tmp_path: Path, make_dicom: Callable[..., bytes]) -> None:
    root = tmp_path / "pacs"
    for rel in ("a/1.dcm", "a/b/2.DCM", "c/3.dicom", "c/noext", ".hidden/4.dcm", "a/._5.dcm"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(make_dicom())
    (root / "a" / "notes.txt").write_text("not an image")
    assert guess_dataset(str(root)) == "dicom_folder"
    items = list(iter_items("dicom_folder", str(root)))
    assert [i.sample_id for i in items] == ["a/1", "a/b/2", "c/3"]
    assert all(i.fmt == "dicom" and i.patient_id == "" and i.dataset == "dicom_folder" for i in items)
    assert all(pydicom.dcmread(i.uri).SOPInstanceUID for i in items)
    everything = list(iter_items("dicom_folder", f"file://{root}/", all_files="true"))
    assert [i.sample_id for i in everything] == ["a/1", "a/b/2", "a/notes.txt", "c/3", "c/noext"]
    assert everything[0].uri == f"file://{root}/a/1.dcm" and io.exists(everything[0].uri)


def test_dicom_folder_wrong_roots(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"png")
    with pytest.raises(ConfigError, match="not a folder"):
        iter_items("dicom_folder", str(tmp_path / "x.png"))
    with pytest.raises(ConfigError, match="all_files=true"):
        iter_items("dicom_folder", str(tmp_path))
    with pytest.raises(ConfigError, match="true or false"):
        iter_items("dicom_folder", str(tmp_path), all_files="maybe")


# ------------------------------------------------------------------------------------ MIMIC-CXR-JPG
def _mimic_layout(root: Path, reports: Path, pngs: list[Path], gz: bool = False) -> None:
    images = [("10000032", "50414267", "02aa804e-bde0afdd-112c0b34-7bc16630-4e384014", "PA"),
              ("10000032", "50414267", "174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962", "LATERAL"),
              ("10000032", "53189527", "2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab", "AP"),
              ("10000898", "56699142", "ea030e7a-2e3b1346-bc518786-7a8fd698-f673b44c", "AP")]
    splits = ["train", "train", "validate", "test"]
    for i, (subject, study, dicom, _) in enumerate(images[:3]):  # the last image is missing on disk
        _as_jpeg(pngs[i], root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom}.jpg")
    tables = {
        "metadata": [["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription",
                      "ViewPosition"], *[[d, s, st, "CHEST (PA AND LAT)", v] for s, st, d, v in images]],
        "split": [["dicom_id", "study_id", "subject_id", "split"],
                  *[[d, st, s, sp] for (s, st, d, _), sp in zip(images, splits, strict=True)]],
        "chexpert": [["subject_id", "study_id", *CHEXPERT_OBSERVATIONS],
                     ["10000032", "50414267", *(["1.0"] + [""] * 13)],
                     ["10000032", "53189527", *(["", "-1.0", "1.0", "0.0"] + [""] * 10)]],
    }
    for name, rows in tables.items():
        path = root / f"mimic-cxr-2.0.0-{name}.csv"
        _write_csv(path, rows)
        if gz:
            path.with_suffix(".csv.gz").write_bytes(gzip.compress(path.read_bytes()))
            path.unlink()
    report_dir = reports / "files" / "p10" / "p10000032"
    report_dir.mkdir(parents=True)
    (report_dir / "s50414267.txt").write_text(MIMIC_REPORT, encoding="utf-8")
    (report_dir / "s53189527.txt").write_bytes("Épanchement pleural gauche.".encode("latin-1"))


@pytest.mark.parametrize("gz", [False, True])
def test_mimic_cxr(tmp_path: Path, real_pngs: list[Path], gz: bool) -> None:
    root, reports = tmp_path / "mimic-cxr-jpg", tmp_path / "mimic-cxr"
    _mimic_layout(root, reports, real_pngs, gz)
    assert guess_dataset(str(root)) == "mimic_cxr"
    items = list(iter_items("mimic_cxr", str(root), reports_root=str(reports)))
    assert [i.split for i in items] == ["train", "train", "val", "test"]
    assert [i.view for i in items] == ["PA", "LATERAL", "AP", "AP"]
    assert [Path(i.uri).is_file() for i in items] == [True, True, True, False]
    first = items[0]
    assert first.patient_id == "10000032" and first.study_id == "50414267" and first.dataset == "mimic_cxr"
    assert first.labels == {"No Finding": 1} and items[1].labels == first.labels
    assert items[2].labels == {"Enlarged Cardiomediastinum": -1, "Cardiomegaly": 1, "Lung Opacity": 0}
    assert items[3].labels == {}  # no label row: nothing mentioned
    assert first.report is not None and first.report.impression == "No acute cardiopulmonary process."
    assert first.report.indication == "___M with cough // ?pna"
    assert [i.report_error for i in items] == ["", "", "non_utf8_report", "missing_report"]
    bare = list(iter_items("mimic_cxr", str(root), with_reports="false", labeler="none"))
    assert all(i.report is None and not i.report_error and not i.labels for i in bare)


def test_mimic_cxr_missing_tables(tmp_path: Path, real_pngs: list[Path]) -> None:
    root = tmp_path / "mimic"
    _mimic_layout(root, tmp_path / "reports", real_pngs)
    with pytest.raises(ConfigError, match="negbio"):
        iter_items("mimic_cxr", str(root), labeler="negbio")
    (root / "mimic-cxr-2.0.0-split.csv").unlink()
    with pytest.raises(ConfigError, match="split"):
        iter_items("mimic_cxr", str(root))


# ------------------------------------------------------------------------------------ CheXpert
def _chexpert_layout(root: Path, pngs: list[Path]) -> None:
    header = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_OBSERVATIONS]
    mixed = ["", "-1.0", "", "1.0"] + ["0.0"] * 10
    train = [("train/patient00001/study1/view1_frontal.jpg", "Frontal", "AP", ["1.0"] + [""] * 13),
             ("train/patient00002/study2/view1_frontal.jpg", "Frontal", "PA", mixed),
             ("train/patient00002/study2/view2_lateral.jpg", "Lateral", "", mixed)]
    valid = [("valid/patient64541/study1/view1_frontal.jpg", "Frontal", "AP", ["0.0"] * 13 + ["yes"])]
    for i, (rel, _, _, _) in enumerate(train + valid):
        _as_jpeg(pngs[i], root / rel)
    for name, rows in (("train", train), ("valid", valid)):
        table = [[f"CheXpert-v1.0-small/{rel}", "Female", "68", fl, ap, *labels]
                 for rel, fl, ap, labels in rows]
        _write_csv(root / f"{name}.csv", [header, *table])


def test_chexpert(tmp_path: Path, real_pngs: list[Path]) -> None:
    root = tmp_path / "CheXpert-v1.0-small"
    _chexpert_layout(root, real_pngs)
    assert guess_dataset(str(root)) == "chexpert"
    items = _by_id(list(iter_items("chexpert", str(root))))
    assert list(items) == [
        "train/patient00001/study1/view1_frontal", "train/patient00002/study2/view1_frontal",
        "train/patient00002/study2/view2_lateral", "valid/patient64541/study1/view1_frontal"]
    assert all(Path(i.uri).is_file() and i.report is None and not i.report_error for i in items.values())
    first = items["train/patient00001/study1/view1_frontal"]
    assert (first.patient_id, first.study_id) == ("patient00001", "patient00001/study1")
    assert (first.view, first.split) == ("AP", "train")
    assert first.labels == {"No Finding": 1}
    lateral = items["train/patient00002/study2/view2_lateral"]
    assert lateral.view == "LATERAL" and lateral.labels["Enlarged Cardiomediastinum"] == -1
    assert lateral.labels["Lung Opacity"] == 1 and "No Finding" not in lateral.labels
    assert len(lateral.labels) == 12  # 14 observations, 2 blank
    valid = items["valid/patient64541/study1/view1_frontal"]
    assert valid.split == "val" and valid.error == Reason.INVALID_RECORD.value
    assert [i.split for i in iter_items("chexpert", str(root), tables="valid")] == ["val"]
    with pytest.raises(ConfigError, match=r"test\.csv"):
        iter_items("chexpert", str(root), tables="train,test")
    with pytest.raises(ConfigError, match="CheXpert layout"):
        iter_items("chexpert", str(tmp_path))


# ------------------------------------------------------------------------------------ bundled sample
def test_sample_dataset() -> None:
    folder = Path(sample_root())
    if not (folder / "metadata.csv").is_file():
        pytest.skip(f"the bundled sample is not in this checkout yet ({folder})")
    items = list(iter_items("sample", "sample"))
    assert items and all(i.dataset == "sample" for i in items)
    assert len(_by_id(items)) == len(items)
    assert all(Path(i.uri).exists() for i in items if "/images/" in i.uri)
    assert {i.split for i in items} <= {"train", "val", "test", ""}
    assert any(i.report is not None and (i.report.findings or i.report.impression) for i in items)
    with pytest.raises(ConfigError, match="bundled"):
        iter_items("sample", str(folder))
