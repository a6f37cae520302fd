#!/usr/bin/env bash
# The README's first command: ingest the sample bundled with rfm-data, then inspect the result.
#
#   bash tools/demo.sh [OUTPUT_DIR]      (default: outputs/demo at the repository root, gitignored)
#
# Sets up the light `demo` environment (rfm-data and its image codecs; no torch) on first use, then runs
#   rfm-data ingest sample OUTPUT_DIR    65 sample files -> de-identified shards + manifest; 2 files are
#                                        deliberately broken and end up quarantined with a reason
#   rfm-data inspect OUTPUT_DIR          counts by status, quarantine reason, view, split and label
# Re-running resumes from what is already in OUTPUT_DIR; delete it for a fresh run.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$REPO_ROOT/outputs/demo}"
VENV="${RFM_VENV:-$REPO_ROOT/.venv}"

bash "$REPO_ROOT/tools/bootstrap.sh" demo

# De-identification pseudonyms are keyed hashes, and the CLI refuses to run without a key. This demo key is
# PUBLIC and NOT SECRET: it only makes the demo runnable. For real data set RFM_DEID_KEY to a secret of
# your own (and keep it: the same key gives the same pseudonyms on the next ingest).
export RFM_DEID_KEY="${RFM_DEID_KEY:-rfm-demo-key-not-secret}"

echo "[demo] rfm-data ingest sample $OUT"
"$VENV/bin/rfm-data" ingest sample "$OUT"
echo
echo "[demo] rfm-data inspect $OUT"
"$VENV/bin/rfm-data" inspect "$OUT"
echo
echo "[demo] done: shards, manifest.parquet and dataset.json are in $OUT"
