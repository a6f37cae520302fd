"""Ingest benchmark: 2,000 x 2,500 16-bit DICOMs (uncompressed and JPEG 2000 lossless) → shards.

Builds real-looking sources from real CXRs of the development data (upsampled to 2,500 x 2,000, stored as
12-bit values in 16-bit words, MONOCHROME2, with a window), then ingests each set in a fresh process with one
worker and with all cores (JPEG 2000 also with the reduced-resolution decode switched off), and measures the
peak RSS of ingesting N and 4N images with one worker (memory must not grow with dataset size). Throughput per
core is images per CPU-second of the ingest process and its workers. Prints a table, writes JSON and a PNG.

    .venv/bin/python tools/benchmarks/bench_ingest.py --n 64 --out tools/benchmarks/results/ingest.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

HEIGHT, WIDTH = 2500, 2000
DATA = Path(os.environ.get("RFM_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))


def _source_pixels(n: int) -> list[np.ndarray]:
    root = DATA / "covid_chestxray_ieee8023"
    with open(root / "metadata.csv", newline="") as f:
        paths = [root / r["image_path"] for r in csv.DictReader(f)][:n]
    out = []
    for path in paths:
        with Image.open(path) as im:
            big = im.convert("F").resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC)
        out.append(np.clip(np.asarray(big) * 16.0, 0, 4095).astype(np.uint16))  # 12 bits of real anatomy
    return out


def _write_dicom(pixels: np.ndarray, path: Path, index: int, j2k: bool) -> None:
    from pydicom import Dataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = f"BENCH{index:05d}", generate_uid(), generate_uid()
    ds.Modality, ds.ViewPosition, ds.BodyPartExamined = "DX", "PA", "CHEST"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PixelSpacing = [0.139, 0.139]
    ds.PixelData = pixels.tobytes()
    if j2k:
        ds.compress(JPEG2000Lossless, pixels)
    ds.save_as(path, enforce_file_format=True)


def build_sources(workdir: Path, n: int) -> dict[str, Path]:
    """``n`` DICOMs per syntax under ``workdir`` (reused when already there)."""
    sets = {"uncompressed": workdir / "uncompressed", "jpeg2000": workdir / "jpeg2000"}
    pixels = None
    for name, folder in sets.items():
        if len(list(folder.glob("*.dcm"))) >= n:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        pixels = pixels if pixels is not None else _source_pixels(n)
        for i, px in enumerate(pixels):
            _write_dicom(px, folder / f"img{i:05d}.dcm", i, j2k=name == "jpeg2000")
    return sets


_CHILD = """
import json, resource, sys, time
from rfm_data.config import DeidConfig, DicomConfig, IngestConfig
from rfm_data.ingest import ingest
t = time.perf_counter()
cfg = IngestConfig(workers=int(sys.argv[3]), shard_size=8, deid=DeidConfig(key="bench"),
                   dicom=DicomConfig(reduced_decode=sys.argv[4] == "reduced"))
r = ingest(sys.argv[1], sys.argv[2], cfg, dataset="dicom_folder", progress=False)
# VmHWM, not ru_maxrss: ru_maxrss survives fork+exec, so it would report the parent's peak.
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
# CPU seconds of this process and its (reaped) workers: per-core throughput whatever the decoder's threading.
cpu = sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
          for f in ("ru_utime", "ru_stime"))
print(json.dumps({"seconds": time.perf_counter() - t, "cpu_seconds": cpu, "images": r.summary.total,
                  "accepted": r.summary.accepted, "peak_rss_mb": hwm / 1024}))
"""


def run_ingest(source: Path, workers: int, dest: Path, decode: str = "reduced") -> dict[str, float]:
    """Ingest ``source`` into ``dest`` in a fresh Python process; its timing and peak RSS."""
    out = subprocess.run([sys.executable, "-c", _CHILD, str(source), str(dest), str(workers), decode],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=64, help="DICOMs per transfer syntax")
    parser.add_argument("--workdir", type=Path, default=None, help="where sources are built (reused)")
    parser.add_argument("--out", type=Path, default=Path("tools/benchmarks/results/ingest.json"))
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.gettempdir()) / "rfm-bench-ingest"
    sets = build_sources(workdir, args.n)
    cores = os.cpu_count() or 1
    rows = []
    runs = [(name, folder, workers, "reduced") for name, folder in sets.items() for workers in sorted({1, cores})]
    runs.insert(2, ("jpeg2000", sets["jpeg2000"], 1, "full"))  # the reduced-resolution decode, switched off
    for name, folder, workers, decode in runs:
        with tempfile.TemporaryDirectory() as tmp:
            res = run_ingest(folder, workers, Path(tmp) / "out", decode)
        rate = res["images"] / res["seconds"]
        label = f"{name} (full-res decode)" if decode == "full" else name
        rows.append({"source": label, "workers": workers, **res, "images_per_s": rate,
                     "images_per_cpu_s": res["images"] / res["cpu_seconds"],
                     "source_mb_per_image": _mb_per_file(folder)})
    memory = _memory_growth(workdir, sets["uncompressed"], args.n)
    _report(rows, memory, args.out)
    return 0


def _mb_per_file(folder: Path) -> float:
    files = list(folder.glob("*.dcm"))
    return sum(f.stat().st_size for f in files) / len(files) / 1e6


def _memory_growth(workdir: Path, folder: Path, n: int) -> dict[str, float]:
    """Peak RSS of a 1-worker ingest of N images vs 4N (the same files listed 4 times via symlinks)."""
    big = workdir / "uncompressed_x4"
    if len(list(big.glob("*.dcm"))) < 4 * n:
        big.mkdir(exist_ok=True)
        for k in range(4):
            for f in sorted(folder.glob("*.dcm"))[:n]:
                link = big / f"c{k}_{f.name}"
                if not link.exists():
                    link.symlink_to(f)
    result = {}
    for label, src in (("n", folder), ("4n", big)):
        with tempfile.TemporaryDirectory() as tmp:
            result[f"peak_rss_mb_{label}"] = run_ingest(src, 1, Path(tmp) / "out")["peak_rss_mb"]
    return result


def _report(rows: list[dict[str, float | str]], memory: dict[str, float], out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"ingest: {HEIGHT} x {WIDTH} 16-bit DICOM → 256 px uint8 Parquet shards")
    for col in ("source", "workers", "images", "MB/image", "images/s (wall)", "images per CPU-s", "peak RSS MB"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r["source"]), str(r["workers"]), str(r["images"]), f"{r['source_mb_per_image']:.1f}",
                      f"{r['images_per_s']:.2f}", f"{r['images_per_cpu_s']:.2f}", f"{r['peak_rss_mb']:.0f}")
    console = Console(width=120)
    console.print(table)
    n_mb, n4_mb = memory["peak_rss_mb_n"], memory["peak_rss_mb_4n"]
    console.print(f"peak RSS, 1 worker: N images {n_mb:.0f} MB, 4N {n4_mb:.0f} MB")
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": "ingest", "rows": rows, "memory": memory, "cpu_count": os.cpu_count(),
           "date": time.strftime("%Y-%m-%d")}
    out.write_text(json.dumps(doc, indent=2))
    _plot(rows, out.with_suffix(".png"))


def _plot(rows: list[dict[str, float | str]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['source']}\n{r['workers']} worker(s)" for r in rows]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(labels, [float(r["images_per_cpu_s"]) for r in rows], color="#4477aa")
    ax.set_ylabel("images per CPU-second")
    ax.set_title(f"Ingest of {HEIGHT}x{WIDTH} 16-bit DICOMs")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
