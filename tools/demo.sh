#!/usr/bin/env bash
# The README's first command: the end-to-end pipeline, locally, on the sample bundled with rfm-data.
#
#   bash tools/demo.sh [OUTPUT_DIR] [--set KEY=VALUE ...]   (default: outputs/demo at the repository root)
#
# Sets up the `demo` environment on first use (every rfm package; torch from PyPI), then runs
#   rfm run end-to-end --pipeline-root OUTPUT_DIR
# with kfp.local in this environment (offline): ingest the 65 sample files (2 are deliberately broken and
# quarantined) → label the reports → a short warm-up CLIP pretraining → embed → three training sets drawn from
# the train split (curated 25 %, random 25 %, all) → the same pretraining budget for each → rfm-eval (zero-shot
# AUROC, retrieval R@K, linear probe, kNN with bootstrap CIs) → a comparison with paired tests against the
# full-data model, printed at the end with the path of the report and its plots. ~10 minutes on 2 cores.
# Extra arguments go to `rfm run` (e.g. --set train_steps=200); docs/pipelines.md lists the parameters.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$REPO_ROOT/outputs/demo"
if [[ $# -gt 0 && "$1" != --* ]]; then OUT="$1"; shift; fi
VENV="${RFM_VENV:-$REPO_ROOT/.venv}"

bash "$REPO_ROOT/tools/bootstrap.sh" demo

# De-identification pseudonyms are keyed hashes, and ingest refuses to run without a key. This demo key is
# PUBLIC and NOT SECRET: it only makes the demo runnable. For real data set RFM_DEID_KEY to a secret of
# your own (and keep it: the same key gives the same pseudonyms on the next ingest).
export RFM_DEID_KEY="${RFM_DEID_KEY:-rfm-demo-key-not-secret}"

echo "[demo] rfm run end-to-end --pipeline-root $OUT $*"
exec "$VENV/bin/rfm" run end-to-end --pipeline-root "$OUT" "$@"
