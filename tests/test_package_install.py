"""Each distribution's wheel installs into a fresh virtual environment with only its declared dependencies
and works there: imports, reports its version, runs its CLI and (rfm-data) ingests the bundled sample
without any optional extra.

These are the slowest tests of the workspace (a venv plus a few packages from the index: ~10-30 s per
package), so all checks that need the venv run inside one test per package: separate tests would each
build a venv on their own pytest-xdist worker (``xdist_group`` would pin them to one worker, but it has no
effect under pytest 9 with pytest-xdist 3.8).
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[1]
COMMAND_TIMEOUT_S = 600
SAMPLE_LIMIT_BYTES = 3 * 1024 * 1024
SAMPLE_PREFIX = "rfm_data/sample_data/"
BROKEN_SAMPLE_IDS = {"broken_truncated", "broken_not_an_image"}
# Strings written into the sample's DICOM headers as synthetic PHI; none may survive ingestion.
SYNTHETIC_PHI = ("SAMPLE^KERMANY", "SAMPLE-KERMANY", "SAMPLE0001", "20150101", "rfm synthetic sample")


@dataclass(frozen=True)
class Package:
    """A distribution to install alone, and what its core install must (not) provide."""

    project_dir: str  # relative to the repository root
    import_name: str
    cli: str = ""  # console script to run with --help ("" = none)
    heavy_modules: tuple[str, ...] = ()  # optional dependencies that the core install must not pull in
    extras_needed_by: dict[str, str] = field(default_factory=dict)  # module → extra named by its ImportError
    # rfm packages it depends on: built from this checkout and offered to pip with --find-links, because they are
    # not on the index; everything else comes from the index like a user's install.
    siblings: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return Path(self.project_dir).name


# Other packages join this list once they have code worth installing alone.
PACKAGES = [
    Package(
        "packages/rfm-data",
        "rfm_data",
        cli="rfm-data",
        heavy_modules=("torch", "nibabel", "gcsfs", "pylibjpeg"),
        extras_needed_by={"rfm_data.loader": "rfm-data[torch]"},
    ),
    Package(
        "packages/rfm-curation",
        "rfm_curation",
        cli="rfm-curate",
        heavy_modules=("torch", "rfm_models"),
        siblings=("packages/rfm-data",),
    ),
]


@dataclass(frozen=True)
class Installed:
    package: Package
    wheel: Path
    venv: Path
    workdir: Path  # an empty cwd, so nothing from the repository is importable by accident

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def script(self, name: str) -> Path:
        return self.venv / "bin" / name


def run(cmd: Sequence[str | Path], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
    )
    return proc


def run_ok(cmd: Sequence[str | Path], cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = run(cmd, cwd, env)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def clean_env(**extra: str) -> dict[str, str]:
    # Drop whatever points at the development environment, so the fresh venv stands on its own.
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"}}
    return {**env, "PYTHONNOUSERSITE": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}


def build_wheel(package: Package, out: Path) -> Path:
    # --no-isolation: the backend (hatchling) is already in the test environment, so no index access here.
    cmd: list[str | Path] = [
        sys.executable,
        "-m",
        "build",
        "--wheel",
        "--no-isolation",
        "--outdir",
        out,
        package.project_dir,
    ]
    run_ok(cmd, REPO_ROOT)
    wheels = sorted(out.glob("*.whl"))
    assert len(wheels) == 1, f"expected one wheel, got {wheels}"
    return wheels[0]


def project_version(package: Package) -> str:
    with (REPO_ROOT / package.project_dir / "pyproject.toml").open("rb") as f:
        version: str = tomllib.load(f)["project"]["version"]
    return version


@pytest.fixture(scope="module", params=PACKAGES, ids=lambda p: p.name)
def wheel(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Package, Path]:
    package: Package = request.param
    return package, build_wheel(package, tmp_path_factory.mktemp(f"wheel-{package.name}"))


def install(package: Package, wheel_path: Path, root: Path) -> Installed:
    venv, workdir = root / "venv", root / "work"
    workdir.mkdir()
    # A plain venv: no system site packages, nothing but pip; the wheel's core dependencies come from the index.
    run_ok([sys.executable, "-m", "venv", venv], workdir, clean_env())
    links: list[str | Path] = []
    for project in package.siblings:
        folder = root / "siblings" / Path(project).name
        build_wheel(Package(project, ""), folder)
        links += ["--find-links", folder]
    run_ok([venv / "bin" / "python", "-m", "pip", "install", "--quiet", *links, wheel_path], workdir, clean_env())
    return Installed(package, wheel_path, venv, workdir)


def venv_python(inst: Installed, code: str, **env: str) -> str:
    return run_ok([inst.python, "-c", code], inst.workdir, clean_env(**env)).strip()


# ------------------------------------------------------------------------------------------- the wheel


def test_core_requirements_exclude_heavy_extras(wheel: tuple[Package, Path]) -> None:
    package, wheel_path = wheel
    with zipfile.ZipFile(wheel_path) as zf:
        metadata = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        lines = zf.read(metadata).decode().splitlines()
    requires = [line.split(":", 1)[1].strip() for line in lines if line.startswith("Requires-Dist:")]
    core = [req for req in requires if "extra ==" not in req]
    assert core, "the wheel declares no core dependencies at all"
    heavy = [req for req in core if any(req.lower().startswith(mod) for mod in package.heavy_modules)]
    assert not heavy, f"core requirements of {package.name} pull optional dependencies: {heavy}"


def test_rfm_data_wheel_ships_the_whole_sample(wheel: tuple[Package, Path]) -> None:
    package, wheel_path = wheel
    if package.import_name != "rfm_data":
        pytest.skip("only rfm-data bundles sample data")
    with zipfile.ZipFile(wheel_path) as zf:
        sizes = {i.filename: i.file_size for i in zf.infolist() if i.filename.startswith(SAMPLE_PREFIX)}
        table = zf.read(f"{SAMPLE_PREFIX}metadata.csv").decode("utf-8")
    listed = {SAMPLE_PREFIX + row["path"] for row in csv.DictReader(io.StringIO(table))}
    assert listed <= sizes.keys(), f"files listed in metadata.csv but missing from the wheel: {listed - sizes.keys()}"
    assert f"{SAMPLE_PREFIX}ATTRIBUTION.md" in sizes, "the sample must ship with its licences and attribution"
    assert sum(sizes.values()) <= SAMPLE_LIMIT_BYTES, f"sample is {sum(sizes.values())} bytes in the wheel"


# ---------------------------------------------------------------------------------- the fresh venv


def check_installs_alone_and_imports_with_its_version(installed: Installed) -> None:
    pkg = installed.package
    code = (
        f"import importlib.metadata as m, {pkg.import_name} as p; "
        f"print(p.__version__, m.version({pkg.name!r}), p.__file__)"
    )
    version, dist_version, location = venv_python(installed, code).split()
    assert version == dist_version == project_version(pkg)
    assert Path(location).is_relative_to(installed.venv), f"imported from {location}, not from the fresh venv"


def check_optional_dependencies_are_absent_from_the_core_install(installed: Installed) -> None:
    mods = installed.package.heavy_modules
    code = f"import importlib.util as u; print(*[m for m in {mods!r} if u.find_spec(m)])"
    assert venv_python(installed, code) == "", "the core install pulled in optional dependencies"


def check_cli_help_runs(installed: Installed) -> None:
    if not installed.package.cli:
        return
    out = run_ok([installed.script(installed.package.cli), "--help"], installed.workdir, clean_env())
    assert f"usage: {installed.package.cli}" in out


def check_modules_needing_an_extra_name_it_in_their_import_error(installed: Installed) -> None:
    for module, extra in installed.package.extras_needed_by.items():
        proc = run([installed.python, "-c", f"import {module}"], installed.workdir, clean_env())
        assert proc.returncode != 0, f"{module} imported without {extra} installed"
        assert "ImportError" in proc.stderr and extra in proc.stderr, proc.stderr


def check_core_install_ingests_the_bundled_sample(installed: Installed) -> None:
    if installed.package.import_name != "rfm_data":
        return
    dest = installed.workdir / "sample-out"
    env = clean_env(RFM_DEID_KEY="test-key-not-secret")
    cli = installed.script("rfm-data")
    run_ok([cli, "ingest", "sample", dest, "--no-progress"], installed.workdir, env)
    counts = json.loads(run_ok([cli, "inspect", dest, "--json"], installed.workdir, env))
    assert (counts["total"], counts["accepted"], counts["quarantined"]) == (65, 63, 2)
    # Read the manifest with the venv's own pyarrow (a core dependency): which items were quarantined, and is
    # any synthetic identifier from the DICOM headers or metadata.csv left in any text column?
    code = (
        "import json, pyarrow.parquet as pq, pyarrow as pa, sys; t = pq.read_table(sys.argv[1]); "
        "rows = t.to_pylist(); "
        "text = [str(v) for r in rows for v in r.values() if isinstance(v, (str, list))]; "
        "print(json.dumps({'quarantined': sorted(r['sample_id'] for r in rows if r['status'] == 'quarantined'), "
        "'text': text}))"
    )
    out = run_ok([installed.python, "-c", code, dest / "manifest.parquet"], installed.workdir, env)
    manifest = json.loads(out)
    assert set(manifest["quarantined"]) == BROKEN_SAMPLE_IDS
    leaked = sorted({marker for marker in SYNTHETIC_PHI for cell in manifest["text"] if marker in cell})
    assert not leaked, f"identifiers survived de-identification: {leaked}"


def test_wheel_installs_alone_and_works(wheel: tuple[Package, Path], tmp_path: Path) -> None:
    installed = install(*wheel, tmp_path)
    check_installs_alone_and_imports_with_its_version(installed)
    check_optional_dependencies_are_absent_from_the_core_install(installed)
    check_cli_help_runs(installed)
    check_modules_needing_an_extra_name_it_in_their_import_error(installed)
    check_core_install_ingests_the_bundled_sample(installed)
