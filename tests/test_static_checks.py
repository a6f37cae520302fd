"""The style and typing rules of DESIGN.md hold for the whole workspace: ruff clean, mypy --strict clean src."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    beside = Path(sys.executable).parent / name  # the venv's own tool, whatever PATH says
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (it is in the workspace dev extra)")
    return found


def test_ruff_finds_nothing() -> None:
    done = subprocess.run([_tool("ruff"), "check", "."], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:]


@pytest.mark.slow
def test_mypy_strict_finds_nothing_in_src() -> None:
    # The root pyproject's [tool.mypy] names the files (every package's src/) and sets strict mode.
    done = subprocess.run([_tool("mypy")], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:]
