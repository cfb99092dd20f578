#!/usr/bin/env bash
# Sets up this machine (scripts/setup.sh), checks the code (ruff, then mypy: any finding fails)
# and runs the whole test suite: unit, integration (Docker, PostgreSQL, registry, local GitHub
# server) and the end-to-end story.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "test: ruff check cd4ml tests bench"
python3 -m ruff check cd4ml tests bench
echo "test: mypy cd4ml"
python3 -m mypy cd4ml
exec python3 -m pytest -q -p no:cacheprovider "$@"
