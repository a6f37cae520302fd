"""fsspec URL helpers: every path in rfm is a URL (``file://``, plain paths, ``gs://``, ``memory://``).

Writes are atomic: data goes to a temporary sibling name first and is moved into place only when
complete, so a killed writer never leaves a file that looks finished.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator, Sequence
from typing import IO, Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from rfm_data.errors import QuarantineError, Reason


def filesystem(url: str, **storage_options: Any) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem of ``url`` and the path inside it."""
    fs, path = url_to_fs(url, **storage_options)
    return fs, path


def join(url: str, *parts: str) -> str:
    """Join URL components with ``/`` (fsspec URLs always use forward slashes)."""
    out = url.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def protocol_of(url: str) -> str:
    """``"gs"``, ``"memory"``, … or ``"file"`` for plain paths."""
    return url.split("://", 1)[0] if "://" in url else "file"


def read_bytes(url: str, max_bytes: int | None = None) -> bytes:
    """Read a whole file; unreadable URLs raise :class:`QuarantineError` (``unreadable_url``)."""
    try:
        fs, path = filesystem(url)
        size = fs.size(path)
        if max_bytes is not None and size is not None and size > max_bytes:
            raise QuarantineError(Reason.BAD_DIMENSIONS, f"file is {size} bytes, above the {max_bytes} limit")
        with fs.open(path, "rb") as f:
            data: bytes = f.read()
    except QuarantineError:
        raise
    except (OSError, ValueError) as err:
        raise QuarantineError(Reason.UNREADABLE_URL, type(err).__name__) from err
    if not data:
        raise QuarantineError(Reason.EMPTY_FILE, "file has no bytes")
    return data


def read_parquet(url: str, columns: Sequence[str] | None = None) -> pa.Table:
    """A whole Parquet file (or some ``columns``), read synchronously on any fsspec URL.

    Always through ``ParquetFile`` without pre-buffering: ``pq.read_table`` over a Python (fsspec) file
    pre-buffers with Arrow futures that can outlive the call and abort the interpreter at exit
    ("terminate called without an active exception") when they release their Python buffers.
    """
    fs, path = filesystem(url)
    if protocol_of(url) == "file":
        return pq.ParquetFile(path).read(columns=list(columns) if columns else None)
    with fs.open(path, "rb") as f:
        return pq.ParquetFile(f, pre_buffer=False).read(columns=list(columns) if columns else None)


def parquet_rows(url: str) -> int:
    """Row count from the Parquet footer (no data read)."""
    fs, path = filesystem(url)
    with fs.open(path, "rb") as f:
        return int(pq.ParquetFile(f, pre_buffer=False).metadata.num_rows)


def exists(url: str) -> bool:
    fs, path = filesystem(url)
    return bool(fs.exists(path))


def makedirs(url: str) -> None:
    fs, path = filesystem(url)
    fs.makedirs(path, exist_ok=True)


# Object stores publish an object only when its upload completes, so writing to the final name is atomic
# there; a temporary name would cost a server-side copy per write.
_OBJECT_STORES = {"gs", "gcs", "s3", "s3a", "az", "abfs", "abfss"}


@contextlib.contextmanager
def atomic_write(url: str, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open ``url`` for writing; the file appears complete, or not at all (also on error or ``kill -9``)."""
    fs, path = filesystem(url)
    if protocol_of(url) in _OBJECT_STORES:
        with _object_upload(fs, path, mode) as f:
            yield f
        return
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = f"{parent}/.tmp-{uuid.uuid4().hex}-{os.path.basename(path)}" if parent else f".tmp-{uuid.uuid4().hex}"
    try:
        with fs.open(tmp, mode) as f:
            yield f
        fs.mv(tmp, path)
    finally:
        if fs.exists(tmp):
            fs.rm(tmp)


@contextlib.contextmanager
def _object_upload(fs: fsspec.AbstractFileSystem, path: str, mode: str) -> Iterator[IO[Any]]:
    f = fs.open(path, mode)
    try:
        yield f
    except BaseException:
        # Closing would commit the partial upload: abandon it, and mark the file closed so that neither
        # close() nor the finaliser uploads the buffered bytes (fsspec buffered files upload on close).
        discard = getattr(f, "discard", None)
        if discard is not None:
            discard()
        with contextlib.suppress(AttributeError):
            f.closed = True
        raise
    f.close()


def write_bytes(url: str, data: bytes) -> None:
    with atomic_write(url) as f:
        f.write(data)


def write_text(url: str, text: str) -> None:
    write_bytes(url, text.encode("utf-8"))


def read_text(url: str) -> str:
    fs, path = filesystem(url)
    with fs.open(path, "rb") as f:
        return bytes(f.read()).decode("utf-8")


def list_files(url: str, suffixes: tuple[str, ...] = (), recursive: bool = True) -> list[str]:
    """Sorted URLs of the files under ``url`` whose names end with one of ``suffixes`` (any if empty)."""
    fs, path = filesystem(url)
    found = fs.find(path) if recursive else [p for p in fs.ls(path, detail=False)]
    proto = protocol_of(url)
    files = sorted(p for p in found if not suffixes or p.lower().endswith(tuple(s.lower() for s in suffixes)))
    if proto == "file":
        return files
    return [fs.unstrip_protocol(p) for p in files]
