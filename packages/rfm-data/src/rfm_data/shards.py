"""Shard format: Parquet files of preprocessed pixels plus what training needs (report, labels, ids).

Why Parquet and not WebDataset tar (measured in tools/benchmarks/bench_loader.py, see docs/benchmarks.md):
row groups give map-style random access without an index file, per-column compression stores raw pixels
with LZ4 (a ~30 µs decompress per 256 px image instead of a ~1 ms PNG inflate), and the metadata columns are
queryable with any Arrow tool. A shard is written to a temporary name and moved into place, so a shard
file that exists is complete.
"""

from __future__ import annotations

import io as _io
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rfm_data import io
from rfm_data.config import Encoding
from rfm_data.manifest import LABELS_TYPE

SHARD_FORMAT_VERSION = "1"
ROW_GROUP_SIZE = 64  # rows decoded together on random access: small enough for map-style reads
SHARD_SCHEMA = pa.schema(
    [
        ("sample_id", pa.string()),
        ("image", pa.binary()),
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("dtype", pa.string()),
        ("encoding", pa.string()),
        ("patient_id", pa.string()),
        ("study_id", pa.string()),
        ("view", pa.string()),
        ("split", pa.string()),
        ("report_findings", pa.string()),
        ("report_impression", pa.string()),
        ("report_text", pa.string()),
        ("labels", LABELS_TYPE),
    ],
    metadata={b"rfm.shard.format_version": SHARD_FORMAT_VERSION.encode()},
)
SHARD_COLUMNS = SHARD_SCHEMA.names


def shard_name(index: int) -> str:
    return f"shards/shard-{index:05d}.parquet"


def encode_pixels(pixels: np.ndarray, encoding: Encoding) -> bytes:
    """uint8/uint16 ``(H, W)`` array → bytes in ``encoding``."""
    if encoding is Encoding.RAW:
        return np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder("<")).tobytes()
    from PIL import Image

    buf = _io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def decode_pixels(data: bytes, height: int, width: int, dtype: str, encoding: str) -> np.ndarray:
    """Inverse of :func:`encode_pixels`: a ``(H, W)`` array of ``dtype``."""
    if encoding == Encoding.RAW.value:
        return np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<")).reshape(height, width)
    from PIL import Image

    with Image.open(_io.BytesIO(data)) as im:
        return np.asarray(im, dtype=dtype)


class ShardWriter:
    """Streams rows into one shard, a row group at a time, so memory stays bounded by the row group.

    Use as a context manager; the file appears at ``url`` only when the block exits without error.
    """

    def __init__(self, url: str, encoding: Encoding) -> None:
        self.url = url
        self.encoding = encoding
        self.rows_written = 0
        self._pending: list[dict[str, Any]] = []
        self._ctx: Any = None
        self._writer: pq.ParquetWriter | None = None

    def __enter__(self) -> ShardWriter:
        self._ctx = io.atomic_write(self.url)
        sink = self._ctx.__enter__()
        # Raw 8-bit CXR pixels compress little (~1.15x with zstd: noise), so the cheapest decoder wins:
        # LZ4 decodes ~2.4x faster than zstd for ~6 % more bytes (bench_loader.py). PNG bytes are final.
        image_codec = "lz4" if self.encoding is Encoding.RAW else "none"
        compression = {name: ("zstd" if name != "image" else image_codec) for name in SHARD_COLUMNS}
        dictionary = [c for c in SHARD_COLUMNS if c not in ("image", "sample_id")]
        self._writer = pq.ParquetWriter(sink, SHARD_SCHEMA, compression=compression, use_dictionary=dictionary)
        return self

    @property
    def count(self) -> int:
        """Rows added so far (the row index the next added row will get)."""
        return self.rows_written + len(self._pending)

    def add(self, row: dict[str, Any]) -> None:
        """Append one row (a dict with :data:`SHARD_COLUMNS`)."""
        self._pending.append({**row, "labels": list((row.get("labels") or {}).items())})
        if len(self._pending) >= ROW_GROUP_SIZE:
            self._flush()

    def _flush(self) -> None:
        if self._pending and self._writer is not None:
            self._writer.write_table(pa.Table.from_pylist(self._pending, schema=SHARD_SCHEMA))
            self.rows_written += len(self._pending)
            self._pending = []

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self._flush()
        if self._writer is not None:
            self._writer.close()
        self._ctx.__exit__(exc_type, exc, tb)


def write_shard(url: str, rows: Sequence[dict[str, Any]], encoding: Encoding) -> None:
    """Write shard rows (dicts with :data:`SHARD_COLUMNS`) atomically to ``url``."""
    with ShardWriter(url, encoding) as writer:
        for row in rows:
            writer.add(row)


def read_shard(url: str, columns: Sequence[str] | None = None) -> pa.Table:
    """The whole shard (or some ``columns``) as an Arrow table."""
    return io.read_parquet(url, columns)
