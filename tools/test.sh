#!/usr/bin/env bash
# The README's second command: set up the `test` environment, then run the whole workspace's tests.
#
#   bash tools/test.sh [PYTEST_ARGS...]     e.g.  bash tools/test.sh -m "not slow"   or   -k ingest -n 0
#
# The first run installs every package with all extras (torch included: several GB from PyPI, minutes);
# later runs skip installation unless a pyproject.toml changed. Tests run in parallel over all cores
# (pytest-xdist); pass `-n 0` to run them serially. The exit code is pytest's.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${RFM_VENV:-$REPO_ROOT/.venv}"

bash "$REPO_ROOT/tools/bootstrap.sh" test

cd "$REPO_ROOT"  # pytest finds its configuration (root pyproject.toml) and the root conftest.py from here
echo "[test] pytest -n auto $*"
# `exec` so that pytest's exit code is this script's exit code. The suite is xdist-safe: every test writes
# under its own tmp_path, and session fixtures (e.g. the GCS emulator) start once per worker.
exec "$VENV/bin/python" -m pytest -n auto "$@"
