"""Ingestion: source items → decoded, de-identified, preprocessed shards plus a manifest of every input.

The plan (items split into shards of ``shard_size`` in adapter order) is deterministic, so a rerun after a
crash or ``kill -9`` skips the shards whose manifest part already exists and writes no duplicates. Each shard
is one task for a worker process; every input ends up in exactly one manifest row, accepted or quarantined.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from typing import Any

import pyarrow.parquet as pq
from tqdm.auto import tqdm

import rfm_data
from rfm_data import io
from rfm_data.adapters import guess_dataset, iter_items
from rfm_data.config import IngestConfig
from rfm_data.deid import Pseudonymizer
from rfm_data.errors import ConfigError, QuarantineError, Reason
from rfm_data.manifest import MANIFEST_SCHEMA, SCHEMA_VERSION, to_table
from rfm_data.process import process_item, quarantined_row
from rfm_data.readers import ReadOptions
from rfm_data.records import SourceItem
from rfm_data.shards import SHARD_FORMAT_VERSION, ShardWriter, shard_name
from rfm_data.summary import DatasetSummary, summarise_manifest

log = logging.getLogger(__name__)
MANIFEST_NAME = "manifest.parquet"
DATASET_JSON = "dataset.json"
PLAN_JSON = "plan.json"


@dataclass
class ShardTask:
    index: int
    items: list[SourceItem]
    duplicates: list[bool]  # True where the sample_id was already used by an earlier item of the plan


@dataclass
class IngestResult:
    """What an ingest run produced. ``summary.accepted + summary.quarantined == summary.total`` always."""

    dest: str
    dataset: str
    summary: DatasetSummary
    shards: list[dict[str, Any]]
    resumed_shards: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.summary.total / self.seconds if self.seconds > 0 else 0.0


def part_name(index: int) -> str:
    return f"parts/part-{index:05d}.parquet"


def plan_shards(items: Sequence[SourceItem], shard_size: int) -> list[ShardTask]:
    """Split items into shard tasks in order; later items reusing a sample_id are marked duplicates."""
    seen: set[str] = set()
    flags = []
    for item in items:
        flags.append(item.sample_id in seen)
        seen.add(item.sample_id)
    return [
        ShardTask(i // shard_size, list(items[i : i + shard_size]), flags[i : i + shard_size])
        for i in range(0, len(items), shard_size)
    ]


def _fingerprint(items: Sequence[SourceItem], cfg: IngestConfig, dataset: str) -> str:
    h = hashlib.sha256()
    settings = {**asdict(cfg), "deid": None, "workers": None}  # the key and parallelism may change on resume
    h.update(json.dumps({"cfg": settings, "dataset": dataset}, sort_keys=True, default=str).encode())
    for item in items:
        h.update(f"{item.sample_id}\x00{item.uri}\n".encode())
    return h.hexdigest()


def _check_or_write_plan(dest: str, fingerprint: str, tasks: Sequence[ShardTask]) -> None:
    url = io.join(dest, PLAN_JSON)
    if io.exists(url):
        if json.loads(io.read_text(url)).get("fingerprint") != fingerprint:
            raise ConfigError(
                f"{dest} holds an ingest of other inputs or settings: choose a new DEST_URL, or delete it to "
                "start over (a rerun resumes only the same source with the same options)"
            )
        return
    io.write_text(url, json.dumps({"fingerprint": fingerprint, "shards": len(tasks)}))


def _remove_temporaries(dest: str) -> None:
    """Delete leftovers of writers killed mid-write (atomic writes use ``.tmp-`` names)."""
    fs, root = io.filesystem(dest)
    for sub in ("shards", "parts"):
        path = f"{root}/{sub}"
        if fs.exists(path):
            for name in fs.ls(path, detail=False):
                if name.rsplit("/", 1)[-1].startswith(".tmp-"):
                    fs.rm(name)


def _shard_rows(task: ShardTask, dest: str, cfg: IngestConfig, options: ReadOptions) -> list[dict[str, Any]]:
    rows = []
    name = shard_name(task.index)
    with ShardWriter(io.join(dest, name), cfg.preprocess.encoding) as writer:
        for item, duplicate in zip(task.items, task.duplicates, strict=True):
            if duplicate:
                err = QuarantineError(Reason.DUPLICATE_ID, "sample_id already used by an earlier input")
                rows.append(quarantined_row(item, err))
                continue
            result = process_item(item, options, cfg)
            if result.shard_row is not None:
                result.manifest_row.update(shard=name, shard_row=writer.count)
                writer.add(result.shard_row)
            rows.append(result.manifest_row)
    return rows


def run_shard(task: ShardTask, dest: str, cfg: IngestConfig, key: bytes) -> tuple[int, bool]:
    """Worker body: ingest one shard. Returns (index, resumed). The manifest part is written last."""
    part_url = io.join(dest, part_name(task.index))
    if io.exists(part_url):
        return task.index, True
    options = ReadOptions(pseudonymize=Pseudonymizer(key), dicom=cfg.dicom, burned_in=cfg.deid.burned_in,
                          decode_long_side=2 * cfg.preprocess.long_side if cfg.dicom.reduced_decode else None)
    rows = _shard_rows(task, dest, cfg, options)
    for row in rows:
        if row["status"] == "quarantined":
            log.info("quarantined %s: %s", row["sample_id"], row["reason"])
    with io.atomic_write(part_url) as f:
        pq.write_table(to_table(rows), f, compression="zstd")
    return task.index, False


def _execute(tasks: Sequence[ShardTask], dest: str, cfg: IngestConfig, key: bytes, progress: bool) -> int:
    """Run all shard tasks (in worker processes when workers > 1); returns how many were resumed."""
    workers = min(cfg.workers or os.cpu_count() or 1, max(len(tasks), 1))
    bar = tqdm(total=sum(len(t.items) for t in tasks), desc="ingest", unit="img", disable=not progress)
    resumed = 0
    if workers == 1:
        results: Iterator[tuple[int, bool]] = (run_shard(t, dest, cfg, key) for t in tasks)
        for (_, was_resumed), task in zip(results, tasks, strict=True):
            resumed += was_resumed
            bar.update(len(task.items))
    else:
        # spawn, not fork: fsspec/gcsfs hold threads and event loops that do not survive a fork.
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(run_shard, t, dest, cfg, key): t for t in tasks}
            for future in as_completed(futures):
                resumed += future.result()[1]
                bar.update(len(futures[future].items))
    bar.close()
    return resumed


def _merge_parts(dest: str, tasks: Sequence[ShardTask]) -> None:
    """Concatenate the manifest parts in plan order, streaming (memory bounded by one part)."""
    with io.atomic_write(io.join(dest, MANIFEST_NAME)) as f, pq.ParquetWriter(
        f, MANIFEST_SCHEMA, compression="zstd"
    ) as writer:
        for task in tasks:
            writer.write_table(io.read_parquet(io.join(dest, part_name(task.index))).cast(MANIFEST_SCHEMA))


def _shard_list(dest: str, tasks: Sequence[ShardTask]) -> list[dict[str, Any]]:
    fs, _ = io.filesystem(dest)
    shards = []
    for task in tasks:
        url = io.join(dest, shard_name(task.index))
        rows = io.parquet_rows(url)
        if rows:
            shards.append({"name": shard_name(task.index), "rows": rows})
        else:  # every item of this shard was quarantined: an empty shard is noise for loaders
            fs.rm(io.filesystem(url)[1])
    return shards


def ingest(
    source: str,
    dest: str,
    cfg: IngestConfig | None = None,
    dataset: str | None = None,
    adapter_options: dict[str, Any] | None = None,
    progress: bool = True,
) -> IngestResult:
    """Ingest ``source`` (read with the ``dataset`` adapter; guessed when None) into shards at ``dest``.

    Args:
        source: dataset root URL, a table URL, or ``"sample"`` for the bundled sample.
        dest: output dataset URL (local path, ``gs://...``, ...). Reruns resume.
        cfg: ingestion options; defaults to :class:`IngestConfig`.
        dataset: adapter name (``rfm_data.adapters.list_datasets()``).
        adapter_options: keyword options for the adapter.
        progress: show a progress bar.

    Returns:
        The summary of the whole dataset at ``dest`` (including shards resumed from an earlier run).
    """
    cfg = cfg or IngestConfig()
    key = cfg.deid.resolve_key()  # fail before any work when the key is missing
    start = time.perf_counter()
    dataset = dataset or guess_dataset(source)
    items = list(iter_items(dataset, source, **(adapter_options or {})))
    if not items:
        raise ConfigError(f"the {dataset!r} adapter found no inputs under {source}: check SOURCE and --dataset")
    tasks = plan_shards(items, cfg.shard_size)
    io.makedirs(dest)
    _check_or_write_plan(dest, _fingerprint(items, cfg, dataset), tasks)
    _remove_temporaries(dest)
    resumed = _execute(tasks, dest, cfg, key, progress)
    _merge_parts(dest, tasks)
    shards = _shard_list(dest, tasks)
    summary = summarise_manifest(io.join(dest, MANIFEST_NAME))
    if summary.total != len(items):  # the accounting invariant; a failure here is a bug, not bad input
        raise RuntimeError(f"manifest has {summary.total} rows for {len(items)} inputs")
    seconds = time.perf_counter() - start
    _write_dataset_json(dest, dataset, source, cfg, summary, shards)
    return IngestResult(dest, dataset, summary, shards, resumed, seconds)


def _write_dataset_json(
    dest: str, dataset: str, source: str, cfg: IngestConfig, summary: DatasetSummary, shards: list[dict[str, Any]]
) -> None:
    resolved = asdict(cfg)
    resolved["deid"]["key"] = "<redacted>" if cfg.deid.key else None
    doc = {
        "rfm_data_version": rfm_data.__version__,
        "manifest_schema_version": SCHEMA_VERSION,
        "shard_format_version": SHARD_FORMAT_VERSION,
        "dataset": dataset,
        "source": source,
        "manifest": MANIFEST_NAME,
        "shards": shards,
        "counts": summary.to_dict(),
        "config": resolved,
    }
    io.write_text(io.join(dest, DATASET_JSON), json.dumps(doc, indent=2, sort_keys=True, default=str))
