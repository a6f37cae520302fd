"""Build the sample dataset bundled with rfm-data (``rfm_data/sample_data``) from the development data.

Run once by a maintainer; the output is committed, so users never need ``shared/data``::

    python tools/data/make_sample.py [--shared-data DIR] [--out DIR]

Only openly licensed images are taken (CC BY 4.0 Kermany; CC BY / CC BY 4.0 / CC BY-SA images of the
COVID-19 Image Data Collection), every file is listed in ``ATTRIBUTION.md`` with its source, licence and
changes, and the whole sample stays under ~3 MB. The output is deterministic: the same input gives the same
bytes (selection by hash order, fixed DICOM UIDs derived from names, no timestamps).

Needs numpy, pydicom and the ``rfm-data[codecs]`` encoders (JPEG 2000 and RLE).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    generate_uid,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SHARED = REPO_ROOT.parent / "shared" / "data"
DEFAULT_OUT = REPO_ROOT / "packages" / "rfm-data" / "src" / "rfm_data" / "sample_data"
KERMANY = "pediatric_pneumonia_kermany"
COVID = "covid_chestxray_ieee8023"
OPEN_COVID_LICENCES = ("CC BY", "CC BY 4.0", "CC BY-SA")
KERMANY_CLASSES = ("No Finding", "Pneumonia|Bacterial", "Pneumonia|Viral")
# Per class: 10 train / 3 val / 3 test = 16, so 48 Kermany PNGs, balanced across the three classes.
KERMANY_SPLIT_QUOTA = {"train": 10, "val": 3, "test": 3}
DICOMS_PER_CLASS = 2
SIZE_LIMIT_BYTES = 3 * 1024 * 1024
COLUMNS = ("path", "sample_id", "patient_id", "study_id", "view", "split", "labels", "report")
CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
UID_PREFIX_SEED = "rfm-sample-data-v1"


@dataclass(frozen=True)
class Entry:
    """One file of the sample: its metadata.csv row plus what ATTRIBUTION.md says about it."""

    row: dict[str, str]
    source: str  # "" for the deliberately broken files
    original: str
    licence: str
    reference: str
    change: str


def stable_key(text: str) -> str:
    # Hash order, not file order: a fixed, content-independent shuffle that does not depend on the
    # order rows happen to be in upstream.
    return hashlib.sha256(text.encode()).hexdigest()


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------------------------- selection


def pick_kermany(rows: Sequence[dict[str, str]]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Balanced PNG picks (keeping the source split) and DICOM sources from patients not otherwise used."""
    ordered = sorted(rows, key=lambda r: stable_key(r["image_id"]))
    pngs: list[dict[str, str]] = []
    for label in KERMANY_CLASSES:
        for split, quota in KERMANY_SPLIT_QUOTA.items():
            pngs += [r for r in ordered if r["labels"] == label and r["split"] == split][:quota]
    used_patients = {r["patient_id"] for r in pngs}
    dicom_sources: list[dict[str, str]] = []
    for label in KERMANY_CLASSES:
        # One image per patient, from patients absent from the PNG picks, so no child appears twice under
        # two identities (the DICOMs carry synthetic patient ids).
        picked = 0
        for row in ordered:
            if picked == DICOMS_PER_CLASS:
                break
            if row["labels"] == label and row["patient_id"] not in used_patients:
                dicom_sources.append(row)
                used_patients.add(row["patient_id"])
                picked += 1
    return pngs, dicom_sources


def pick_covid(rows: Iterable[dict[str, str]]) -> list[dict[str, str]]:
    return sorted((r for r in rows if r["license"] in OPEN_COVID_LICENCES), key=lambda r: r["image_id"])


# ------------------------------------------------------------------------------------------------ PNGs


def copy_png(shared: Path, dataset: str, row: dict[str, str], out: Path) -> Entry:
    """Copy an (already 8-bit grayscale) PNG byte for byte and describe it."""
    src = shared / dataset / row["image_path"]
    with Image.open(src) as im:
        if im.mode != "L":
            raise ValueError(f"{src} is {im.mode}, expected 8-bit grayscale")
    rel = f"images/{row['image_id']}.png"
    (out / rel).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, out / rel)
    return Entry(
        row={
            "path": rel,
            "sample_id": row["image_id"],
            "patient_id": row["patient_id"],
            "study_id": row["study_id"],
            "view": row["view"],
            "split": row["split"],
            "labels": row["labels"],
            "report": row["report"],
        },
        source=dataset,
        original=row["original_filename"],
        licence=row["license"],
        reference=reference_of(row),
        change=png_change(dataset),
    )


def reference_of(row: dict[str, str]) -> str:
    parts = [f"doi:{row['doi']}" if row["doi"] else "", row["url"]]
    return "; ".join(p for p in parts if p)


def png_change(dataset: str) -> str:
    if dataset == KERMANY:
        return "converted from a 224x224 RGB JPEG to 8-bit grayscale PNG"
    return "converted to 8-bit grayscale PNG, downsampled to long side <= 256 px (Lanczos)"


# ---------------------------------------------------------------------------------------------- DICOMs


@dataclass(frozen=True)
class DicomKind:
    """One way of storing a CXR in DICOM, exercising one decoding path of a reader."""

    name: str
    modality: str
    describe: str
    build: Callable[[np.ndarray, Dataset], None]  # fills pixel attributes from the 8-bit source image


def set_pixels(ds: Dataset, stored: np.ndarray, bits_stored: int, photometric: str) -> None:
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 8 if bits_stored == 8 else 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = stored.astype(np.uint8 if bits_stored == 8 else np.uint16).tobytes()


def to_12bit(img: np.ndarray) -> np.ndarray:
    return np.round(img.astype(np.float64) * (4095 / 255)).astype(np.uint16)


def build_mono2_8bit(img: np.ndarray, ds: Dataset) -> None:
    set_pixels(ds, img, 8, "MONOCHROME2")


def build_mono1_12bit_window(img: np.ndarray, ds: Dataset) -> None:
    # MONOCHROME1 stores bright bone as low values: a reader that ignores the photometric interpretation
    # shows an inverted image. The window is in stored-value units and is applied before the inversion.
    set_pixels(ds, 4095 - to_12bit(img), 12, "MONOCHROME1")
    ds.WindowCenter = 2048
    ds.WindowWidth = 3600


def build_rescale_16bit(img: np.ndarray, ds: Dataset) -> None:
    # Full 16-bit range with a modality rescale: output units = stored * 0.5 - 1024.
    set_pixels(ds, img.astype(np.uint16) * 257, 16, "MONOCHROME2")
    ds.RescaleSlope = "0.5"
    ds.RescaleIntercept = "-1024"
    ds.RescaleType = "US"


def build_voi_lut_12bit(img: np.ndarray, ds: Dataset) -> None:
    # A VOI LUT table instead of a linear window: a gamma curve from 12-bit stored values to 16-bit output
    # (16-bit entries: 8-bit LUT data is ambiguously packed across implementations).
    set_pixels(ds, to_12bit(img), 12, "MONOCHROME2")
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    lut = np.round(65535 * (np.arange(4096) / 4095) ** 0.8).astype(np.uint16)
    # LUTData may be US or OW; say US explicitly so the 16-bit entries are written as numbers.
    item.add_new("LUTData", "US", lut.tolist())
    item.LUTExplanation = "gamma 0.8 (synthetic, rfm sample)"
    ds.VOILUTSequence = [item]


def build_jpeg2000_lossless(img: np.ndarray, ds: Dataset) -> None:
    set_pixels(ds, to_12bit(img), 12, "MONOCHROME2")
    # Lossless re-encoding keeps the instance: no new SOP Instance UID (it would also break determinism).
    ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg", generate_instance_uid=False)


def build_rle(img: np.ndarray, ds: Dataset) -> None:
    set_pixels(ds, img.astype(np.uint16) * 257, 16, "MONOCHROME2")
    ds.compress(RLELossless, generate_instance_uid=False)


DICOM_KINDS: tuple[DicomKind, ...] = (
    DicomKind("mono2_8bit", "CR", "MONOCHROME2, 8-bit, uncompressed", build_mono2_8bit),
    DicomKind(
        "mono1_12bit_window",
        "DX",
        "MONOCHROME1 (inverted stored values), 12-bit, window centre/width",
        build_mono1_12bit_window,
    ),
    DicomKind(
        "rescale_16bit", "DX", "MONOCHROME2, 16-bit, RescaleSlope 0.5 / RescaleIntercept -1024", build_rescale_16bit
    ),
    DicomKind("voi_lut_12bit", "CR", "MONOCHROME2, 12-bit, VOI LUT Sequence (table)", build_voi_lut_12bit),
    DicomKind("jpeg2000_lossless", "DX", "MONOCHROME2, 12-bit, JPEG 2000 lossless", build_jpeg2000_lossless),
    DicomKind("rle_16bit", "CR", "MONOCHROME2, 16-bit, RLE lossless", build_rle),
)


def uid(*parts: str) -> UID:
    # Derived from names, not random: rebuilding the sample gives byte-identical files.
    return generate_uid(entropy_srcs=[UID_PREFIX_SEED, *parts])


def base_dataset(kind: DicomKind, index: int) -> Dataset:
    """Header of a synthetic study: identifiers are made up and say so; the pixels are the real image's."""
    patient = f"SAMPLE-KERMANY{index:02d}"
    sop_class = UID(CR_STORAGE if kind.modality == "CR" else DX_FOR_PRESENTATION)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = uid(kind.name, "sop")
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = uid(kind.name, "study")
    ds.SeriesInstanceUID = uid(kind.name, "series")
    # Synthetic identifying attributes, present on purpose so that de-identification has work to do.
    ds.PatientName = f"SAMPLE^KERMANY{index:02d}"
    ds.PatientID = patient
    ds.PatientBirthDate = "20150101"
    ds.AccessionNumber = f"SAMPLE{index:04d}"
    ds.StudyDate = "20180101"
    ds.StudyID = "1"
    ds.InstitutionName = "rfm synthetic sample (not a real institution)"
    ds.ReferringPhysicianName = "SAMPLE^REFERRER"
    ds.Modality = kind.modality
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "AP"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.DerivationDescription = "converted from a CC BY 4.0 PNG by the rfm project"
    ds.BurnedInAnnotation = "NO"
    return ds


def write_dicom(shared: Path, row: dict[str, str], kind: DicomKind, index: int, out: Path) -> Entry:
    with Image.open(shared / KERMANY / row["image_path"]) as im:
        img = np.asarray(im.convert("L"), dtype=np.uint8)
    ds = base_dataset(kind, index)
    kind.build(img, ds)
    ds.PresentationIntentType = "FOR PRESENTATION" if kind.modality == "DX" else None
    if ds.PresentationIntentType is None:
        del ds.PresentationIntentType
    rel = f"dicom/{kind.name}.dcm"
    (out / rel).parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out / rel, enforce_file_format=True)
    return Entry(
        row={
            "path": rel,
            "sample_id": f"dicom_{kind.name}",
            "patient_id": ds.PatientID,
            "study_id": f"{ds.PatientID}:s1",
            "view": "AP",
            "split": row["split"],
            "labels": row["labels"],
            "report": "",
        },
        source=KERMANY,
        original=row["original_filename"],
        licence=row["license"],
        reference=reference_of(row),
        change=f"converted to DICOM by the rfm project: {kind.describe}; synthetic patient/study identifiers",
    )


# --------------------------------------------------------------------------------------------- broken


def write_broken(out: Path, truncate_from: Entry) -> list[Entry]:
    """Two deliberately unreadable files, so a demo ingest shows quarantine at work."""
    (out / "broken").mkdir(parents=True, exist_ok=True)
    whole = (out / truncate_from.row["path"]).read_bytes()
    (out / "broken/truncated.dcm").write_bytes(whole[: len(whole) // 2])
    (out / "broken/not_an_image.png").write_bytes(b"This is not a PNG image: a deliberately broken rfm sample.\n")
    return [
        broken_entry(
            "broken/truncated.dcm", truncate_from, f"first half of {truncate_from.row['path']} (deliberately truncated)"
        ),
        broken_entry("broken/not_an_image.png", None, "a few bytes of text with a .png name (written by rfm)"),
    ]


def broken_entry(rel: str, derived_from: Entry | None, change: str) -> Entry:
    name = rel.split("/")[-1].split(".")[0]
    row = {
        "path": rel,
        "sample_id": f"broken_{name}",
        "patient_id": f"SAMPLE-BROKEN-{name.upper()}",
        "study_id": f"SAMPLE-BROKEN-{name.upper()}:s1",
        "view": "AP",
        "split": "train",
        "labels": "",
        "report": "",
    }
    if derived_from is None:
        return Entry(row, "", "", "CC0 1.0 (rfm project)", "", change)
    return Entry(row, derived_from.source, derived_from.original, derived_from.licence, derived_from.reference, change)


# ---------------------------------------------------------------------------------------------- output


def write_metadata(out: Path, entries: Sequence[Entry]) -> None:
    with (out / "metadata.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(e.row for e in entries)


def write_attribution(out: Path, entries: Sequence[Entry], template: Path) -> None:
    lines = [
        template.read_text(encoding="utf-8").rstrip(),
        "",
        "## Files",
        "",
        "| file | source | original file | licence | reference | changes |",
        "|---|---|---|---|---|---|",
    ]
    for e in entries:
        cells = (e.row["path"], e.source or "-", e.original or "-", e.licence, e.reference or "-", e.change)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    (out / "ATTRIBUTION.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def total_size(out: Path) -> int:
    return sum(p.stat().st_size for p in out.rglob("*") if p.is_file())


def build(shared: Path, out: Path) -> list[Entry]:
    if out.exists():
        shutil.rmtree(out)  # a rebuild must not keep files a previous selection picked
    out.mkdir(parents=True)
    kermany_png, kermany_dicom = pick_kermany(read_rows(shared / KERMANY / "metadata.csv"))
    entries = [copy_png(shared, KERMANY, r, out) for r in kermany_png]
    entries += [copy_png(shared, COVID, r, out) for r in pick_covid(read_rows(shared / COVID / "metadata.csv"))]
    dicoms = [
        write_dicom(shared, r, k, i + 1, out) for i, (r, k) in enumerate(zip(kermany_dicom, DICOM_KINDS, strict=True))
    ]
    entries += dicoms + write_broken(out, dicoms[0])
    write_metadata(out, entries)
    write_attribution(out, entries, Path(__file__).with_name("sample_attribution_header.md"))
    return entries


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared-data", type=Path, default=DEFAULT_SHARED)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    entries = build(args.shared_data, args.out)
    size = total_size(args.out)
    print(f"wrote {len(entries)} files to {args.out} ({size / 1e6:.2f} MB)")
    if size > SIZE_LIMIT_BYTES:
        print(f"error: the sample is above {SIZE_LIMIT_BYTES / 1e6:.1f} MB; it ships inside every wheel")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
