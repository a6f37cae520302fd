"""Torch datasets over rfm shards: map-style random access and deterministic, resumable streaming.

A dataset URL holds ``shards/shard-NNNNN.parquet`` (see :mod:`rfm_data.shards`) and usually ``dataset.json``
listing them; the loaders read that list, else glob the shards. Files are opened lazily in the process that
reads them (DataLoader workers included): no open handle is ever pickled, and a forked worker re-opens.

Items are dicts: ``image`` float32 ``(1, H, W)`` in [0, 1] (uint8 / 255, uint16 / 65535), ``report``
(findings + impression, else the whole text), ``findings``, ``impression``, ``labels`` (name → int),
``sample_id``, ``patient_id``, ``study_id``, ``view``, ``split``. :func:`collate` stacks tensors and keeps the
rest as lists.

Streaming order and partitioning (:class:`StreamingShardDataset`), per epoch:

1. Shards are permuted with ``(seed, epoch)``; groups of ``shard_interleave`` consecutive shards have their
   row groups permuted together (mixes sources within a window while each shard is still read once).
2. That sequence of N samples is cut into ``world_size`` contiguous rank slices whose sizes differ by at most
   one (``drop_remainder=True`` drops the last ``N mod world_size`` samples of the epoch's order instead, so
   every rank runs the same number of steps, as DDP without ``Join`` needs). Each rank slice is cut the same
   way into one contiguous slice per DataLoader worker. Every sample is read exactly once per epoch across
   ranks x workers, and a rank's samples do not depend on its worker count.
3. Each worker shuffles consecutive windows of ``buffer_size`` samples (aligned to row groups); memory holds
   one window of row groups, whatever the dataset size.

Everything above is computed from Parquet footers only, so a position is a pair (epoch, samples consumed by
the training loop) and resuming skips without reading the skipped data. With workers, the DataLoader
delivers whole batches round-robin from the workers; :class:`ShardLoader` counts what it hands to the loop
(not what workers prefetched) and replays that round-robin on resume, so the resumed run yields exactly the
remaining samples in the same order. Augmentation is seeded per sample from ``(seed, epoch, position)``, so
resumed samples are augmented identically too.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rfm_data import io
from rfm_data.errors import ConfigError
from rfm_data.shards import SHARD_COLUMNS, decode_pixels

try:
    import torch
    from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info
except ImportError as err:  # the core package stays importable without torch
    raise ImportError('rfm_data.loader needs torch: pip install "rfm-data[torch]"') from err

from rfm_data.transforms import mix_seed

Item: TypeAlias = dict[str, Any]
ItemTransform: TypeAlias = Callable[[Item], Item]

DATASET_JSON = "dataset.json"
_FULL_SCALE = {"uint8": np.float32(255), "uint16": np.float32(65535)}  # dividing rounds exactly
_META_COLUMNS = [c for c in SHARD_COLUMNS if c != "image"]

__all__ = ["DATASET_JSON", "ShardDataset", "ShardIndex", "ShardInfo", "ShardLoader", "StreamingShardDataset",
           "build_index", "collate", "list_shards"]


# ---------------------------------------------------------------------------------------------- listing
@dataclass(frozen=True)
class ShardInfo:
    """One shard: its name relative to the dataset URL, its URL, and its row count when ``dataset.json``
    records it."""

    name: str
    url: str
    rows: int | None = None


def list_shards(url: str) -> list[ShardInfo]:
    """The shards of the dataset at ``url``: from ``dataset.json`` when present, else ``shards/*.parquet``."""
    meta_url = io.join(url, DATASET_JSON)
    if io.exists(meta_url):
        entries = json.loads(io.read_text(meta_url)).get("shards")
        if not isinstance(entries, list) or not entries:
            raise ConfigError(f"{meta_url} has no 'shards' list: was ingest interrupted? Re-run it.")
        return [ShardInfo(e["name"], io.join(url, e["name"]), int(e["rows"]) if "rows" in e else None)
                for e in entries]
    shard_dir = io.join(url, "shards")
    files = io.list_files(shard_dir, (".parquet",), recursive=False) if io.exists(shard_dir) else []
    # Atomic writes leave ".tmp-*" siblings only while a writer runs (or after it was killed): never data.
    basenames = [f.rsplit("/", 1)[-1] for f in files]
    names = sorted(f"shards/{name}" for name in basenames if not name.startswith("."))
    if not names:
        raise ConfigError(f"no shards at {url}: expected {meta_url} or {shard_dir}/*.parquet "
                          "(rfm-data ingest writes them)")
    return [ShardInfo(n, io.join(url, n)) for n in names]


# ------------------------------------------------------------------------------------------------ index
@dataclass
class ShardIndex:
    """Row-group layout of a dataset (optionally one split), read from Parquet footers once.

    A *unit* is one row group with at least one selected row; ``unit_rows[u]`` lists the selected rows
    inside the group (``None`` = all of them).
    """

    urls: list[str]
    unit_shard: np.ndarray
    unit_group: np.ndarray
    unit_len: np.ndarray
    unit_rows: list[np.ndarray | None]
    offsets: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.offsets = np.concatenate([[0], np.cumsum(self.unit_len)]).astype(np.int64)

    @property
    def total(self) -> int:
        """Selected samples in the dataset."""
        return int(self.offsets[-1])

    def row(self, unit: int, k: int) -> int:
        """Row (inside its row group) of the ``k``-th selected sample of ``unit``."""
        rows = self.unit_rows[unit]
        return k if rows is None else int(rows[k])

    def units_of_shard(self) -> list[np.ndarray]:
        """Unit indices of each shard, in shard order."""
        return [np.flatnonzero(self.unit_shard == s) for s in range(len(self.urls))]

    def fingerprint(self) -> str:
        """Identifies the layout (shard names, selected rows per row group), not where the dataset lives."""
        digest = hashlib.sha1()
        for url in self.urls:
            digest.update(url.rsplit("/", 1)[-1].encode() + b"\0")
        digest.update(self.unit_shard.tobytes() + self.unit_group.tobytes() + self.unit_len.tobytes())
        for rows in self.unit_rows:
            digest.update(b"*" if rows is None else rows.tobytes())
        return digest.hexdigest()[:16]


def _selected_rows(pf: pq.ParquetFile, split: str | None, ids: AbstractSet[str] | None) -> np.ndarray:
    """Boolean mask over a shard's rows: in ``split`` (when given) and in ``ids`` (when given)."""
    columns = (["split"] if split is not None else []) + (["sample_id"] if ids is not None else [])
    table = pf.read(columns=columns, use_threads=False)
    mask = np.ones(table.num_rows, dtype=bool)
    if split is not None:
        mask &= table.column("split").to_numpy(zero_copy_only=False) == split
    if ids is not None:
        mask &= np.fromiter((i in ids for i in table.column("sample_id").to_pylist()), bool, table.num_rows)
    return mask


def _shard_layout(shard: ShardInfo, split: str | None,
                  ids: AbstractSet[str] | None = None) -> list[tuple[int, int, np.ndarray | None]]:
    """``(group, selected count, selected rows or None)`` per non-empty row group of one shard."""
    fs, path = io.filesystem(shard.url)
    with fs.open(path, "rb") as f:
        pf = pq.ParquetFile(f)
        meta = pf.metadata
        if shard.rows is not None and meta.num_rows != shard.rows:
            raise ConfigError(f"{shard.url} has {meta.num_rows} rows but dataset.json says {shard.rows}: the "
                              "dataset was modified or ingest did not finish; re-run ingest")
        sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        if split is None and ids is None:
            return [(g, n, None) for g, n in enumerate(sizes) if n]
        selected = _selected_rows(pf, split, ids)
    out: list[tuple[int, int, np.ndarray | None]] = []
    start = 0
    for g, n in enumerate(sizes):
        rows = np.flatnonzero(selected[start:start + n]).astype(np.int32)
        if len(rows):
            out.append((g, len(rows), rows))
        start += n
    return out


def build_index(url: str, split: str | None = None, threads: int = 8,
                ids: AbstractSet[str] | None = None) -> ShardIndex:
    """Index the dataset at ``url`` (only ``split`` and only the samples in ``ids`` when given); footers
    are fetched concurrently (it matters on object stores)."""
    shards = list_shards(url)
    with ThreadPoolExecutor(max(1, min(threads, len(shards)))) as pool:
        layouts = list(pool.map(lambda s: _shard_layout(s, split, ids), shards))
    units = [(s, g, n, rows) for s, layout in enumerate(layouts) for g, n, rows in layout]
    if not units:
        where = "".join([f" with split {split!r}" if split else "",
                         f" among the {len(ids)} ids of the subset" if ids is not None else ""])
        raise ConfigError(f"no samples at {url}{where}")
    return ShardIndex(
        urls=[s.url for s in shards],
        unit_shard=np.array([u[0] for u in units], np.int32),
        unit_group=np.array([u[1] for u in units], np.int32),
        unit_len=np.array([u[2] for u in units], np.int64),
        unit_rows=[u[3] for u in units],
    )


# ----------------------------------------------------------------------------------------------- reading
class _Block:
    """One decoded row group: metadata as Python lists, images still encoded (decoded per item)."""

    __slots__ = ("images", "meta")

    def __init__(self, table: pa.Table) -> None:
        self.images = table.column("image").combine_chunks()
        self.meta = {name: table.column(name).to_pylist() for name in _META_COLUMNS}

    def item(self, row: int) -> Item:
        """The item dict of ``row`` (pixels decoded now)."""
        m = self.meta
        dtype = m["dtype"][row]
        if dtype not in _FULL_SCALE:
            raise ConfigError(f"unsupported pixel dtype {dtype!r} in a shard (rfm-data writes uint8, uint16)")
        pixels = decode_pixels(self.images[row].as_py(), m["height"][row], m["width"][row], dtype,
                               m["encoding"][row])
        image = pixels.astype(np.float32)
        image /= _FULL_SCALE[dtype]
        findings, impression = m["report_findings"][row] or "", m["report_impression"][row] or ""
        return {
            "image": torch.from_numpy(image)[None],
            "report": " ".join(p for p in (findings, impression) if p) or (m["report_text"][row] or ""),
            "findings": findings,
            "impression": impression,
            "labels": dict(m["labels"][row] or []),
            "sample_id": m["sample_id"][row],
            "patient_id": m["patient_id"][row] or "",
            "study_id": m["study_id"][row] or "",
            "view": m["view"][row] or "",
            "split": m["split"][row] or "",
        }


class _RowGroupReader:
    """Per-process Parquet access: lazily opened files (a few, LRU) and an LRU cache of row groups."""

    def __init__(self, urls: Sequence[str], cache_groups: int, max_open: int = 8) -> None:
        self.urls, self.cache_groups, self.max_open = list(urls), cache_groups, max_open
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._files: OrderedDict[int, tuple[Any, pq.ParquetFile]] = OrderedDict()
        self._cache: OrderedDict[tuple[int, int], _Block] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        # Open handles and cached blocks never travel to workers: each process opens its own.
        return {"urls": self.urls, "cache_groups": self.cache_groups, "max_open": self.max_open}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def close(self) -> None:
        """Close the files this process opened (a later read re-opens them)."""
        if self._pid == os.getpid():  # a forked child must not close what its parent still uses
            for handle, pf in self._files.values():
                pf.close()
                if handle is not None:
                    handle.close()
        self._reset()

    def _file(self, shard: int) -> pq.ParquetFile:
        if self._pid != os.getpid():  # forked: the parent's handles share file offsets with it
            self._reset()
        if shard in self._files:
            self._files.move_to_end(shard)
            return self._files[shard][1]
        url = self.urls[shard]
        if io.protocol_of(url) == "file":  # Arrow's native reader: no Python call per read
            handle: Any = None
            pf = pq.ParquetFile(io.filesystem(url)[1])
        else:
            fs, path = io.filesystem(url)
            handle = fs.open(path, "rb")
            # No pre_buffer: its Arrow futures hold Python buffers and can abort the interpreter at exit.
            pf = pq.ParquetFile(handle, pre_buffer=False)
        self._files[shard] = (handle, pf)
        while len(self._files) > self.max_open:
            old_handle, old_pf = self._files.popitem(last=False)[1]
            old_pf.close()
            if old_handle is not None:
                old_handle.close()
        return pf

    def read(self, shard: int, group: int) -> _Block:
        """Read and decode one row group (uncached)."""
        table = self._file(shard).read_row_group(group, columns=SHARD_COLUMNS, use_threads=False)
        return _Block(table)

    def cached(self, shard: int, group: int) -> _Block:
        """Like :meth:`read`, through the LRU cache of ``cache_groups`` row groups."""
        if self._pid != os.getpid():
            self._reset()
        key = (shard, group)
        block = self._cache.get(key)
        if block is None:
            block = self._cache[key] = self.read(shard, group)
            while len(self._cache) > self.cache_groups:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return block

    @property
    def cached_groups(self) -> int:
        """Row groups currently cached in this process."""
        return len(self._cache)


def _finish(item: Item, transform: ItemTransform | None, seed: int) -> Item:
    if transform is None:
        return item
    reseed = getattr(transform, "set_random_state", None)
    if reseed is not None:
        reseed(seed)
    return transform(item)


# ------------------------------------------------------------------------------------------- map-style
class ShardDataset(Dataset[Item]):
    """Map-style dataset over shards: ``ds[i]`` reads (and caches) the row group holding sample ``i``.

    Random access reads a whole row group (64 rows) per miss, so a uniformly shuffled epoch over a large
    dataset reads each group up to 64 times: use it for evaluation, small datasets and samplers that visit
    groups together; train on large datasets with :class:`StreamingShardDataset`.

    Args:
        url: dataset URL (any fsspec protocol).
        transform: dict transform applied to each item (re-seeded per item from ``(seed, epoch, i)``).
        split: keep only samples of this split (``train`` / ``val`` / ``test``); ``None`` keeps all.
        cache_row_groups: decoded row groups kept per process (memory ≈ this x 64 images).
        seed: seed of the per-item augmentation.
        ids: keep only these sample ids (a subset, e.g. :func:`rfm_data.subsets.read_sample_ids`).
    """

    def __init__(self, url: str, transform: ItemTransform | None = None, split: str | None = None,
                 cache_row_groups: int = 8, seed: int = 0, ids: AbstractSet[str] | None = None) -> None:
        self.url, self.transform, self.split, self.seed = url, transform, split, seed
        self.epoch = 0
        self.index = build_index(url, split, ids=ids)
        self._reader = _RowGroupReader(self.index.urls, cache_row_groups)

    def __len__(self) -> int:
        return self.index.total

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation draws (call once per epoch)."""
        self.epoch = epoch

    def close(self) -> None:
        """Close open shard files and drop cached row groups (reads re-open them)."""
        self._reader.close()

    def __getitem__(self, i: int) -> Item:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} samples")
        i %= n
        unit = int(np.searchsorted(self.index.offsets, i, side="right")) - 1
        block = self._reader.cached(int(self.index.unit_shard[unit]), int(self.index.unit_group[unit]))
        item = block.item(self.index.row(unit, i - int(self.index.offsets[unit])))
        return _finish(item, self.transform, mix_seed(self.seed, self.epoch, i))


# ------------------------------------------------------------------------------------------- streaming
@dataclass(frozen=True)
class _Piece:
    """Selected samples ``lo:hi`` of one unit; ``start`` is the epoch position of sample ``lo``."""

    unit: int
    lo: int
    hi: int
    start: int


def _split_range(n: int, parts: int, i: int) -> tuple[int, int]:
    return i * n // parts, (i + 1) * n // parts


def _dist_info(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is None and world_size is None:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1
    if rank is None or world_size is None or not 0 <= rank < world_size:
        raise ConfigError(f"rank={rank}, world_size={world_size}: pass both (0 <= rank < world_size) "
                          "or neither")
    return rank, world_size


def _replay_round_robin(lengths: Sequence[int], batch_size: int, drop_last: bool,
                        consumed: int) -> tuple[list[int], int]:
    """Per-worker samples consumed, and the worker due next, after the loop got ``consumed`` samples.

    A DataLoader over an IterableDataset takes whole batches from its workers in turn, skipping exhausted
    ones, whatever their timing: replaying that is exact.
    """
    batches = [n // batch_size + int(bool(n % batch_size) and not drop_last) for n in lengths]
    taken, pos, nxt, left = [0] * len(lengths), [0] * len(lengths), 0, consumed
    while left > 0:
        if taken == batches:
            raise ConfigError(f"position {consumed} is past the end of the epoch")
        if taken[nxt] < batches[nxt]:
            size = min(batch_size, lengths[nxt] - pos[nxt])
            if size > left:
                raise ConfigError(f"position {consumed} is not on a batch boundary "
                                  f"of batch_size={batch_size}")
            pos[nxt], taken[nxt], left = pos[nxt] + size, taken[nxt] + 1, left - size
        nxt = (nxt + 1) % len(lengths)
    return pos, nxt


_ORDER_KEYS = ("seed", "shuffle", "buffer_size", "shard_interleave", "drop_remainder", "split", "dataset",
               "rank", "world_size", "samples")  # what fixes the order; checked in this order on resume


class StreamingShardDataset(IterableDataset[Item]):
    """Streams shards in a deterministic shuffled order, partitioned across DDP ranks and DataLoader workers.

    See the module docstring for the order, the partitioning policy and resumption. Call
    :meth:`set_epoch` at the start of every epoch (as with ``DistributedSampler``); iterate through
    :class:`ShardLoader` to get positions that count what the training loop consumed.

    Args:
        url: dataset URL (any fsspec protocol).
        transform: dict transform applied to each item (re-seeded per item from ``(seed, epoch, position)``).
        shuffle: shuffle shards, row groups and samples (``False``: storage order, still partitioned).
        seed: seed of the order and of the augmentation.
        buffer_size: samples shuffled together per worker; memory ≈ this many stored images per worker.
        split: keep only samples of this split; ``None`` keeps all.
        shard_interleave: shards whose row groups are mixed together.
        rank, world_size: the DDP position; default from ``torch.distributed`` when initialised, else (0, 1).
        drop_remainder: drop ``N mod world_size`` samples per epoch so that ranks get equal counts.
        ids: stream only these sample ids (an offline subset, e.g. :func:`rfm_data.subsets.read_sample_ids`);
            the order's fingerprint covers them, so resuming with another subset is refused.
    """

    def __init__(self, url: str, transform: ItemTransform | None = None, shuffle: bool = True, seed: int = 0,
                 buffer_size: int = 512, split: str | None = None, *, shard_interleave: int = 4,
                 rank: int | None = None, world_size: int | None = None,
                 drop_remainder: bool = False, ids: AbstractSet[str] | None = None) -> None:
        if buffer_size < 1 or shard_interleave < 1:
            raise ConfigError(f"buffer_size={buffer_size} and shard_interleave={shard_interleave} "
                              "must be >= 1")
        self.url, self.transform, self.shuffle, self.seed = url, transform, shuffle, seed
        self.buffer_size, self.split, self.shard_interleave = buffer_size, split, shard_interleave
        self.drop_remainder = drop_remainder
        self._dist_args = (rank, world_size)
        self.rank, self.world_size = _dist_info(rank, world_size)
        self.index = build_index(url, split, ids=ids)
        self._fingerprint = self.index.fingerprint()
        self._units_of_shard = self.index.units_of_shard()
        self._reader = _RowGroupReader(self.index.urls, cache_groups=0)
        self.epoch = 0
        self.consumed = 0  # samples of this epoch the training loop has received on this rank
        self.batch_size: int | None = None  # set by ShardLoader: needed to replay worker round-robin
        self.drop_last = False
        self.counted_by_loader = False

    # -- position --------------------------------------------------------------------------------------
    def refresh_distributed(self) -> None:
        """Re-read rank / world size (when ``torch.distributed`` was initialised after construction)."""
        self.rank, self.world_size = _dist_info(*self._dist_args)

    def _rank_range(self) -> tuple[int, int]:
        total = self.index.total
        if self.drop_remainder:
            total -= total % self.world_size
        return _split_range(total, self.world_size, self.rank)

    def __len__(self) -> int:
        """Samples of this rank per epoch."""
        start, stop = self._rank_range()
        return stop - start

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's order. A new epoch starts at its beginning; the current one (e.g. just loaded
        with :meth:`load_state_dict`) keeps its position."""
        self.refresh_distributed()
        if epoch != self.epoch:
            self.epoch, self.consumed = epoch, 0

    def state_dict(self) -> dict[str, Any]:
        """Where the training loop is: ``epoch`` and ``consumed`` samples of it (a finished epoch is reported
        as the start of the next), plus what must match on resume."""
        epoch, consumed = (self.epoch + 1, 0) if self._epoch_done() else (self.epoch, self.consumed)
        return {"epoch": epoch, "consumed": consumed, "seed": self.seed, "shuffle": self.shuffle,
                "buffer_size": self.buffer_size, "shard_interleave": self.shard_interleave,
                "drop_remainder": self.drop_remainder, "rank": self.rank, "world_size": self.world_size,
                "samples": len(self), "split": self.split, "dataset": self._fingerprint}

    def _epoch_done(self) -> bool:
        # With drop_last, fewer samples left than a batch means no batch will come: the epoch is over now,
        # not after one more (empty) pass, so a checkpoint taken here resumes at the next epoch.
        left = len(self) - self.consumed
        return left <= 0 or (self.drop_last and self.batch_size is not None and left < self.batch_size)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from :meth:`state_dict`; the order-defining settings must be the same."""
        here = self.state_dict()
        for key in _ORDER_KEYS:
            if key in state and state[key] != here[key]:
                raise ConfigError(f"cannot resume: {key}={state[key]!r} in the state but {here[key]!r} here; "
                                  "resume with the same dataset and settings")
        self.epoch, self.consumed = int(state["epoch"]), int(state["consumed"])

    # -- order -----------------------------------------------------------------------------------------
    def _epoch_units(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.index.unit_len))
        rng = np.random.default_rng(mix_seed(self.seed, self.epoch))
        shards = rng.permutation(len(self.index.urls))
        groups = [np.concatenate([self._units_of_shard[s] for s in shards[i:i + self.shard_interleave]])
                  for i in range(0, len(shards), self.shard_interleave)]
        return np.concatenate([rng.permutation(g) for g in groups])

    def _pieces(self, start: int, stop: int) -> list[_Piece]:
        """The epoch's samples ``start:stop`` as pieces of units, in order."""
        order = self._epoch_units()
        ends = np.cumsum(self.index.unit_len[order])
        pieces = []
        for j in range(int(np.searchsorted(ends, start, side="right")), len(order)):
            first = int(ends[j] - self.index.unit_len[order[j]])
            if first >= stop:
                break
            lo, hi = max(start, first) - first, min(stop, int(ends[j])) - first
            pieces.append(_Piece(int(order[j]), lo, hi, first + lo))
        return pieces

    def _windows(self, pieces: Sequence[_Piece]) -> Iterator[list[_Piece]]:
        window: list[_Piece] = []
        size = 0
        for piece in pieces:
            window.append(piece)
            size += piece.hi - piece.lo
            if size >= self.buffer_size or not self.shuffle:
                yield window
                window, size = [], 0
        if window:
            yield window

    def _emit(self, window: Sequence[_Piece], skip: int) -> Iterator[Item]:
        counts = [p.hi - p.lo for p in window]
        which = np.repeat(np.arange(len(window)), counts)
        within = np.concatenate([np.arange(c) for c in counts])
        order = np.arange(len(which))
        if self.shuffle:
            order = np.random.default_rng(mix_seed(self.seed, self.epoch, window[0].start)).permutation(order)
        blocks: dict[int, _Block] = {}  # only this window's row groups are alive
        for pos in order[skip:].tolist():
            piece, k = window[which[pos]], int(within[pos])
            block = blocks.get(piece.unit)
            if block is None:
                unit = piece.unit
                block = blocks[unit] = self._reader.read(int(self.index.unit_shard[unit]),
                                                         int(self.index.unit_group[unit]))
            item = block.item(self.index.row(piece.unit, piece.lo + k))
            yield _finish(item, self.transform, mix_seed(self.seed, self.epoch, piece.start + k))

    def _stream(self, start: int, stop: int, skip: int) -> Iterator[Item]:
        try:
            for window in self._windows(self._pieces(start, stop)):
                size = sum(p.hi - p.lo for p in window)
                if skip >= size:
                    skip -= size
                    continue
                yield from self._emit(window, skip)
                skip = 0
        finally:  # remote handles hold connections and prefetch tasks: release them with the stream
            self._reader.close()

    def _worker_plan(self, workers: int, consumed: int) -> tuple[list[tuple[int, int]], list[int], int]:
        """Slices of the rank's stream per logical worker, samples already consumed in each, next worker."""
        start, stop = self._rank_range()
        slices = []
        for w in range(workers):
            a, b = _split_range(stop - start, workers, w)
            slices.append((start + a, start + b))
        if consumed == 0:
            return slices, [0] * workers, 0
        if workers == 1:
            return slices, [consumed], 0
        if self.batch_size is None:
            raise ConfigError("resuming mid-epoch with DataLoader workers needs the batch size: iterate "
                              "through ShardLoader, which records it")
        pos, nxt = _replay_round_robin([b - a for a, b in slices], self.batch_size, self.drop_last, consumed)
        return slices, pos, nxt

    def __iter__(self) -> Iterator[Item]:
        info = get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        consumed = self.consumed if self.consumed < len(self) else 0
        slices, done, nxt = self._worker_plan(workers, consumed)
        # The DataLoader asks worker 0 first: it plays the stream that was due next at the saved position.
        logical = (nxt + worker) % workers
        stream = self._stream(*slices[logical], skip=done[logical])
        if info is not None or self.counted_by_loader:
            yield from stream
            return
        self.consumed = consumed
        for item in stream:
            self.consumed += 1  # counted before the loop sees it: a checkpoint inside the loop includes it
            yield item


# ------------------------------------------------------------------------------------------- batching
def collate(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack tensors (images must have equal sizes: apply a transform that makes them so) and keep the rest
    as lists."""
    if not items:
        raise ValueError("collate got no items")
    out: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if isinstance(values[0], torch.Tensor):
            shapes = sorted({tuple(v.shape) for v in values})
            if len(shapes) > 1:
                raise ValueError(f"cannot batch {key!r}: shapes differ ({shapes[:4]}...); add a transform "
                                 "that gives equal sizes (cxr_train_transform, cxr_eval_transform, "
                                 "cxr_batch_item_transform)")
            out[key] = torch.stack(values)
        else:
            out[key] = values
    return out


def _batch_len(batch: Any) -> int:
    if isinstance(batch, Mapping):
        first = batch["sample_id"] if "sample_id" in batch else next(iter(batch.values()))
        return len(first)
    return len(batch)


class ShardLoader:
    """A torch ``DataLoader`` over a :class:`StreamingShardDataset` that knows where the training loop is.

    It counts the samples of each batch as it hands the batch to the loop (prefetched batches do not count),
    so :meth:`state_dict` taken inside the loop resumes right after the last batch received.

    Args:
        dataset: the streaming dataset.
        batch_size: samples per batch.
        num_workers: DataLoader worker processes (0 = main process). Resume with the same value.
        collate_fn: batches items (default :func:`collate`).
        drop_last: drop each worker's last partial batch (those samples are then skipped that epoch).
        batch_transform: applied to each collated batch in the main process (batch-level augmentation, e.g.
            ``cxr_train_transform()`` on ``(B, 1, S, S)``; move the batch to a GPU first with ``device``);
            re-seeded per batch from ``(seed, epoch, position)``.
        device: move tensors of each batch there before ``batch_transform``.
        **dataloader_kwargs: passed to ``DataLoader`` (``pin_memory``, ``prefetch_factor``, ...).
    """

    def __init__(self, dataset: StreamingShardDataset, batch_size: int, num_workers: int = 0,
                 collate_fn: Callable[[list[Item]], Any] = collate, drop_last: bool = False,
                 batch_transform: Callable[[Any], Any] | None = None,
                 device: str | torch.device | None = None, **dataloader_kwargs: Any) -> None:
        if dataloader_kwargs.get("persistent_workers"):
            raise ConfigError("persistent_workers=True would keep stale epoch/position copies in the workers")
        self.dataset, self.batch_size, self.num_workers = dataset, batch_size, num_workers
        self.collate_fn, self.drop_last, self.batch_transform = collate_fn, drop_last, batch_transform
        self.device = torch.device(device) if device is not None else None
        self.dataloader_kwargs = dataloader_kwargs
        self._resume_config: tuple[int, int, bool] | None = None

    def __len__(self) -> int:
        """Batches per epoch: each worker batches its own slice, so a worker's last batch may be partial."""
        start, stop = self.dataset._rank_range()
        workers = max(1, self.num_workers)
        sizes = [b - a for a, b in (_split_range(stop - start, workers, w) for w in range(workers))]
        if self.drop_last:
            return sum(n // self.batch_size for n in sizes)
        return sum(-(-n // self.batch_size) for n in sizes)

    def set_epoch(self, epoch: int) -> None:
        """See :meth:`StreamingShardDataset.set_epoch`."""
        self.dataset.set_epoch(epoch)

    def state_dict(self) -> dict[str, Any]:
        """The dataset position plus the loader settings that shape the order with workers."""
        return {**self.dataset.state_dict(), "batch_size": self.batch_size, "num_workers": self.num_workers,
                "drop_last": self.drop_last}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from :meth:`state_dict` (checked against this loader's settings when iterated)."""
        self.dataset.load_state_dict(state)
        self._resume_config = (int(state["batch_size"]), int(state["num_workers"]), bool(state["drop_last"]))

    def _check_resume(self, consumed: int) -> None:
        if not consumed or self._resume_config is None:
            return
        batch_size, workers, drop_last = self._resume_config
        same_order = max(workers, 1) == max(self.num_workers, 1) and (
            max(workers, 1) == 1 or (batch_size, drop_last) == (self.batch_size, self.drop_last))
        if not same_order:
            raise ConfigError(f"the position was taken with batch_size={batch_size}, num_workers={workers}, "
                              f"drop_last={drop_last}; resume mid-epoch with the same values")

    def __iter__(self) -> Iterator[Any]:
        ds = self.dataset
        if ds.consumed >= len(ds):
            ds.consumed = 0
        self._check_resume(ds.consumed)
        ds.batch_size, ds.drop_last, ds.counted_by_loader = self.batch_size, self.drop_last, True
        # A DataLoader without its own generator draws its workers' base seed from torch's global RNG each
        # time it is iterated; a resumed run iterates once more than the original did at that point, which
        # would shift the global RNG (dropout masks) and break exact resume. The order never depends on it.
        kwargs = {"generator": torch.Generator().manual_seed(mix_seed(ds.seed, ds.epoch)), **self.dataloader_kwargs}
        loader = DataLoader(ds, batch_size=self.batch_size, num_workers=self.num_workers,
                            collate_fn=self.collate_fn, drop_last=self.drop_last, **kwargs)
        try:
            for batch in loader:
                position = ds.consumed
                ds.consumed += _batch_len(batch)
                yield self._finish_batch(batch, position)
            ds.consumed = len(ds)  # the epoch is over (with drop_last, some samples were never delivered)
        finally:
            ds.counted_by_loader = False
            self._resume_config = None

    def _finish_batch(self, batch: Any, position: int) -> Any:
        if self.device is not None and isinstance(batch, Mapping):
            batch = {k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                     for k, v in batch.items()}
        if self.batch_transform is None:
            return batch
        reseed = getattr(self.batch_transform, "set_random_state", None)
        if reseed is not None:
            reseed(mix_seed(self.dataset.seed, self.dataset.epoch, position))
        return self.batch_transform(batch)
