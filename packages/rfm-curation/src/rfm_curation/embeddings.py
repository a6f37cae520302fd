"""Embedding store: per-sample embeddings (``image``, ``text``, ``joint``, ...) aligned with manifest ids.

Layout at any fsspec URL::

    STORE/embeddings.json   format version, row count, kinds with their dimension
    STORE/ids.parquet       column ``sample_id``: row i of every array belongs to this id
    STORE/<kind>.npy        float32 (rows, dim), C order: plain NumPy ``.npy``

``.npy`` keeps the format trivially memory-mappable (``np.load(path, mmap_mode="r")``) and streamable by
byte ranges from object stores, and any tool can write it. Writers stream chunks; every file is written
atomically and ``embeddings.json`` goes last, so a store without it is incomplete and is refused.
Computing embeddings is rfm-models' job; curation works from whatever the user supplies.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.lib import format as npy_format

from rfm_curation.errors import ConfigError
from rfm_data import io

FORMAT_VERSION = "1"
META_NAME = "embeddings.json"
IDS_NAME = "ids.parquet"
CHUNK_ROWS = 65_536  # ~128 MiB of 512-d float32 per chunk: bounded memory whatever the store size

FloatArray = npt.NDArray[np.float32]
_HEADER_READERS = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}


def _check_chunk(kind: str, chunk: npt.ArrayLike, dim: int, ids: Sequence[str]) -> FloatArray:
    """``chunk`` as C-contiguous float32, or a ConfigError naming the kind and the first bad sample."""
    arr = np.ascontiguousarray(chunk, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ConfigError(f"embeddings.{kind}: expected shape (rows, {dim}), got {arr.shape} (dimension mismatch)")
    if arr.shape[0] != len(ids):
        raise ConfigError(f"embeddings.{kind}: {arr.shape[0]} rows for {len(ids)} ids")
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        bad = int(np.argmin(finite))
        raise ConfigError(
            f"embeddings.{kind}: row for sample_id {str(ids[bad])!r} contains NaN or inf "
            f"({int((~finite).sum())} such rows in this chunk)"
        )
    return arr


class EmbeddingWriter:
    """Streams ``(ids, {kind: rows})`` chunks into a new store at ``url``.

    Use as a context manager. Nothing becomes visible unless the block exits without error and exactly
    ``count`` rows were added.

    Args:
        url: store URL (a folder; created).
        count: total number of rows that will be added.
        dims: dimension of each kind, e.g. ``{"image": 512, "text": 384}``.
    """

    def __init__(self, url: str, count: int, dims: Mapping[str, int]) -> None:
        if count < 1:
            raise ConfigError(f"embeddings: count={count}; a store needs at least one row (empty input)")
        if not dims:
            raise ConfigError("embeddings: no kinds given (e.g. {'joint': 512})")
        for kind, dim in dims.items():
            if not kind.isidentifier() or dim < 1:
                raise ConfigError(f"embeddings.{kind}: kind must be a plain name and dim >= 1, got dim={dim}")
        self.url, self.count, self.dims = url, count, dict(dims)
        self._ids: list[str] = []
        self._stack = contextlib.ExitStack()
        self._files: dict[str, IO[Any]] = {}

    def __enter__(self) -> EmbeddingWriter:
        for kind, dim in self.dims.items():
            f = self._stack.enter_context(io.atomic_write(io.join(self.url, f"{kind}.npy")))
            header = {"descr": "<f4", "fortran_order": False, "shape": (self.count, dim)}
            npy_format.write_array_header_2_0(f, header)
            self._files[kind] = f
        return self

    def add(self, ids: Sequence[str], arrays: Mapping[str, npt.ArrayLike]) -> None:
        """Append rows for ``ids``; ``arrays`` must hold every kind, one row per id."""
        if set(arrays) != set(self.dims):
            raise ConfigError(f"embeddings: chunk has kinds {sorted(arrays)}, the store has {sorted(self.dims)}")
        if len(self._ids) + len(ids) > self.count:
            raise ConfigError(f"embeddings: more than count={self.count} rows added")
        checked = {kind: _check_chunk(kind, arrays[kind], self.dims[kind], ids) for kind in self.dims}
        for kind, arr in checked.items():
            self._files[kind].write(arr.astype("<f4", copy=False).tobytes())
        self._ids.extend(str(i) for i in ids)

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self._check_ids()
            except ConfigError as err:
                self._stack.__exit__(type(err), err, err.__traceback__)  # drop the temporaries, then report
                raise
        # Closing the atomic writes publishes the arrays (or, on error, removes their temporaries).
        self._stack.__exit__(exc_type, exc, tb)  # type: ignore[arg-type]
        if exc_type is None:
            self._publish_ids_and_meta()

    def _check_ids(self) -> None:
        if len(self._ids) != self.count:
            raise ConfigError(f"embeddings: {len(self._ids)} rows added, count={self.count} was promised")
        _check_ids(self._ids)

    def _publish_ids_and_meta(self) -> None:
        with io.atomic_write(io.join(self.url, IDS_NAME)) as f:
            pq.write_table(pa.table({"sample_id": pa.array(self._ids, pa.string())}), f, compression="zstd")
        meta = {"format_version": FORMAT_VERSION, "count": self.count,
                "kinds": {k: {"dim": d, "dtype": "float32", "file": f"{k}.npy"} for k, d in self.dims.items()}}
        io.write_text(io.join(self.url, META_NAME), json.dumps(meta, indent=2, sort_keys=True))


def _check_ids(ids: Sequence[str]) -> None:
    empty = [i for i, s in enumerate(ids) if not s]
    if empty:
        raise ConfigError(f"embeddings.ids: {len(empty)} empty sample ids (first at row {empty[0]})")
    unique, counts = np.unique(np.asarray(ids, dtype=object).astype(str), return_counts=True)
    if len(unique) != len(ids):
        raise ConfigError(f"embeddings.ids: duplicate sample ids, e.g. {unique[counts > 1][:3].tolist()}")


def write_embeddings(url: str, ids: Sequence[str], arrays: Mapping[str, npt.ArrayLike]) -> None:
    """Write a whole store at once (streamed in chunks); see :class:`EmbeddingWriter` for the checks.

    Args:
        url: store URL.
        ids: manifest ``sample_id`` of each row.
        arrays: ``{kind: (rows, dim) array}``, e.g. ``{"image": img, "text": txt, "joint": both}``.
    """
    views = {kind: np.asarray(a) for kind, a in arrays.items()}
    for kind, arr in views.items():
        if arr.ndim != 2:
            raise ConfigError(f"embeddings.{kind}: expected a 2-D (rows, dim) array, got shape {arr.shape}")
        if arr.shape[0] != len(ids):
            raise ConfigError(f"embeddings.{kind}: {arr.shape[0]} rows for {len(ids)} ids")
    with EmbeddingWriter(url, len(ids), {kind: arr.shape[1] for kind, arr in views.items()}) as writer:
        for start in range(0, len(ids), CHUNK_ROWS):
            stop = start + CHUNK_ROWS
            writer.add(ids[start:stop], {kind: arr[start:stop] for kind, arr in views.items()})


class EmbeddingStore:
    """Read side of a store: ids, kinds, and rows streamed or memory-mapped.

    Args:
        url: store URL written by :func:`write_embeddings` / :class:`EmbeddingWriter`.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        meta_url = io.join(url, META_NAME)
        if not io.exists(meta_url):
            raise ConfigError(f"embeddings: {url} is not an embedding store (no {META_NAME}; incomplete write?)")
        meta = json.loads(io.read_text(meta_url))
        if str(meta.get("format_version", "")).split(".")[0] != FORMAT_VERSION:
            raise ConfigError(f"embeddings: {url} has format {meta.get('format_version')}; this reads {FORMAT_VERSION}")
        self.count: int = int(meta["count"])
        self.dims: dict[str, int] = {kind: int(v["dim"]) for kind, v in meta["kinds"].items()}

    @property
    def kinds(self) -> list[str]:
        """Kinds in the store, sorted."""
        return sorted(self.dims)

    def ids(self) -> npt.NDArray[np.str_]:
        """Sample id of every row, in row order."""
        column = io.read_parquet(io.join(self.url, IDS_NAME), columns=["sample_id"])["sample_id"]
        if len(column) != self.count:
            raise ConfigError(f"embeddings.ids: {len(column)} ids for count={self.count} rows")
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=str)

    def _dim(self, kind: str) -> int:
        if kind not in self.dims:
            raise ConfigError(f"embeddings.kind: {kind!r} is not in the store; it has {self.kinds}")
        return self.dims[kind]

    @contextlib.contextmanager
    def _open_rows(self, kind: str) -> Iterator[IO[bytes]]:
        """The ``kind`` file positioned at row 0, after checking its header against the metadata."""
        dim = self._dim(kind)
        fs, path = io.filesystem(io.join(self.url, f"{kind}.npy"))
        with fs.open(path, "rb") as f:
            version = npy_format.read_magic(f)
            if version not in _HEADER_READERS:
                raise ConfigError(f"embeddings.{kind}: .npy format version {version} is not supported (1.0, 2.0)")
            shape, fortran, dtype = _HEADER_READERS[version](f)
            if tuple(shape) != (self.count, dim) or fortran or np.dtype(dtype) != np.dtype("<f4"):
                raise ConfigError(
                    f"embeddings.{kind}: file holds {dtype} {shape}, metadata says float32 ({self.count}, {dim})"
                )
            yield f

    def iter_chunks(self, kind: str, chunk_rows: int = CHUNK_ROWS) -> Iterator[tuple[int, FloatArray]]:
        """``(first_row, rows)`` chunks of ``kind``, read sequentially (works on any fsspec URL)."""
        dim = self._dim(kind)
        with self._open_rows(kind) as f:
            for start in range(0, self.count, chunk_rows):
                n = min(chunk_rows, self.count - start)
                buf = np.empty((n, dim), dtype="<f4")
                if f.readinto(buf.data.cast("B")) != buf.nbytes:  # type: ignore[attr-defined]
                    raise ConfigError(f"embeddings.{kind}: file ends before row {start + n} (truncated)")
                yield start, buf

    def mmap(self, kind: str) -> FloatArray:
        """A read-only memory map of ``kind`` (local stores only)."""
        self._dim(kind)
        if io.protocol_of(self.url) != "file":
            raise ConfigError(f"embeddings: memory maps need a local store; use iter_chunks for {self.url}")
        _, path = io.filesystem(io.join(self.url, f"{kind}.npy"))
        arr: FloatArray = np.load(path, mmap_mode="r")
        return arr


def load_normalized(store: EmbeddingStore, kind: str) -> FloatArray:
    """All rows of ``kind`` in memory, L2-normalised, after checking every value is finite.

    Reads in chunks into one preallocated array (peak memory = the array itself, no second copy).

    Raises:
        ConfigError: naming ``embeddings.<kind>`` and the first sample id with NaN / inf or a zero vector.
    """
    out = np.empty((store.count, store._dim(kind)), dtype=np.float32)
    ids: npt.NDArray[np.str_] | None = None
    for start, chunk in store.iter_chunks(kind):
        norms = np.linalg.norm(chunk, axis=1)
        bad = ~np.isfinite(norms) | (norms == 0)
        if bad.any():
            ids = store.ids() if ids is None else ids
            row = start + int(np.argmax(bad))
            what = "a zero vector" if np.isfinite(norms[row - start]) else "NaN or inf"
            raise ConfigError(
                f"embeddings.{kind}: row for sample_id {str(ids[row])!r} is {what} ({int(bad.sum())} such rows)"
            )
        out[start : start + len(chunk)] = chunk / norms[:, None]
    return out
