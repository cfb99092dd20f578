#!/usr/bin/env bash
# The main job on a fresh machine: set up, then the example pipeline end to end on the embedded
# defaults (SQLite store, artifacts and prediction logs under .cd4ml/): validate, train, evaluate,
# gate; build the model server image and infra-validate it; deploy it to the local staging
# environment; send one prediction and trace it back to its model, run, data and commit.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

SPEC=${PIPELINE:-pipelines/wine.yaml}
# pip inside the image build must trust what the host's pip trusts (a TLS-inspecting proxy):
# only then, and only for this demo, is the host's bundle handed to the build.
if [ -z "${CD4ML_BUILD_CA_BUNDLE:-}" ] && [ -n "${PIP_CERT:-}" ] && [ -f "$PIP_CERT" ]; then
  export CD4ML_BUILD_CA_BUNDLE=$PIP_CERT
fi

if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
  step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
  step() { printf '\n== %s\n' "$*"; }
fi

step "validate, train, evaluate, gate"
cd4ml run -p "$SPEC"
step "build the model server image and prove it serves"
cd4ml build -p "$SPEC"
step "deploy to staging (blue/green on the local Docker engine)"
cd4ml deploy -p "$SPEC" --env staging
step "one prediction"
request_id="demo-$(date +%s)"
cd4ml predict -p "$SPEC" --env staging --request-id "$request_id"
step "where that prediction came from"
cd4ml lineage --request-id "$request_id"
step "what runs where"
cd4ml status -p "$SPEC"
