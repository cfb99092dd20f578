#!/usr/bin/env bash
# The main job on a fresh machine: set up, then run the example pipeline end to end on the
# embedded defaults (SQLite store and artifacts under .cd4ml/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PIPELINE=${PIPELINE:-pipelines/wine.yaml}
cd4ml run -p "$PIPELINE"
