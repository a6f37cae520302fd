"""Loader benchmark: training images/s per core at 224 px with the typical CXR augmentation, by storage.

Builds, from real CXRs of the development data (both image sets), in ``--workdir`` (a temp dir by default):
  - Parquet shards at 256 px long side written with ``rfm_data.shards.write_shard``: raw (LZ4) and PNG;
    plus the raw shards with the image column re-written as zstd (the codec LZ4 replaced, for comparison);
  - WebDataset-style tar shards (stdlib ``tarfile``) of the same 256 px images as PNG + JSON;
  - the usual alternative: a folder of full-size PNGs, upsampled to 2,500 px long side with mild detector-like
    noise (realistic file sizes), 8-bit and 16-bit (12 bits used), decoded with PIL and resized per item.
Then measures every variant in the same run, interleaved over rounds, single process (``num_workers=0``,
``torch.set_num_threads(1)``, Arrow single-threaded) so figures are per core; and, in fresh subprocesses, the
peak RSS of streaming the shards 1x and 4x (memory must not grow with dataset size). Prints a table, writes
JSON and a PNG chart beside it.

    .venv/bin/python tools/benchmarks/bench_loader.py --out tools/benchmarks/results/loader.json
"""

from __future__ import annotations

import argparse
import csv
import io as pyio
import json
import os
import platform
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from benchutil import cpu_model  # sibling module: benchmarks run as scripts
from PIL import Image
from torch.utils.data import Dataset, IterableDataset

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("RFM_SHARED_DATA", REPO.parent / "shared" / "data"))
SETS = ("covid_chestxray_ieee8023", "pediatric_pneumonia_kermany")
SHARD_SIZE = 256
BIG_SIDE = 2500
BATCH = 64


@dataclass
class Result:
    """One variant. Rates are images per CPU-second of the (single-threaded) process, i.e. per core: on a
    shared machine that excludes time spent waiting for a core; wall-clock rates are kept beside them."""

    name: str
    storage: str
    images_per_s: float  # median over rounds, per CPU-second
    best_images_per_s: float
    wall_images_per_s: float  # median over rounds, per wall-clock second
    ratio_vs_baseline: float  # of the medians, vs (d) 8-bit PNG folder
    bytes_per_image: float


# ------------------------------------------------------------------------------------------ build data
def _sources(n: int) -> list[dict[str, Any]]:
    """``n`` real CXRs (half from each set) with their metadata, 8-bit, 256 px long side."""
    rows: list[dict[str, Any]] = []
    for k, name in enumerate(SETS):
        with open(DATA / name / "metadata.csv", newline="") as f:
            records = list(csv.DictReader(f))[: n // 2 + (n % 2) * (1 - k)]
        for r in records:
            with Image.open(DATA / name / r["image_path"]) as src:
                gray = src.convert("L")
            scale = 256 / max(gray.size)
            size = (round(gray.width * scale), round(gray.height * scale))
            pixels = np.asarray(gray.resize(size, Image.Resampling.BILINEAR))
            rows.append({"sample_id": r["image_id"], "pixels": pixels, "patient_id": r["patient_id"],
                         "study_id": r["study_id"], "view": r["view"], "split": r["split"],
                         "report_text": r["report"], "labels": {"pneumonia": int(r["label_pneumonia"] or 0)}})
    return rows


def _shard_rows(rows: list[dict[str, Any]], encoding: Any, suffix: str = "") -> list[dict[str, Any]]:
    from rfm_data.shards import encode_pixels

    return [{**{k: v for k, v in r.items() if k != "pixels"}, "sample_id": r["sample_id"] + suffix,
             "image": encode_pixels(r["pixels"], encoding), "height": r["pixels"].shape[0],
             "width": r["pixels"].shape[1], "dtype": "uint8", "encoding": encoding.value,
             "report_findings": "", "report_impression": ""} for r in rows]


def _write_shards(url: str, rows: list[dict[str, Any]], encoding: Any, copies: int = 1) -> None:
    from rfm_data.shards import shard_name, write_shard

    encoded = [r for c in range(copies) for r in _shard_rows(rows, encoding, f"#{c}" if copies > 1 else "")]
    entries = []
    for i in range(0, len(encoded), SHARD_SIZE):
        chunk = encoded[i:i + SHARD_SIZE]
        write_shard(f"{url}/{shard_name(i // SHARD_SIZE)}", chunk, encoding)
        entries.append({"name": shard_name(i // SHARD_SIZE), "rows": len(chunk)})
    Path(url, "dataset.json").write_text(json.dumps({"shards": entries}))


def _rewrite_image_codec(src: str, dst: str, codec: str = "zstd") -> None:
    """The raw shards with only the image column's codec changed (same row groups, same schema)."""
    import pyarrow.parquet as pq

    from rfm_data.shards import ROW_GROUP_SIZE

    Path(dst, "shards").mkdir(parents=True, exist_ok=True)
    for path in sorted(Path(src, "shards").glob("*.parquet")):
        table = pq.read_table(path)
        codecs = {c: (codec if c == "image" else "zstd") for c in table.column_names}
        pq.write_table(table, Path(dst, "shards", path.name), compression=codecs,
                       row_group_size=ROW_GROUP_SIZE)
    Path(dst, "dataset.json").write_text(Path(src, "dataset.json").read_text())


def _write_tars(root: Path, rows: list[dict[str, Any]]) -> None:
    from rfm_data.config import Encoding
    from rfm_data.shards import encode_pixels

    root.mkdir(parents=True, exist_ok=True)
    for i in range(0, len(rows), SHARD_SIZE):
        with tarfile.open(root / f"shard-{i // SHARD_SIZE:05d}.tar", "w") as tar:
            for r in rows[i:i + SHARD_SIZE]:
                meta = json.dumps({k: v for k, v in r.items() if k != "pixels"}).encode()
                for ext, data in (("png", encode_pixels(r["pixels"], Encoding.PNG)), ("json", meta)):
                    info = tarfile.TarInfo(f"{r['sample_id']}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, pyio.BytesIO(data))


def _write_fullsize(root: Path, rows: list[dict[str, Any]], bits: int) -> None:
    """Upsample to 2,500 px long side and add mild noise (sigma 1.5 grey levels of 8 bits) so PNG sizes are
    like real exports (~2.5 MB 8-bit, ~7 MB 16-bit), not those of a smooth, perfectly compressible image."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for r in rows:
        im = Image.fromarray(r["pixels"]).convert("F")
        scale = BIG_SIDE / max(im.size)
        size = (round(im.width * scale), round(im.height * scale))
        big = np.asarray(im.resize(size, Image.Resampling.BICUBIC))
        noisy = big + rng.normal(0.0, 1.5, big.shape)
        arr = (np.clip(noisy, 0, 255).astype(np.uint8) if bits == 8
               else np.clip(noisy * 16, 0, 4095).astype(np.uint16))
        Image.fromarray(arr).save(root / f"{r['sample_id']}.png")


def build(workdir: Path, n: int, n_baseline: int) -> dict[str, Path]:
    """Write every storage variant once (reused when ``workdir`` already holds this configuration)."""
    from rfm_data.config import Encoding

    paths = {name: workdir / name for name in
             ("shards_raw", "shards_png", "shards_raw_zstd", "tar_png", "png8", "png16", "shards_raw_4x")}
    stamp = workdir / "built.json"
    config = {"n": n, "n_baseline": n_baseline, "version": 2}
    if stamp.exists() and json.loads(stamp.read_text()) == config:
        return paths
    rows = _sources(n)
    _write_shards(str(paths["shards_raw"]), rows, Encoding.RAW)
    _write_shards(str(paths["shards_png"]), rows, Encoding.PNG)
    _write_shards(str(paths["shards_raw_4x"]), rows, Encoding.RAW, copies=4)
    _rewrite_image_codec(str(paths["shards_raw"]), str(paths["shards_raw_zstd"]), "zstd")
    _write_tars(paths["tar_png"], rows)
    half = n // 2
    baseline_rows = rows[: n_baseline // 2] + rows[half: half + n_baseline - n_baseline // 2]
    _write_fullsize(paths["png8"], baseline_rows, 8)
    _write_fullsize(paths["png16"], baseline_rows, 16)
    stamp.write_text(json.dumps(config))
    return paths


# ------------------------------------------------------------------------------------------- variants
def _item(pixels: np.ndarray, meta: dict[str, Any], scale: float) -> dict[str, Any]:
    image = torch.from_numpy(pixels.astype(np.float32) * np.float32(scale))[None]
    return {"image": image, "report": meta.get("report_text", ""), "labels": meta.get("labels", {}),
            "sample_id": meta["sample_id"], "patient_id": meta.get("patient_id", ""),
            "view": meta.get("view", "")}


class TarPngDataset(IterableDataset[dict[str, Any]]):
    """WebDataset-style reading: stream tar members in order, pair ``key.png`` with ``key.json``."""

    def __init__(self, root: Path, transform: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.tars, self.transform = sorted(root.glob("*.tar")), transform

    def __iter__(self) -> Iterator[dict[str, Any]]:
        from rfm_data.transforms import mix_seed

        position = 0
        for path in self.tars:
            with tarfile.open(path, "r|") as tar:
                pending: dict[str, bytes] = {}
                for member in tar:
                    data = tar.extractfile(member).read()  # type: ignore[union-attr]
                    ext = member.name.rsplit(".", 1)[1]
                    pending[ext] = data
                    if "png" in pending and "json" in pending:
                        with Image.open(pyio.BytesIO(pending["png"])) as im:
                            pixels = np.asarray(im)
                        item = _item(pixels, json.loads(pending["json"]), 1 / 255)
                        self.transform.set_random_state(mix_seed(0, 0, position))  # type: ignore[attr-defined]
                        position += 1
                        pending = {}
                        yield self.transform(item)


class PngFolderDataset(Dataset[dict[str, Any]]):
    """The usual alternative: full-size PNGs, PIL decode, PIL resize to 256 px long side, then augment."""

    def __init__(self, root: Path, transform: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.files, self.transform = sorted(root.glob("*.png")), transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, Any]:
        from rfm_data.transforms import mix_seed

        with Image.open(self.files[i]) as im:
            size = (round(im.width * 256 / max(im.size)), round(im.height * 256 / max(im.size)))
            if im.mode == "L":
                pixels, scale = np.asarray(im.resize(size, Image.Resampling.BILINEAR)), 1 / 255
            else:  # 16-bit: PIL resizes 32-bit float images, not I;16
                f = Image.fromarray(np.asarray(im, dtype=np.float32), "F")
                pixels, scale = np.asarray(f.resize(size, Image.Resampling.BILINEAR)), 1 / 4095
        self.transform.set_random_state(mix_seed(0, 0, i))  # type: ignore[attr-defined]
        return self.transform(_item(pixels, {"sample_id": self.files[i].stem}, scale))


def _dir_bytes(path: Path, suffixes: tuple[str, ...]) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.suffix in suffixes)


Variant = tuple[str, str, Callable[[], Iterable[Any]], int, float]  # name, storage, passes, images, bytes/img


def variants(paths: dict[str, Path], size: int) -> list[Variant]:
    from torch.utils.data import DataLoader

    from rfm_data.loader import ShardDataset, ShardLoader, StreamingShardDataset, collate
    from rfm_data.transforms import cxr_batch_item_transform, cxr_train_transform

    def streaming(key: str, **kw: Any) -> Callable[[], Iterable[Any]]:
        ds = StreamingShardDataset(str(paths[key]), transform=cxr_train_transform(size), **kw)
        return lambda: ShardLoader(ds, batch_size=BATCH)

    batch_ds = StreamingShardDataset(str(paths["shards_raw"]), transform=cxr_batch_item_transform(256))
    decode_ds = StreamingShardDataset(str(paths["shards_raw"]))
    # One cached row group: a uniform shuffle over a dataset much larger than the cache misses on almost every
    # access, and each miss reads a whole row group (64 rows) for one sample.
    map_ds = ShardDataset(str(paths["shards_raw"]), transform=cxr_train_transform(size), cache_row_groups=1)
    tar_ds = TarPngDataset(paths["tar_png"], cxr_train_transform(size))
    png8 = PngFolderDataset(paths["png8"], cxr_train_transform(size))
    png16 = PngFolderDataset(paths["png16"], cxr_train_transform(size))
    n, n_big = len(decode_ds), len(png8)
    per = {k: _dir_bytes(paths[k], (".parquet", ".tar", ".png")) for k in paths}
    return [
        ("(a) shards, raw (LZ4)", "Parquet, 256 px uint8, raw + LZ4 (the shard format)", streaming("shards_raw"), n,
         per["shards_raw"] / n),
        ("(a') shards, raw (zstd)", "as (a), image column zstd instead of LZ4",
         streaming("shards_raw_zstd"), n, per["shards_raw_zstd"] / n),
        ("(a) + batch-level aug", "as (a); augment the collated batch (main process)",
         lambda: ShardLoader(batch_ds, batch_size=BATCH, batch_transform=cxr_train_transform(size)), n,
         per["shards_raw"] / n),
        ("(a) map-style, shuffled", "as (a); ShardDataset (1 cached row group) + shuffling DataLoader",
         lambda: DataLoader(map_ds, batch_size=BATCH, shuffle=True, collate_fn=collate,
                            generator=torch.Generator().manual_seed(0)), n, per["shards_raw"] / n),
        ("(a) decode only", "as (a); no transform, no batching", lambda: decode_ds, n, per["shards_raw"] / n),
        ("(b) shards, PNG", "Parquet, 256 px uint8, PNG", streaming("shards_png"), n, per["shards_png"] / n),
        ("(c) tar shards, PNG", "WebDataset-style tar (stdlib), 256 px PNG",
         lambda: DataLoader(tar_ds, batch_size=BATCH, collate_fn=collate), n, per["tar_png"] / n),
        ("(d) PNG folder 8-bit + PIL", f"{BIG_SIDE} px 8-bit PNG, PIL decode + resize per item",
         lambda: DataLoader(png8, batch_size=BATCH, collate_fn=collate), n_big, per["png8"] / n_big),
        ("(d16) PNG folder 16-bit + PIL", f"{BIG_SIDE} px 16-bit PNG (12 bits), PIL decode + resize per item",
         lambda: DataLoader(png16, batch_size=BATCH, collate_fn=collate), n_big, per["png16"] / n_big),
    ]


# ------------------------------------------------------------------------------------------ measuring
def _one_pass(make: Callable[[], Iterable[Any]]) -> int:
    count = 0
    for batch in make():  # a collated batch, or one item for the decode-only variant
        count += len(batch["sample_id"]) if batch["image"].ndim == 4 else 1
    return count


def _measure(make: Callable[[], Iterable[Any]], min_seconds: float) -> tuple[float, float]:
    """(images per CPU-second, images per wall second) over whole passes, for ``min_seconds`` of CPU."""
    images, cpu0, wall0 = 0, time.process_time(), time.perf_counter()
    while True:
        images += _one_pass(make)
        cpu = time.process_time() - cpu0
        if cpu >= min_seconds:
            return images / cpu, images / (time.perf_counter() - wall0)


def run_speed(paths: dict[str, Path], size: int, rounds: int, min_seconds: float) -> list[Result]:
    runs = variants(paths, size)
    for _, _, make, _, _ in runs:  # warm-up: page cache, lazy imports, allocator
        _one_pass(make)
    cpu: dict[str, list[float]] = {name: [] for name, *_ in runs}
    wall: dict[str, list[float]] = {name: [] for name, *_ in runs}
    for r in range(rounds):
        order = runs[r % len(runs):] + runs[: r % len(runs)]  # rotate so no variant always runs first
        for name, _, make, _, _ in order:
            per_cpu, per_wall = _measure(make, min_seconds)
            cpu[name].append(per_cpu)
            wall[name].append(per_wall)
            print(f"  round {r + 1}/{rounds} {name}: {per_cpu:,.0f} images/CPU-s ({per_wall:,.0f}/s wall)",
                  flush=True)
    baseline = float(np.median(cpu[runs[-2][0]]))
    return [Result(name, storage, float(np.median(cpu[name])), max(cpu[name]), float(np.median(wall[name])),
                   float(np.median(cpu[name])) / baseline, per_image)
            for name, storage, _, _, per_image in runs]


def memory_probe(url: str, size: int, buffer_size: int, epochs: int = 1) -> dict[str, float]:
    """Run in a fresh process: stream ``url`` for ``epochs`` with augmentation and batching; RSS in MiB."""
    import psutil

    from rfm_data.loader import ShardLoader, StreamingShardDataset
    from rfm_data.transforms import cxr_train_transform

    torch.set_num_threads(1)
    ds = StreamingShardDataset(url, transform=cxr_train_transform(size), buffer_size=buffer_size)
    before = psutil.Process().memory_info().rss / 2**20
    loader, images = ShardLoader(ds, batch_size=BATCH), 0
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        images += sum(len(b["sample_id"]) for b in loader)
    return {"images": images, "rss_before_mib": before, "peak_rss_mib": _peak_rss_mib()}


def _peak_rss_mib() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so a child started by
    this (large) benchmark process would report the parent's size."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _probe(cmd: list[str]) -> dict[str, Any]:
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def run_memory(paths: dict[str, Path], size: int, buffer_size: int, repeats: int = 3) -> dict[str, Any]:
    """Peak RSS streaming 1x and 4x the data (and the 4x data for 4 epochs: 16x the images), each in
    ``repeats`` fresh processes (median: allocator noise moves single runs by tens of MiB)."""
    out: dict[str, Any] = {"buffer_size": buffer_size, "repeats": repeats}
    probes = (("shards_raw", "1x", 1), ("shards_raw_4x", "4x", 1), ("shards_raw_4x", "16x", 4))
    for key, label, epochs in probes:
        cmd = [sys.executable, __file__, "--memory-probe", str(paths[key]), "--size", str(size),
               "--buffer-size", str(buffer_size), "--epochs", str(epochs)]
        runs = [_probe(cmd) for _ in range(repeats)]
        out[label] = {"images": runs[0]["images"],
                      "rss_before_mib": float(np.median([r["rss_before_mib"] for r in runs])),
                      "peak_rss_mib": float(np.median([r["peak_rss_mib"] for r in runs])),
                      "peak_rss_runs_mib": [r["peak_rss_mib"] for r in runs]}
    out["peak_ratio_4x_vs_1x"] = out["4x"]["peak_rss_mib"] / out["1x"]["peak_rss_mib"]
    return out


# ------------------------------------------------------------------------------------------- reporting
def report(results: list[Result], memory: dict[str, Any], meta: dict[str, Any], out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Loader throughput, one core, {meta['size']} px + cxr_train_transform "
                        f"(median of {meta['rounds']} rounds)")
    for col in ("variant", "storage", "images/s/core", "best", "wall images/s", "x vs (d)", "KB/image"):
        table.add_column(col, justify="left" if col in ("variant", "storage") else "right")
    for r in results:
        table.add_row(r.name, r.storage, f"{r.images_per_s:,.0f}", f"{r.best_images_per_s:,.0f}",
                      f"{r.wall_images_per_s:,.0f}", f"{r.ratio_vs_baseline:.1f}",
                      f"{r.bytes_per_image / 1000:,.0f}")
    console = Console()
    console.print(table)
    sizes = "; ".join(f"{m['images']} images: {m['peak_rss_mib']:.0f} MiB"
                      for m in (memory["1x"], memory["4x"], memory["16x"]))
    console.print(f"peak RSS streaming (after imports: {memory['1x']['rss_before_mib']:.0f} MiB) {sizes}; "
                  f"4x / 1x = {memory['peak_ratio_4x_vs_1x']:.2f}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "results": [asdict(r) for r in results], "memory": memory},
                              indent=2) + "\n")
    _chart(results, out.with_suffix(".png"), meta)


def _chart(results: list[Result], path: Path, meta: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    names = [r.name for r in results][::-1]
    values = [r.images_per_s for r in results][::-1]
    bars = ax.barh(names, values, color=["#999999" if n.startswith("(d") else "#2a6f97" for n in names])
    for bar, r in zip(bars, results[::-1], strict=True):
        ax.text(bar.get_width() * 1.05, bar.get_y() + bar.get_height() / 2,
                f"{r.images_per_s:,.0f}/s  ({r.ratio_vs_baseline:.1f}x)", va="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(right=max(values) * 8)
    ax.axvline(1500, color="#c0392b", linestyle="--", linewidth=1)
    ax.set_xlabel("images/s per core (log scale); dashed: goal 1,500")
    ax.set_title(f"rfm loader, {meta['size']} px with CXR augmentation, one core (ratios vs (d) 8-bit PNG)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------ CLI
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, help="where to build the data (kept; reused when it matches)")
    p.add_argument("--images", type=int, default=512, help="real CXRs in the shards (half from each set)")
    p.add_argument("--baseline-images", type=int, default=32, help="full-size PNGs per bit depth")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--min-seconds", type=float, default=2.0, help="per variant per round")
    p.add_argument("--buffer-size", type=int, default=256, help="shuffle buffer of the memory probe")
    p.add_argument("--out", type=Path, default=REPO / "tools" / "benchmarks" / "results" / "loader.json")
    p.add_argument("--memory-probe", help=argparse.SUPPRESS)
    p.add_argument("--epochs", type=int, default=1, help=argparse.SUPPRESS)
    return p


def _single_core() -> None:
    import pyarrow as pa

    torch.set_num_threads(1)
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.memory_probe:
        print(json.dumps(memory_probe(args.memory_probe, args.size, args.buffer_size, args.epochs)))
        return 0
    _single_core()
    with tempfile.TemporaryDirectory(prefix="rfm-bench-loader-") as tmp:
        workdir = args.workdir or Path(tmp)
        t0 = time.perf_counter()
        paths = build(workdir, args.images, args.baseline_images)
        print(f"data ready in {workdir} ({time.perf_counter() - t0:.0f} s)", flush=True)
        load_before = os.getloadavg()
        results = run_speed(paths, args.size, args.rounds, args.min_seconds)
        memory = run_memory(paths, args.size, args.buffer_size)
    meta = {"command": " ".join(["python", "tools/benchmarks/bench_loader.py", *(argv or sys.argv[1:])]),
            "size": args.size, "rounds": args.rounds, "images": args.images,
            "baseline_images": args.baseline_images, "batch_size": BATCH,
            "cpu": cpu_model(), "cores": os.cpu_count(),
            "load_average_before_after": [load_before[0], os.getloadavg()[0]],
            "python": platform.python_version(),
            "torch": torch.__version__, "pyarrow": __import__("pyarrow").__version__}
    report(results, memory, meta, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
