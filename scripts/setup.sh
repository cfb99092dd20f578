#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine for cd4ml: system services, the Python package, the Docker
# engine and a base image. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# Debian packages: the Docker engine, PostgreSQL and an OCI registry for the tests, debootstrap
# to build a base image where none can be pulled, chromium for the web view's browser tests
# (Playwright drives Debian's build; it never downloads a browser of its own).
pkgs=(docker.io postgresql docker-registry debootstrap git chromium)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts these services on install where it can; cd4ml's tests start their own.
$SUDO systemctl disable --now postgresql docker-registry >/dev/null 2>&1 || true

PY=${PYTHON:-python3}
extras=${CD4ML_EXTRAS:-test}
echo "setup: pip install -e .[$extras]"
$PY -m pip install -q --disable-pip-version-check -e ".[$extras]"

if [ -x scripts/docker-up.sh ] || [ -f scripts/docker-up.sh ]; then
  bash scripts/docker-up.sh
fi
