"""Tests of rfm_data.loader over shards written with ``write_shard`` from real CXRs of the development data.

The tests need no GPU and no network; the DDP and GCS ones run subprocesses (torchrun, the GCS emulator)."""

from __future__ import annotations

import csv
import itertools
import json
import pickle
import shutil
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from rfm_data import io
from rfm_data.config import Encoding
from rfm_data.errors import ConfigError
from rfm_data.loader import (
    ShardDataset,
    ShardLoader,
    StreamingShardDataset,
    build_index,
    collate,
    list_shards,
)
from rfm_data.shards import encode_pixels, shard_name, write_shard
from rfm_data.transforms import cxr_batch_item_transform, cxr_train_transform

SIDE = 64  # small real images keep every test in the seconds
SHARD_SIZES = (100, 90, 50)  # uneven, and 100 / 90 rows make two row groups of 64 + rest


# ------------------------------------------------------------------------------------------- fixtures
def _real_rows(shared_data: Path) -> list[dict[str, Any]]:
    """120 CXRs from each image set at 64 px long side; IU X-ray report sections on the pediatric ones."""
    with open(shared_data / "iu_xray_reports" / "reports.jsonl") as f:
        reports = [r for r in map(json.loads, f) if r["findings"] and r["impression"]][:120]
    rows: list[dict[str, Any]] = []
    for name in ("covid_chestxray_ieee8023", "pediatric_pneumonia_kermany"):
        with open(shared_data / name / "metadata.csv", newline="") as f:
            records = list(csv.DictReader(f))[:120]
        for i, r in enumerate(records):
            with Image.open(shared_data / name / r["image_path"]) as im:
                im = im.convert("L")
                scale = SIDE / max(im.size)
                im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))))
            section = reports[i] if name.startswith("pediatric") else {"findings": "", "impression": ""}
            rows.append({"sample_id": r["image_id"], "pixels": np.asarray(im), "patient_id": r["patient_id"],
                         "study_id": r["study_id"], "view": r["view"], "split": r["split"],
                         "report_text": r["report"], "report_findings": section["findings"],
                         "report_impression": section["impression"],
                         "labels": {"covid": int(r["label_covid19"] or 0),
                                    "pneumonia": int(r["label_pneumonia"] or 0)}})
    order = np.random.default_rng(0).permutation(len(rows))
    return [rows[i] for i in order]


def _write_dataset(url: str, rows: list[dict[str, Any]], encoding: Encoding = Encoding.RAW,
                   sizes: tuple[int, ...] = SHARD_SIZES, with_json: bool = True, bits: int = 8) -> None:
    entries, start = [], 0
    for k, size in enumerate(sizes):
        chunk = []
        for r in rows[start:start + size]:
            pixels = r["pixels"] if bits == 8 else r["pixels"].astype(np.uint16) * 257
            chunk.append({**{c: v for c, v in r.items() if c != "pixels"},
                          "image": encode_pixels(pixels, encoding), "height": pixels.shape[0],
                          "width": pixels.shape[1], "dtype": str(pixels.dtype), "encoding": encoding.value})
        write_shard(f"{url}/{shard_name(k)}", chunk, encoding)
        entries.append({"name": shard_name(k), "rows": len(chunk)})
        start += size
    if with_json:
        io.write_text(f"{url}/dataset.json", json.dumps({"shards": entries, "format": "rfm-shards"}))


@pytest.fixture(scope="module")
def rows(shared_data: Path) -> list[dict[str, Any]]:
    return _real_rows(shared_data)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, rows: list[dict[str, Any]]) -> str:
    url = str(tmp_path_factory.mktemp("ds") / "cxr")
    _write_dataset(url, rows)
    return url


@pytest.fixture(scope="module")
def by_id(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["sample_id"]: r for r in rows}


def _ids(batches: Any) -> list[str]:
    return [sid for b in batches for sid in b["sample_id"]]


def _small_train() -> Any:
    return cxr_train_transform(size=32)


def _square() -> Any:
    """Pads every image to SIDE x SIDE so batches collate (cheap: no resampling)."""
    return cxr_batch_item_transform(SIDE)


# ---------------------------------------------------------------------------------------------- listing
def test_shards_listed_from_dataset_json_else_globbed(dataset: str, tmp_path: Path) -> None:
    listed = list_shards(dataset)
    assert [s.name for s in listed] == [shard_name(k) for k in range(3)]
    assert [s.rows for s in listed] == list(SHARD_SIZES)

    copy = tmp_path / "noindex"
    shutil.copytree(dataset, copy)
    (copy / "dataset.json").unlink()
    (copy / "shards" / ".tmp-deadbeef-shard-00003.parquet").write_bytes(b"partial")  # a killed writer left it
    globbed = list_shards(str(copy))
    assert [s.name for s in globbed] == [s.name for s in listed] and all(s.rows is None for s in globbed)
    assert build_index(str(copy)).total == sum(SHARD_SIZES)


def test_dataset_json_row_mismatch_and_empty_dataset_are_config_errors(dataset: str, tmp_path: Path) -> None:
    copy = tmp_path / "bad"
    shutil.copytree(dataset, copy)
    meta = json.loads((copy / "dataset.json").read_text())
    meta["shards"][1]["rows"] += 1
    (copy / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match=r"dataset\.json says 91"):
        build_index(str(copy))
    with pytest.raises(ConfigError, match="no shards at"):
        list_shards(str(tmp_path / "empty"))


# -------------------------------------------------------------------------------------------- map-style
def test_items_carry_exact_pixels_and_metadata(dataset: str, by_id: dict[str, dict[str, Any]]) -> None:
    ds = ShardDataset(dataset)
    assert len(ds) == sum(SHARD_SIZES)
    seen = set()
    for i in range(len(ds)):
        item = ds[i]
        src = by_id[item["sample_id"]]
        seen.add(item["sample_id"])
        image = item["image"]
        assert image.dtype == torch.float32 and image.shape == (1, *src["pixels"].shape)
        np.testing.assert_array_equal(image[0].numpy(), src["pixels"].astype(np.float32) / np.float32(255))
        assert item["labels"] == src["labels"] and item["split"] == src["split"]
        assert item["view"] == src["view"]
        assert item["patient_id"] == src["patient_id"] and item["study_id"] == src["study_id"]
        assert item["findings"] == src["report_findings"] and item["impression"] == src["report_impression"]
        if src["report_findings"]:
            assert item["report"] == f"{src['report_findings']} {src['report_impression']}"
        else:
            assert item["report"] == src["report_text"]
    assert len(seen) == len(ds)
    assert ds[-1]["sample_id"] == ds[len(ds) - 1]["sample_id"]
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_split_filter(dataset: str, rows: list[dict[str, Any]]) -> None:
    expected = Counter(r["split"] for r in rows)
    for split in ("train", "val", "test"):
        ds = ShardDataset(dataset, split=split)
        assert len(ds) == expected[split] > 0
        assert {ds[i]["split"] for i in range(len(ds))} == {split}
    with pytest.raises(ConfigError, match="no samples"):
        ShardDataset(dataset, split="holdout")


def test_random_access_equals_sequential_with_bounded_cache(dataset: str) -> None:
    reference = ShardDataset(dataset)
    sequential = [reference[i]["sample_id"] for i in range(len(reference))]
    ds = ShardDataset(dataset, cache_row_groups=2)
    for i in np.random.default_rng(1).permutation(len(ds))[:80].tolist():
        assert ds[i]["sample_id"] == sequential[i]
        assert ds._reader.cached_groups <= 2


def test_pickled_dataset_has_no_open_files_and_loads_in_workers(dataset: str) -> None:
    ds = ShardDataset(dataset)
    first = ds[0]["sample_id"]  # opens a file and fills the cache
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._reader.cached_groups == 0 and not clone._reader._files
    assert clone[0]["sample_id"] == first
    loader = DataLoader(ds, batch_size=None, num_workers=2)
    assert sorted(item["sample_id"] for item in loader) == sorted(ds[i]["sample_id"] for i in range(len(ds)))


def test_png_and_uint16_shards_decode_like_raw_uint8(tmp_path: Path, rows: list[dict[str, Any]]) -> None:
    subset = rows[:70]
    urls = {}
    variants = (("raw8", Encoding.RAW, 8), ("png8", Encoding.PNG, 8), ("raw16", Encoding.RAW, 16),
                ("png16", Encoding.PNG, 16))
    for name, encoding, bits in variants:
        urls[name] = str(tmp_path / name)
        _write_dataset(urls[name], subset, encoding, sizes=(70,), bits=bits)
    reference = ShardDataset(urls["raw8"])
    for name, url in urls.items():
        ds = ShardDataset(url)
        for i in range(len(ds)):
            # 257 / 65535 == 1 / 255, so 16-bit copies of 8-bit pixels must give the same floats.
            torch.testing.assert_close(ds[i]["image"], reference[i]["image"], rtol=0, atol=1e-7, msg=name)


def test_fsspec_memory_url(rows: list[dict[str, Any]]) -> None:
    url = f"memory://rfm-test-{uuid.uuid4().hex}/cxr"
    _write_dataset(url, rows[:60], sizes=(30, 30))
    ds = ShardDataset(url, split=None)
    assert sorted(ds[i]["sample_id"] for i in range(len(ds))) == sorted(r["sample_id"] for r in rows[:60])
    stream = StreamingShardDataset(url, buffer_size=16)
    assert len(list(stream)) == 60


# -------------------------------------------------------------------------------------------- streaming
@pytest.mark.parametrize(("world", "workers"), [(1, 0), (1, 3), (2, 0), (3, 2)])
def test_every_sample_exactly_once_across_ranks_and_workers(dataset: str, world: int, workers: int) -> None:
    per_rank = []
    for rank in range(world):
        ds = StreamingShardDataset(dataset, _square(), rank=rank, world_size=world, buffer_size=40)
        ds.set_epoch(3)
        loader = ShardLoader(ds, batch_size=8, num_workers=workers)
        batches = list(loader)
        ids = _ids(batches)
        assert len(ids) == len(ds) and len(batches) == len(loader)
        per_rank.append(ids)
    flat = [sid for ids in per_rank for sid in ids]
    assert len(flat) == len(set(flat)) == sum(SHARD_SIZES)
    sizes = [len(ids) for ids in per_rank]
    assert max(sizes) - min(sizes) <= 1


def test_drop_remainder_gives_equal_ranks(dataset: str) -> None:
    world = 7  # 240 = 7 * 34 + 2
    sizes, flat = [], []
    for rank in range(world):
        ids = [item["sample_id"] for item in StreamingShardDataset(dataset, rank=rank, world_size=world,
                                                                   drop_remainder=True)]
        sizes.append(len(ids))
        flat += ids
    assert sizes == [34] * world and len(set(flat)) == 34 * world


def test_rank_samples_do_not_depend_on_worker_count(dataset: str) -> None:
    def ids(workers: int) -> list[str]:
        ds = StreamingShardDataset(dataset, _square(), rank=1, world_size=2, buffer_size=32)
        return _ids(ShardLoader(ds, batch_size=10, num_workers=workers))

    single, multi = ids(0), ids(2)
    assert sorted(single) == sorted(multi) and single != multi  # same samples, interleaved differently


def test_set_epoch_reshuffles_deterministically(dataset: str, rows: list[dict[str, Any]]) -> None:
    def order(epoch: int, **kw: Any) -> list[str]:
        ds = StreamingShardDataset(dataset, seed=7, buffer_size=48, **kw)
        ds.set_epoch(epoch)
        return [item["sample_id"] for item in ds]

    e0, e1 = order(0), order(1)
    assert e0 == order(0) and e1 == order(1) and e0 != e1 and sorted(e0) == sorted(e1)
    assert order(0, shuffle=False) == [r["sample_id"] for r in rows[:sum(SHARD_SIZES)]]
    # Row groups of different shards are interleaved (shard_interleave=4 > 3 shards): in storage order the
    # epoch would be 3 runs of one shard each.
    shard_of = {r["sample_id"]: k for k in range(len(SHARD_SIZES))
                for r in rows[sum(SHARD_SIZES[:k]):sum(SHARD_SIZES[:k + 1])]}
    runs = [sum(1 for a, b in itertools.pairwise(e) if shard_of[a] != shard_of[b]) + 1
            for e in (e0, e1, order(2), order(3))]
    assert max(runs) > len(SHARD_SIZES)


def test_split_filter_streaming(dataset: str, rows: list[dict[str, Any]]) -> None:
    ds = StreamingShardDataset(dataset, split="test", buffer_size=16)
    ids = [item["sample_id"] for item in ds]
    assert sorted(ids) == sorted(r["sample_id"] for r in rows if r["split"] == "test")


def test_memory_is_bounded_by_the_buffer_not_the_dataset(tmp_path: Path, rows: list[dict[str, Any]]) -> None:
    """Peak Arrow allocation while streaming 1x and 4x the data (each row copied 4 times)."""
    peaks = {}
    for copies in (1, 4):
        url = str(tmp_path / f"x{copies}")
        many = [{**r, "sample_id": f"{r['sample_id']}#{c}"} for c in range(copies) for r in rows]
        _write_dataset(url, many, sizes=(len(many) // 4,) * 4)
        ds = StreamingShardDataset(url, buffer_size=64, transform=_small_train())
        baseline, peak, count = pa.total_allocated_bytes(), 0, 0
        for _ in ds:
            peak, count = max(peak, pa.total_allocated_bytes() - baseline), count + 1
        assert count == len(many)
        peaks[copies] = peak
    stored = max(r["pixels"].nbytes for r in rows)
    assert peaks[4] <= 1.25 * peaks[1] + 64 * stored  # does not grow with the data
    assert peaks[4] < 0.5 * 4 * len(rows) * stored  # far below holding the 4x data (measured: ~35 %)


# ---------------------------------------------------------------------------------------------- resume
def _epoch(dataset: str, workers: int, epoch: int = 2) -> tuple[list[str], list[torch.Tensor]]:
    ds = StreamingShardDataset(dataset, transform=_small_train(), seed=5, buffer_size=40)
    loader = ShardLoader(ds, batch_size=16, num_workers=workers)
    loader.set_epoch(epoch)
    batches = list(loader)
    return _ids(batches), [img for b in batches for img in b["image"]]


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_yields_exactly_the_rest_in_order(dataset: str, workers: int) -> None:
    full_ids, full_images = _epoch(dataset, workers)
    ds = StreamingShardDataset(dataset, transform=_small_train(), seed=5, buffer_size=40)
    loader = ShardLoader(ds, batch_size=16, num_workers=workers)
    loader.set_epoch(2)
    head: list[str] = []
    for step, batch in enumerate(loader):  # with workers, more batches are prefetched than consumed here
        head += batch["sample_id"]
        if step == 2:
            state = loader.state_dict()
            break
    assert state["epoch"] == 2 and state["consumed"] == 48

    resumed = ShardLoader(StreamingShardDataset(dataset, transform=_small_train(), seed=5, buffer_size=40),
                          batch_size=16, num_workers=workers)
    resumed.load_state_dict(json.loads(json.dumps(state)))  # a state survives a JSON checkpoint
    resumed.set_epoch(state["epoch"])
    rest = list(resumed)
    assert head + _ids(rest) == full_ids
    for got, want in zip([img for b in rest for img in b["image"]], full_images[48:], strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)  # the augmentation resumes exactly too
    assert resumed.state_dict()["epoch"] == 3 and resumed.state_dict()["consumed"] == 0


def test_resume_with_other_worker_count_is_refused(dataset: str) -> None:
    ds = StreamingShardDataset(dataset, _square(), buffer_size=40)
    loader = ShardLoader(ds, batch_size=16, num_workers=2)
    state = None
    for batch_index, _ in enumerate(loader):
        if batch_index == 1:
            state = loader.state_dict()
            break
    other_ds = StreamingShardDataset(dataset, _square(), buffer_size=40)
    other = ShardLoader(other_ds, batch_size=16, num_workers=3)
    assert state is not None
    other.load_state_dict(state)
    with pytest.raises(ConfigError, match="num_workers=2"):
        next(iter(other))


def test_resume_direct_iteration(dataset: str) -> None:
    ds = StreamingShardDataset(dataset, seed=3, buffer_size=50)
    full = [item["sample_id"] for item in ds]
    ds2 = StreamingShardDataset(dataset, seed=3, buffer_size=50)
    it = iter(ds2)
    head = [next(it)["sample_id"] for _ in range(37)]
    state = ds2.state_dict()
    assert state["consumed"] == 37
    ds3 = StreamingShardDataset(dataset, seed=3, buffer_size=50)
    ds3.load_state_dict(state)
    assert head + [item["sample_id"] for item in ds3] == full
    with pytest.raises(ConfigError, match="seed"):
        StreamingShardDataset(dataset, seed=4, buffer_size=50).load_state_dict(state)
    with pytest.raises(ConfigError, match="split"):
        StreamingShardDataset(dataset, seed=3, buffer_size=50, split="train").load_state_dict(state)


def test_batch_level_augmentation_resumes_exactly(dataset: str) -> None:
    def loader() -> ShardLoader:
        ds = StreamingShardDataset(dataset, transform=cxr_batch_item_transform(SIDE), buffer_size=40)
        return ShardLoader(ds, batch_size=12, batch_transform=cxr_train_transform(size=48))

    full = list(loader())
    assert full[0]["image"].shape == (12, 1, 48, 48)
    first = loader()
    for step, _ in enumerate(first):
        if step == 4:
            state = first.state_dict()
            break
    again = loader()
    again.load_state_dict(state)
    rest = list(again)
    assert len(rest) == len(full) - 5
    for got, want in zip(rest, full[5:], strict=True):
        assert got["sample_id"] == want["sample_id"]
        torch.testing.assert_close(got["image"], want["image"], rtol=0, atol=0)


def test_rank_arguments_are_validated(dataset: str) -> None:
    with pytest.raises(ConfigError, match="both"):
        StreamingShardDataset(dataset, rank=1)
    with pytest.raises(ConfigError, match="rank=2"):
        StreamingShardDataset(dataset, rank=2, world_size=2)
    with pytest.raises(ConfigError, match="persistent_workers"):
        ShardLoader(StreamingShardDataset(dataset), batch_size=4, num_workers=1, persistent_workers=True)


_DDP_SCRIPT = """
import json, sys, torch.distributed as dist
from rfm_data.loader import ShardLoader, StreamingShardDataset
from rfm_data.transforms import cxr_batch_item_transform
dist.init_process_group("gloo")
# rank and world size come from torch.distributed
ds = StreamingShardDataset(sys.argv[1], cxr_batch_item_transform(64), buffer_size=32)
ds.set_epoch(1)
ids = [s for b in ShardLoader(ds, batch_size=8) for s in b["sample_id"]]
print("IDS", json.dumps({"rank": dist.get_rank(), "ids": ids}))
dist.destroy_process_group()
"""


@pytest.mark.integration
@pytest.mark.slow
def test_ddp_ranks_from_torchrun_partition_the_epoch(dataset: str, tmp_path: Path) -> None:
    script = tmp_path / "ddp.py"
    script.write_text(_DDP_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(script),
           dataset]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    results = [json.loads(line[4:]) for line in done.stdout.splitlines() if line.startswith("IDS ")]
    assert sorted(r["rank"] for r in results) == [0, 1]
    flat = [sid for r in results for sid in r["ids"]]
    assert len(flat) == len(set(flat)) == sum(SHARD_SIZES)


@pytest.mark.integration
def test_streams_from_gcs(gcs_emulator: Any, rows: list[dict[str, Any]]) -> None:
    url = f"{gcs_emulator.bucket_url}/loader-{uuid.uuid4().hex[:8]}"
    _write_dataset(url, rows[:80], sizes=(50, 30))
    ds = StreamingShardDataset(url, buffer_size=32, transform=_small_train())
    items = list(ds)
    assert sorted(i["sample_id"] for i in items) == sorted(r["sample_id"] for r in rows[:80])
    assert items[0]["image"].shape == (1, 32, 32)
    train = ShardDataset(url, split="train")
    assert train[0]["split"] == "train"
    train.close()


# ---------------------------------------------------------------------------------------------- collate
def test_collate_stacks_tensors_and_lists_the_rest(dataset: str) -> None:
    ds = ShardDataset(dataset, transform=cxr_batch_item_transform(SIDE))
    batch = collate([ds[i] for i in range(5)])
    assert batch["image"].shape == (5, 1, SIDE, SIDE)
    assert isinstance(batch["labels"], list) and isinstance(batch["labels"][0], dict)
    assert batch["sample_id"] == [ds[i]["sample_id"] for i in range(5)]
    raw = ShardDataset(dataset)
    sizes = {raw[i]["image"].shape for i in range(len(raw))}
    assert len(sizes) > 1  # real CXRs have different aspect ratios
    with pytest.raises(ValueError, match="shapes differ"):
        collate([raw[i] for i in range(len(raw))])
    with pytest.raises(ValueError, match="no items"):
        collate([])


# ------------------------------------------------------------------------------------------- packaging
_BLOCK_TORCH = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch' (blocked by the test)")
        return None
sys.meta_path.insert(0, Block())
import rfm_data, rfm_data.shards, rfm_data.io, rfm_data.manifest  # the core imports without torch
for module in ("rfm_data.loader", "rfm_data.transforms"):
    try:
        __import__(module)
    except ImportError as err:
        print(module, "|", err)
    else:
        print(module, "| imported")
"""


def test_without_torch_the_core_imports_and_loader_names_the_extra() -> None:
    done = subprocess.run([sys.executable, "-c", _BLOCK_TORCH], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" | ", 1) for line in done.stdout.splitlines())
    assert set(lines) == {"rfm_data.loader", "rfm_data.transforms"}
    for message in lines.values():
        assert 'pip install "rfm-data[torch]"' in message


# ----------------------------------------------------------------------------------------- with ingest
def test_loads_what_ingest_wrote(tmp_path: Path) -> None:
    """End to end on the bundled sample (no development data needed): ingest, then stream and index it."""
    from rfm_data.config import DeidConfig, IngestConfig
    from rfm_data.ingest import ingest
    from rfm_data.manifest import read_manifest

    dest = str(tmp_path / "sample")
    cfg = IngestConfig(shard_size=16, workers=1, deid=DeidConfig(key="loader-test-key"))
    ingest("sample", dest, cfg, progress=False)
    manifest = read_manifest(f"{dest}/manifest.parquet").to_pylist()
    accepted = {r["sample_id"]: r for r in manifest if r["status"] == "accepted"}
    assert len(list_shards(dest)) > 1 and all(s.rows for s in list_shards(dest))  # from dataset.json

    stream = StreamingShardDataset(dest, transform=_small_train(), buffer_size=20)
    items = list(stream)
    assert sorted(i["sample_id"] for i in items) == sorted(accepted)
    assert {tuple(i["image"].shape) for i in items} == {(1, 32, 32)}
    table = ShardDataset(dest)
    for i in range(len(table)):
        item, row = table[i], accepted[table[i]["sample_id"]]
        assert item["image"].shape == (1, row["height"], row["width"]) and item["split"] == row["split"]
        assert item["labels"] == dict(row["labels"]) and item["patient_id"] == row["patient_id"]


def test_iterating_the_loader_leaves_torch_global_rng_alone(dataset: str) -> None:
    # Exact resume of training relies on it: a resumed run creates one more DataLoader iterator than the
    # original run had at that point, and dropout masks come from the global RNG.
    loader = ShardLoader(StreamingShardDataset(dataset, seed=0, transform=_square()), batch_size=4)
    torch.manual_seed(123)
    before = torch.get_rng_state().clone()
    for _ in loader:
        pass
    assert torch.equal(torch.get_rng_state(), before)
