#!/usr/bin/env bash
# Sets up this machine (scripts/setup.sh) and runs the whole test suite: unit, integration
# (Docker, PostgreSQL, registry, local GitHub server) and the end-to-end story.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec python3 -m pytest -q -p no:cacheprovider "$@"
