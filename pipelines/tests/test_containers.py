"""The rfm-data image, built for real with podman from images/Dockerfile.rfm-data, runs the ``ingest`` component
through kfp.local.DockerRunner (podman's Docker-compatible socket), offline, as its non-root user.

No base image can be pulled here, so the Dockerfile's ``PYTHON_IMAGE`` is a Debian bookworm (Python 3.11, like
python:3.11-slim-bookworm) made with debootstrap, and its ``WHEELS`` is an image of wheels built on the host: the
same path an air-gapped hospital build takes. The base image is kept between runs (``RFM_TEST_BASE_IMAGE``), so
only the first run pays for debootstrap. Run with ``pytest -m containers pipelines/tests/test_containers.py``;
skips with the reason where podman, debootstrap or root are missing. See docs/containers.md.
"""

# No `from __future__ import annotations`: kfp reads annotations of pipelines defined in this module.
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rfm_pipelines.images import PACKAGES, image

pytestmark = pytest.mark.filterwarnings("ignore:.*no effect in the current local runner:UserWarning")

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("RFM_CONTAINER_CACHE", "/var/cache/rfm-containers"))
BASE_IMAGE = os.environ.get("RFM_TEST_BASE_IMAGE", "localhost/rfm-python-base:3.11-bookworm")
WHEELS_IMAGE = "localhost/rfm-test/rfm-data-wheels:latest"
# podman as root without systemd: runc and cgroupfs (ENVIRONMENT.md); chroot isolation for builds.
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
# runc here may lower resource limits but not set podman's default ones (nofile / nproc above the host's):
# "error setting rlimit type 7: operation not permitted". Containers get these instead, CLI and API alike.
CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=16384:16384", "nproc=8192:8192"]
"""
BASE_CONTAINERFILE = """FROM {rootfs}
RUN python3 -m venv /opt/python && /opt/python/bin/python -m pip --version
ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
"""


def _missing() -> str | None:
    if sys.platform != "linux" or os.geteuid() != 0:
        return "needs root on Linux (podman builds with chroot isolation, debootstrap makes the base image)"
    for tool in ("podman", "debootstrap"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install podman buildah runc debootstrap)"
    return None


def _run(*args: str, stdin: bytes | None = None, cwd: Path = REPO) -> None:
    proc = subprocess.run(args, input=stdin, cwd=cwd, capture_output=True, timeout=1800)
    if proc.returncode:
        tail = (proc.stdout + proc.stderr).decode(errors="replace")[-4000:]
        raise AssertionError(f"{' '.join(args[:4])} ... failed ({proc.returncode}):\n{tail}")


def _image_exists(name: str) -> bool:
    return subprocess.run([*PODMAN, "image", "exists", name], capture_output=True).returncode == 0


def _base_image(workdir: Path) -> str:
    """Debian bookworm + a venv providing ``python`` / ``pip``, as the python:3.11-slim images do."""
    if _image_exists(BASE_IMAGE):
        return BASE_IMAGE
    rootfs = CACHE / "rootfs"
    if not (rootfs / "usr" / "bin" / "python3").exists():
        shutil.rmtree(rootfs, ignore_errors=True)
        _run("debootstrap", "--variant=minbase", "--include=python3,python3-venv,python3-pip", "bookworm",
             str(rootfs))
    tar = subprocess.run(["tar", "-C", str(rootfs), "-c", "."], capture_output=True, check=True).stdout
    _run(*PODMAN, "import", "-", "localhost/rfm-debootstrap:bookworm", stdin=tar)
    (workdir / "Containerfile").write_text(BASE_CONTAINERFILE.format(rootfs="localhost/rfm-debootstrap:bookworm"))
    _run(*PODMAN, "build", "--isolation", "chroot", "--tag", BASE_IMAGE, str(workdir), cwd=workdir)
    return BASE_IMAGE


def _wheels_image(workdir: Path) -> str:
    """rfm-data and its dependencies as wheels, built on the host (the host's index and pip cache)."""
    wheels = workdir / "wheels"
    # The dependency wheels of earlier runs are reused; rfm-data itself is rebuilt from this checkout.
    cached = CACHE / "wheels-rfm-data"
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheels), "--find-links", str(cached),
         "packages/rfm-data[codecs,gcs]", "kfp==2.17.0")
    cached.mkdir(parents=True, exist_ok=True)
    for wheel in wheels.glob("*.whl"):
        if not wheel.name.startswith("rfm_"):
            shutil.copy2(wheel, cached / wheel.name)
    (workdir / "Containerfile.wheels").write_text("FROM scratch\nCOPY wheels/ /wheels/\n")
    _run(*PODMAN, "build", "--isolation", "chroot", "--file", "Containerfile.wheels", "--tag", WHEELS_IMAGE,
         str(workdir), cwd=workdir)
    return WHEELS_IMAGE


@pytest.fixture(scope="module")
def containers_conf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Point podman (``CONTAINERS_CONF``) at a configuration with limits this machine lets runc set."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    conf = tmp_path_factory.mktemp("podman-conf") / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    saved = os.environ.get("CONTAINERS_CONF")
    os.environ["CONTAINERS_CONF"] = str(conf)
    yield
    if saved is None:
        os.environ.pop("CONTAINERS_CONF")
    else:
        os.environ["CONTAINERS_CONF"] = saved


@pytest.fixture(scope="module")
def rfm_data_image(containers_conf: None, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The rfm-data image from images/Dockerfile.rfm-data, tagged as the components expect it."""
    workdir = tmp_path_factory.mktemp("containers")
    base, wheels, tag = _base_image(workdir), _wheels_image(workdir), image("rfm-data")
    start = time.perf_counter()
    _run(*PODMAN, "build", "--isolation", "chroot", "--file", "images/Dockerfile.rfm-data", "--build-arg",
         f"PYTHON_IMAGE={base}", "--build-arg", f"WHEELS={wheels}", "--build-arg", "VERSION=0.1.0", "--tag", tag, ".")
    print(f"rfm-data image built in {time.perf_counter() - start:.0f} s")
    return tag


@pytest.fixture(scope="module")
def podman_socket(tmp_path_factory: pytest.TempPathFactory, rfm_data_image: str) -> Iterator[str]:
    """``podman system service`` on a private socket: the Docker API that kfp.local.DockerRunner talks to."""
    socket = tmp_path_factory.mktemp("podman") / "podman.sock"
    proc = subprocess.Popen([*PODMAN, "system", "service", "--time=0", f"unix://{socket}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not socket.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"podman system service did not open {socket} (exit code {proc.poll()})")
            time.sleep(0.2)
        yield f"unix://{socket}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_every_package_image_has_a_dockerfile_of_the_tested_shape() -> None:
    """The pattern the podman test exercises on rfm-data holds for every image (no container engine needed)."""
    script = (REPO / "tools" / "build_images.sh").read_text()
    for package in PACKAGES:
        dockerfile = (REPO / "images" / f"Dockerfile.{package}").read_text()
        assert f"org.opencontainers.image.title=\"{package}\"" in dockerfile
        for line in ("ARG PYTHON_IMAGE=python:3.11", "ARG WHEELS=build", "FROM ${WHEELS} AS wheels",
                     "COPY --from=wheels /wheels /tmp/wheels", "--no-index", "USER 10001"):
            assert line in dockerfile, f"Dockerfile.{package} lacks {line!r}"
        assert package in script.split("IMAGES=(")[-1].split(")")[0], f"build_images.sh does not build {package}"


@pytest.mark.containers
@pytest.mark.slow
def test_image_runs_as_non_root_with_the_pinned_packages(rfm_data_image: str) -> None:
    proc = subprocess.run([*PODMAN, "run", "--rm", "--network", "none", rfm_data_image, "python", "-c",
                           "import os, importlib.metadata as m; print(os.getuid(), m.version('rfm-data'), "
                           "m.version('kfp'))"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["10001", "0.1.0", "2.17.0"]


@pytest.mark.containers
@pytest.mark.slow
def test_ingest_component_runs_in_the_image_through_kfp_local(
    rfm_data_image: str, podman_socket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, deid_key: str
) -> None:
    from kfp import local

    from rfm_pipelines.components import ingest

    monkeypatch.setenv("DOCKER_HOST", podman_socket)
    root = tmp_path / "root"
    root.mkdir()
    root.chmod(0o777)  # the image's user 10001 writes the outputs into this bind mount
    local.init(runner=local.DockerRunner(environment={"RFM_DEID_KEY": deid_key}, network_mode="none"),
               pipeline_root=str(root), raise_on_error=True)
    start = time.perf_counter()
    task = ingest(source="sample", shard_size=32)
    print(f"ingest in the container: {time.perf_counter() - start:.0f} s")
    assert task.outputs["summary"].metadata == {"total": 65, "accepted": 63, "quarantined": 2,
                                                "seconds": task.outputs["summary"].metadata["seconds"]}
    dataset = Path(task.outputs["dataset"].path)
    manifest = json.loads(next(root.glob("ingest-*/ingest/executor_output.json")).read_text())
    assert manifest["artifacts"]["dataset"]["artifacts"][0]["metadata"]["accepted"] == 63
    assert (dataset / "manifest.parquet").stat().st_uid == 10001  # written inside the container, as non-root
