"""Workspace structure: imports between rfm packages follow the design's direction, every rfm import is a
declared dependency, and all distributions share one version.

Imports are read with ``ast`` (nothing is imported), so these checks cost milliseconds and also cover
modules whose optional dependencies are not installed.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Which rfm import packages each import package may use. Curation and models may depend on data; models may
# use curation's Selector protocol (optional); eval sits above models; reportgen above eval; pipelines
# compose everything.
ALLOWED: Mapping[str, frozenset[str]] = {
    "rfm_data": frozenset(),
    "rfm_curation": frozenset({"rfm_data"}),
    "rfm_models": frozenset({"rfm_data", "rfm_curation"}),
    "rfm_eval": frozenset({"rfm_data", "rfm_models", "rfm_curation"}),
    "rfm_reportgen": frozenset({"rfm_data", "rfm_models", "rfm_eval"}),
    "rfm_pipelines": frozenset({"rfm_data", "rfm_curation", "rfm_models", "rfm_eval", "rfm_reportgen"}),
}


@dataclass(frozen=True)
class Distribution:
    """One installable project of the workspace."""

    root: Path  # folder holding pyproject.toml
    name: str  # distribution name, e.g. rfm-data
    import_name: str  # e.g. rfm_data
    version: str
    requires: frozenset[str]  # rfm distributions named in dependencies or any optional extra


def _requirement_name(requirement: str) -> str:
    # PEP 508: the name is the leading run of letters, digits, '.', '_' and '-'; compare normalised (PEP 503).
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, f"unparseable requirement {requirement!r}"
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def _load(pyproject: Path) -> Distribution:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    requirements = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    name = _requirement_name(project["name"])
    rfm = {_requirement_name(r) for r in requirements} - {name}  # an extra may name its own project
    return Distribution(
        pyproject.parent,
        name,
        name.replace("-", "_"),
        project["version"],
        frozenset(r for r in rfm if r.startswith("rfm-")),
    )


def distributions() -> list[Distribution]:
    pyprojects = [*sorted(REPO_ROOT.glob("packages/*/pyproject.toml")), REPO_ROOT / "pipelines" / "pyproject.toml"]
    return [_load(p) for p in pyprojects if p.is_file()]


def rfm_imports(source: str) -> Iterator[tuple[int, str]]:
    """(line, top-level rfm package) for every absolute import in ``source``, wherever it is nested."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top.startswith("rfm_"):
                yield node.lineno, top


def imports_by_module(dist: Distribution) -> dict[str, set[str]]:
    """Module path (relative to the distribution) → rfm packages other than its own that it imports."""
    src = dist.root / "src" / dist.import_name
    found: dict[str, set[str]] = {}
    for path in sorted(src.rglob("*.py")):
        others = {top for _, top in rfm_imports(path.read_text(encoding="utf-8")) if top != dist.import_name}
        if others:
            found[str(path.relative_to(dist.root))] = others
    return found


DISTRIBUTIONS = distributions()
IDS = [d.name for d in DISTRIBUTIONS]


def test_the_workspace_has_every_designed_package() -> None:
    assert {d.import_name for d in DISTRIBUTIONS} == set(ALLOWED)
    for dist in DISTRIBUTIONS:
        assert (dist.root / "src" / dist.import_name / "__init__.py").is_file(), f"{dist.name}: not a src layout"


@pytest.mark.parametrize("dist", DISTRIBUTIONS, ids=IDS)
def test_imports_follow_the_dependency_direction(dist: Distribution) -> None:
    allowed = ALLOWED[dist.import_name]
    wrong = {module: sorted(tops - allowed) for module, tops in imports_by_module(dist).items() if tops - allowed}
    assert not wrong, f"{dist.import_name} may import only {sorted(allowed)}; found {wrong}"


@pytest.mark.parametrize("dist", DISTRIBUTIONS, ids=IDS)
def test_imported_rfm_packages_are_declared_dependencies(dist: Distribution) -> None:
    used = {top for tops in imports_by_module(dist).values() for top in tops}
    undeclared = sorted(top for top in used if top.replace("_", "-") not in dist.requires)
    assert not undeclared, (
        f"{dist.name} imports {undeclared} but its pyproject.toml declares none of them in "
        "dependencies or an optional extra: a wheel installed alone would fail to import"
    )


def test_all_distributions_share_one_version() -> None:
    versions = {d.name: d.version for d in DISTRIBUTIONS}
    assert len(set(versions.values())) == 1, f"versions differ: {versions}"


@pytest.mark.parametrize("dist", DISTRIBUTIONS, ids=IDS)
def test_pins_on_sibling_packages_match_the_shared_version(dist: Distribution) -> None:
    # Sibling requirements pin the shared version exactly (rfm-data==X): released together, used together.
    project = tomllib.loads((dist.root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    for requirement in requirements:
        name = _requirement_name(requirement)
        if name.startswith("rfm-") and name != dist.name:
            assert requirement.replace(" ", "").endswith(f"=={dist.version}"), (
                f"{dist.name}: {requirement!r} should pin =={dist.version}"
            )


SAMPLE_VIOLATION = "import numpy\nfrom rfm_models.encoders import x\n\ndef f():\n    import rfm_eval.tasks as t\n"


def test_the_import_scanner_sees_nested_and_from_imports() -> None:
    # Guards the checks above against passing vacuously because the scanner found nothing.
    assert list(rfm_imports(SAMPLE_VIOLATION)) == [(2, "rfm_models"), (5, "rfm_eval")]
    assert list(rfm_imports("from . import rfm_models\nfrom .rfm_eval import y\n")) == []


def test_a_violating_distribution_is_caught(tmp_path: Path) -> None:
    # A throwaway rfm-data that imports rfm_models and declares nothing: both checks must see it.
    (tmp_path / "src" / "rfm_data" / "sub").mkdir(parents=True)
    (tmp_path / "src" / "rfm_data" / "__init__.py").write_text("from rfm_data import io\n")
    (tmp_path / "src" / "rfm_data" / "sub" / "m.py").write_text(SAMPLE_VIOLATION)
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "rfm-data"\nversion = "0.1.0"\ndependencies = ["numpy"]\n'
    )
    dist = _load(tmp_path / "pyproject.toml")
    assert imports_by_module(dist) == {"src/rfm_data/sub/m.py": {"rfm_models", "rfm_eval"}}
    with pytest.raises(AssertionError, match="rfm_data may import only"):
        test_imports_follow_the_dependency_direction(dist)
    with pytest.raises(AssertionError, match="declares none of them"):
        test_imported_rfm_packages_are_declared_dependencies(dist)
