"""The ``gcs_emulator`` fixture gives a working ``gs://`` bucket for ``rfm_data.io`` (loopback, in-memory)."""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest

from rfm_data import io

pytestmark = pytest.mark.integration


@pytest.fixture
def prefix(gcs_emulator: Any) -> str:
    # A fresh prefix per test: the emulator lives for the whole session and is shared by its tests.
    url: str = io.join(gcs_emulator.bucket_url, f"t-{uuid.uuid4().hex[:8]}")
    return url


def test_emulator_is_loopback_and_configured(gcs_emulator: Any) -> None:
    endpoint = os.environ["STORAGE_EMULATOR_HOST"]
    assert endpoint.startswith("http://127.0.0.1:")
    assert endpoint == gcs_emulator.endpoint
    assert os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] == "false"
    assert gcs_emulator.bucket_url == "gs://rfm-test"


def test_write_then_read_bytes_round_trips(prefix: str) -> None:
    url = io.join(prefix, "a/b/blob.bin")
    payload = bytes(range(256)) * 40
    assert not io.exists(url)
    io.write_bytes(url, payload)
    assert io.exists(url)
    assert io.read_bytes(url) == payload


def test_list_files_filters_suffixes_and_returns_gs_urls(prefix: str) -> None:
    for name in ("x/1.dcm", "x/2.png", "x/y/3.DCM", "z.txt"):
        io.write_text(io.join(prefix, name), name)
    listed = io.list_files(prefix, suffixes=(".dcm",))
    assert listed == [io.join(prefix, "x/1.dcm"), io.join(prefix, "x/y/3.DCM")]
    assert len(io.list_files(prefix)) == 4


def test_atomic_write_leaves_nothing_when_the_writer_fails(prefix: str) -> None:
    url = io.join(prefix, "partial.bin")

    def write_then_die() -> None:
        with io.atomic_write(url) as f:
            f.write(b"half of it")
            raise RuntimeError("writer died")

    with pytest.raises(RuntimeError, match="writer died"):
        write_then_die()
    assert not io.exists(url)
    assert io.list_files(prefix) == []


def test_atomic_write_replaces_existing_object(prefix: str) -> None:
    url = io.join(prefix, "manifest.json")
    io.write_text(url, "old")
    with io.atomic_write(url) as f:
        f.write(b"new")
    assert io.read_text(url) == "new"
    assert io.list_files(prefix) == [url]
