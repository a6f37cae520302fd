"""NIH ChestX-ray14, RSNA Pneumonia and SIIM-ACR Pneumothorax adapters on tiny fixtures in each exact layout
(real CXR PNGs from the bundled sample; real DICOMs built with pydicom)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from rfm_data.adapters import iter_items, list_datasets
from rfm_data.adapters.nih import nih_labels
from rfm_data.adapters.rsna import holdout_split
from rfm_data.adapters.siim import decode_siim_rle
from rfm_data.config import DeidConfig, IngestConfig
from rfm_data.errors import ConfigError, Reason
from rfm_data.ingest import ingest
from rfm_data.readers import ReadOptions, read_image
from rfm_data.records import Image2D

SAMPLE_IMAGES = Path(__file__).resolve().parents[1] / "src" / "rfm_data" / "sample_data" / "images"

NIH_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
              "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],")
NIH_ROWS = [
    "00000001_000.png,Cardiomegaly,0,1,58,M,PA,2682,2749,0.143,0.143,",
    "00000001_001.png,Cardiomegaly|Emphysema|Mass,1,1,58,M,PA,2894,2729,0.143,0.143,",
    "00000002_000.png,No Finding,0,2,81,M,AP,2500,2048,0.171,0.171,",
    "00000003_000.png,Effusion|Nodule,0,3,74,F,PA,2500,2048,0.168,0.168,",
]


def _nih_root(tmp_path: Path, kaggle: bool = False) -> Path:
    root = tmp_path / "nih"
    sources = sorted(SAMPLE_IMAGES.glob("*.png"))
    for i, row in enumerate(NIH_ROWS):
        folder = root / (f"images_00{i // 2 + 1}/images" if kaggle else "images")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(sources[i], folder / row.split(",")[0])
    (root / "Data_Entry_2017.csv").write_text("\n".join([NIH_HEADER, *NIH_ROWS]) + "\n")
    (root / "train_val_list.txt").write_text("00000001_000.png\n00000001_001.png\n00000002_000.png\n")
    (root / "test_list.txt").write_text("00000003_000.png\n")
    return root


@pytest.mark.parametrize("kaggle", [False, True])
def test_nih_layout_labels_splits_and_images(tmp_path: Path, kaggle: bool, read_options: ReadOptions) -> None:
    items = list(iter_items("nih_chestxray14", str(_nih_root(tmp_path, kaggle))))
    assert [i.sample_id for i in items] == ["00000001_000", "00000001_001", "00000002_000", "00000003_000"]
    assert not any(i.error for i in items)
    first, second, normal, test = items
    assert first.patient_id == second.patient_id == "1" and second.study_id == "1/1"
    assert [i.split for i in items] == ["train", "train", "train", "test"]
    assert normal.view == "AP" and normal.labels["No Finding"] == 1 and normal.labels["Cardiomegaly"] == 0
    assert second.labels["Lung Lesion"] == 1 and second.labels["Emphysema"] == 1  # Mass → Lung Lesion
    assert test.labels["Pleural Effusion"] == 1 and test.labels["Lung Lesion"] == 1  # Nodule → Lung Lesion
    image = read_image(Path(test.uri).read_bytes(), test.uri, read_options)
    assert isinstance(image, Image2D) and image.pixels.ndim == 2


def test_nih_bad_rows_and_layouts(tmp_path: Path) -> None:
    root = _nih_root(tmp_path)
    table = root / "Data_Entry_2017.csv"
    table.write_text(table.read_text() + "00000004_000.png,Covid,0,4,30,F,PA,1,1,1,1,\n"
                     "00000005_000.png,No Finding,0,5,30,F,PA,1,1,1,1,\n")
    shutil.copy(root / "images" / "00000001_000.png", root / "images" / "00000004_000.png")  # 5 has none
    bad = {i.sample_id: i for i in iter_items("nih_chestxray14", str(root))}
    assert bad["00000004_000"].error == Reason.INVALID_RECORD.value
    assert "does not define" in bad["00000004_000"].error_detail
    assert "no image 00000005_000.png" in bad["00000005_000"].error_detail
    assert nih_labels("Hernia", rfm_names=False)["Hernia"] == 1
    with pytest.raises(ConfigError, match="NIH ChestX-ray14"):
        iter_items("nih_chestxray14", str(tmp_path / "empty"))


def _write_rsna(root: Path, make_dicom: Callable[..., bytes]) -> None:
    (root / "stage_2_train_images").mkdir(parents=True)
    (root / "stage_2_test_images").mkdir()
    rows = ["patientId,x,y,width,height,Target",
            "0004cfab-14fd-4e49-80ba-63a80b6bddd6,,,,,0",
            "00436515-870c-4b36-a041-de91049b9ab4,264.0,152.0,213.0,379.0,1",
            "00436515-870c-4b36-a041-de91049b9ab4,562.0,152.0,256.0,453.0,1",
            "003d8fa0-6bf1-40ed-b54c-ac657f8495c5,,,,,0"]
    classes = ["patientId,class", "0004cfab-14fd-4e49-80ba-63a80b6bddd6,No Lung Opacity / Not Normal",
               "00436515-870c-4b36-a041-de91049b9ab4,Lung Opacity", "00436515-870c-4b36-a041-de91049b9ab4,Lung Opacity",
               "003d8fa0-6bf1-40ed-b54c-ac657f8495c5,Normal"]
    (root / "stage_2_train_labels.csv").write_text("\n".join(rows) + "\n")
    (root / "stage_2_detailed_class_info.csv").write_text("\n".join(classes) + "\n")
    for k, pid in enumerate(sorted({r.split(",")[0] for r in rows[1:]})):
        (root / "stage_2_train_images" / f"{pid}.dcm").write_bytes(make_dicom(instance=k, bits=8, view="PA"))
    (root / "stage_2_test_images" / "0000a175-0e68-4ca4-b1af-167204a7e0bc.dcm").write_bytes(make_dicom(instance=9))


def test_rsna_layout(tmp_path: Path, make_dicom: Callable[..., bytes], read_options: ReadOptions) -> None:
    _write_rsna(tmp_path, make_dicom)
    items = {i.sample_id: i for i in iter_items("rsna_pneumonia", str(tmp_path))}
    assert len(items) == 3 and all(i.split == "train" and not i.error for i in items.values())
    positive = items["00436515-870c-4b36-a041-de91049b9ab4"]
    assert positive.labels == {"Pneumonia": 1, "No Finding": 0, "Lung Opacity": 1}
    assert items["003d8fa0-6bf1-40ed-b54c-ac657f8495c5"].labels["No Finding"] == 1
    assert items["0004cfab-14fd-4e49-80ba-63a80b6bddd6"].labels == {"Pneumonia": 0, "No Finding": 0,
                                                                    "Lung Opacity": 0}
    assert isinstance(read_image(Path(positive.uri).read_bytes(), positive.uri, read_options), Image2D)
    with_test = list(iter_items("rsna_pneumonia", str(tmp_path), with_test="true"))
    assert [i.split for i in with_test].count("challenge_test") == 1
    held = [i.split for i in iter_items("rsna_pneumonia", str(tmp_path), holdout="0.5")]
    assert held == [i.split for i in iter_items("rsna_pneumonia", str(tmp_path), holdout=0.5)]  # stable
    assert set(held) <= {"train", "test"}
    many = [holdout_split(f"patient-{k}", 0.2) for k in range(2000)]
    assert 0.17 < many.count("test") / len(many) < 0.23
    with pytest.raises(ConfigError, match="holdout"):
        iter_items("rsna_pneumonia", str(tmp_path), holdout=1.5)


def test_rsna_bad_input(tmp_path: Path, make_dicom: Callable[..., bytes]) -> None:
    with pytest.raises(ConfigError, match="RSNA Pneumonia"):
        iter_items("rsna_pneumonia", str(tmp_path))
    _write_rsna(tmp_path, make_dicom)
    table = tmp_path / "stage_2_train_labels.csv"
    table.write_text(table.read_text() + "0100515c-5204-4f31-98e0-f35e4b00004a,,,,,yes\n")
    bad = {i.sample_id: i for i in iter_items("rsna_pneumonia", str(tmp_path))}
    assert "Target not 0/1" in bad["0100515c-5204-4f31-98e0-f35e4b00004a"].error_detail


def _siim_rle(mask: np.ndarray) -> str:
    """SIIM's relative column-major run-length encoding (for building the fixture's table)."""
    flat = np.concatenate([[0], mask.T.flatten(), [0]])
    edges = np.flatnonzero(np.diff(flat))
    starts, ends = edges[::2], edges[1::2]
    rel = starts - np.concatenate([[0], ends[:-1]])  # each gap counts from the end of the previous run
    return " ".join(f"{g} {n}" for g, n in zip(rel, ends - starts, strict=True)) or "-1"


def test_siim_layout_and_rle_masks(tmp_path: Path, make_dicom: Callable[..., bytes],
                                   dicom_base_image: np.ndarray) -> None:
    ids = ["1.2.276.0.7230010.3.1.4.8323329.5597.1517875188.959090",
           "1.2.276.0.7230010.3.1.4.8323329.12515.1517875239.501137"]
    for k, image_id in enumerate(ids):
        folder = tmp_path / "dicom-images-train" / f"1.2.276.0.7230010.3.1.2.{k}" / f"1.2.276.0.7230010.3.1.3.{k}"
        folder.mkdir(parents=True)
        (folder / f"{image_id}.dcm").write_bytes(make_dicom(instance=k))
    h, w = dicom_base_image.shape
    mask = (dicom_base_image > np.percentile(dicom_base_image, 80)).astype(np.uint8)  # a real-image region
    rle = _siim_rle(mask)
    (tmp_path / "train-rle.csv").write_text(f"ImageId, EncodedPixels\n{ids[0]}, -1\n{ids[1]}, {rle}\n"
                                            f"{ids[1]}, {_siim_rle(np.eye(h, w, dtype=np.uint8))}\n")
    items = {i.sample_id: i for i in iter_items("siim_acr_pneumothorax", str(tmp_path))}
    assert items[ids[0]].labels == {"Pneumothorax": 0} and items[ids[1]].labels == {"Pneumothorax": 1}
    assert items[ids[1]].study_id == "1.2.276.0.7230010.3.1.2.1" and not items[ids[1]].error
    np.testing.assert_array_equal(decode_siim_rle(rle, width=w, height=h), mask)
    assert decode_siim_rle("-1", 8, 8).sum() == 0
    with pytest.raises(ValueError, match="pairs"):
        decode_siim_rle("3 4 5", 8, 8)
    with pytest.raises(ValueError, match="outside"):
        decode_siim_rle("60 10", 8, 8)


def test_siim_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SIIM-ACR"):
        iter_items("siim_acr_pneumothorax", str(tmp_path))
    (tmp_path / "train-rle.csv").write_text("ImageId,Mask\nx,-1\n")
    with pytest.raises(ConfigError, match="EncodedPixels"):
        iter_items("siim_acr_pneumothorax", str(tmp_path))
    (tmp_path / "train-rle.csv").write_text("ImageId,EncodedPixels\nmissing,-1\n")
    (item,) = iter_items("siim_acr_pneumothorax", str(tmp_path))
    assert "no DICOM missing.dcm" in item.error_detail


def test_public_layouts_are_registered() -> None:
    assert {"nih_chestxray14", "rsna_pneumonia", "siim_acr_pneumothorax"} <= set(list_datasets())


@pytest.mark.parametrize("layout", ["nih_chestxray14", "rsna_pneumonia"])
def test_public_layouts_ingest_end_to_end(layout: str, tmp_path: Path, make_dicom: Callable[..., bytes]) -> None:
    """The adapters' items decode and shard through the real ingest (PNG for NIH, DICOM for RSNA)."""
    if layout == "nih_chestxray14":
        root = _nih_root(tmp_path)
    else:
        root = tmp_path / "rsna"
        _write_rsna(root, make_dicom)
    cfg = IngestConfig(shard_size=4, workers=1, deid=DeidConfig(key="public-layouts-test"))
    result = ingest(str(root), str(tmp_path / "out"), cfg, dataset=layout, progress=False)
    expected = len(NIH_ROWS) if layout == "nih_chestxray14" else 3
    assert result.summary.total == expected and result.summary.accepted == expected
