"""Workspace-wide pytest fixtures: the development data and a loopback GCS emulator.

This file sits at the repository root so every test under ``packages/``, ``pipelines/`` and ``tests/``
sees the same fixtures without any sys.path manipulation.
"""

from __future__ import annotations

import os

# gcsfs probes for hierarchical-namespace buckets on first use; against the emulator that probe stalls for
# ~48 s per call. The flag is read when gcsfs is imported, so it must be set before any test module (or
# plugin) imports gcsfs -- i.e. here, at conftest import time, not inside a fixture.
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"

import importlib.util
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent
EMULATOR_BUCKET = "rfm-test"
EMULATOR_START_TIMEOUT_S = 30.0


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the development data (``covid_chestxray_ieee8023/``, ``pediatric_pneumonia_kermany/``, …).

    ``RFM_SHARED_DATA`` overrides the default ``<repo>/../shared/data``. A user's fresh clone does not have
    this data, so tests that need it skip there; CI always has it.
    """
    override = os.environ.get("RFM_SHARED_DATA")
    root = Path(override) if override else REPO_ROOT.parent / "shared" / "data"
    if not root.is_dir():
        source = "RFM_SHARED_DATA" if override else "default location"
        pytest.skip(f"development data not found at {root} ({source}); set RFM_SHARED_DATA to run this test")
    return root


@dataclass(frozen=True)
class GcsEmulator:
    """A running loopback GCS emulator with one empty-at-start bucket."""

    endpoint: str
    bucket: str

    @property
    def bucket_url(self) -> str:
        return f"gs://{self.bucket}"


def _free_loopback_port() -> int:
    # Bind to port 0 so the kernel picks a free port; a tiny race with the emulator's own bind is acceptable
    # because each xdist worker asks separately and collisions would fail loudly at start-up.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _emulator_command(port: int) -> list[str] | None:
    """The emulator's own ``start`` command line, run through our launcher (it adds ``objects.move``)."""
    if importlib.util.find_spec("gcp_storage_emulator") is None:
        return None
    launcher = REPO_ROOT / "tests" / "support" / "gcs_emulator_server.py"
    return [
        sys.executable,
        str(launcher),
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--in-memory",
        "--default-bucket",
        EMULATOR_BUCKET,
    ]


def _wait_until_answering(endpoint: str, bucket: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + EMULATOR_START_TIMEOUT_S
    url = f"{endpoint}/storage/v1/b/{bucket}"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gcp-storage-emulator exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"gcp-storage-emulator did not answer at {url} within {EMULATOR_START_TIMEOUT_S} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GcsEmulator]:
    """A loopback ``gcp-storage-emulator`` (in-memory) with bucket ``gs://rfm-test``; fsspec is pointed at it.

    Session-scoped: under pytest-xdist each worker gets its own emulator on its own port.
    """
    port = _free_loopback_port()
    cmd = _emulator_command(port)
    if cmd is None:
        pytest.skip("gcp-storage-emulator is not installed (it is in the workspace dev extra)")
    import fsspec

    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    saved_env = os.environ.get("STORAGE_EMULATOR_HOST")
    saved_conf = fsspec.config.conf.get("gcs")
    try:
        _wait_until_answering(endpoint, EMULATOR_BUCKET, proc)
        os.environ["STORAGE_EMULATOR_HOST"] = endpoint
        # Anonymous credentials: never look for (or use) real Google credentials in tests.
        fsspec.config.conf["gcs"] = {"token": "anon"}
        yield GcsEmulator(endpoint=endpoint, bucket=EMULATOR_BUCKET)
    finally:
        _stop(proc)
        _restore(saved_env, saved_conf)


def _restore(saved_env: str | None, saved_conf: object) -> None:
    import fsspec

    if saved_env is None:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
    else:
        os.environ["STORAGE_EMULATOR_HOST"] = saved_env
    if saved_conf is None:
        fsspec.config.conf.pop("gcs", None)
    else:
        fsspec.config.conf["gcs"] = saved_conf
    # gcsfs caches filesystem instances keyed by their arguments; a cached one would keep talking to the
    # stopped emulator's endpoint.
    _clear_gcsfs_instance_cache()


def _clear_gcsfs_instance_cache() -> None:
    gcsfs = sys.modules.get("gcsfs")
    if gcsfs is not None:
        gcsfs.GCSFileSystem.clear_instance_cache()


@pytest.fixture(scope="session")
def sample_dataset(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The bundled sample (63 real CXRs + 2 broken files) ingested with a test key: a real dataset URL that
    every package's tests can build on without the development data."""
    from rfm_data.config import DeidConfig, IngestConfig
    from rfm_data.ingest import ingest

    dest = str(tmp_path_factory.mktemp("sample") / "ds")
    ingest("sample", dest, IngestConfig(workers=1, deid=DeidConfig(key="k")), progress=False)
    return dest
