#!/usr/bin/env bash
# Make a Docker engine answer and make the model image's base image exist. Idempotent: a second
# run on a ready machine returns in well under a second.
#
#   1. docker.io is installed with apt-get when there is no docker CLI/daemon;
#   2. dockerd is started in the background when `docker info` fails, and waited for;
#   3. the base image ($CD4ML_BASE_IMAGE, default python:3.11-slim) is pulled, or, where no
#      registry can be reached (CI here has no Docker Hub), built from Debian packages:
#      `debootstrap --variant=minbase bookworm` with Debian's python3.11 and pip, imported with
#      `docker import` under the configured name. It mimics python:3.11-slim: `python`,
#      `python3` and `pip` on PATH, root may `pip install` (no EXTERNALLY-MANAGED marker).
#      The root file system is cached as a tarball under $CD4ML_CACHE_DIR (default
#      ~/.cache/cd4ml), so a machine whose engine lost its images re-imports in seconds.
#
# Environment: CD4ML_BASE_IMAGE, CD4ML_CACHE_DIR, CD4ML_DEBIAN_MIRROR (default: the host's
# apt mirror, else http://deb.debian.org/debian), CD4ML_NO_PULL=1 (do not try to pull).
set -euo pipefail

BASE_IMAGE="${CD4ML_BASE_IMAGE:-python:3.11-slim}"
CACHE_DIR="${CD4ML_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cd4ml}"
SUITE=bookworm
# bump when the package list or the clean-up below changes: it names the cached tarball
ROOTFS_REVISION=1
PACKAGES=python3,python3-pip,ca-certificates

log() { printf 'docker-up: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

ensure_engine() {
    if docker info >/dev/null 2>&1; then
        return
    fi
    if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
        log "installing docker.io"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null
    fi
    if docker info >/dev/null 2>&1; then  # the package's service may have started it
        return
    fi
    log "starting dockerd (log: /tmp/dockerd.log)"
    as_root sh -c 'nohup dockerd >/tmp/dockerd.log 2>&1 &'
    for _ in $(seq 1 120); do
        if docker info >/dev/null 2>&1; then
            log "dockerd is up"
            return
        fi
        sleep 0.5
    done
    log "dockerd did not answer within 60 s; last lines of /tmp/dockerd.log:"
    tail -n 20 /tmp/dockerd.log >&2 || true
    exit 1
}

host_mirror() {
    # the mirror apt already uses on this host (deb822 or one-line sources), else Debian's CDN
    local m
    m=$(grep -rhoE '^URIs: *https?://[^ ]+/debian/?$' /etc/apt/sources.list.d/ 2>/dev/null | head -n1 | awk '{print $2}')
    [ -n "$m" ] || m=$(grep -rhoE '^deb +https?://[^ ]+/debian/? ' /etc/apt/sources.list 2>/dev/null | head -n1 | awk '{print $2}')
    echo "${m:-http://deb.debian.org/debian}"
}

build_rootfs() {
    local tarball=$1 mirror rootfs
    mirror="${CD4ML_DEBIAN_MIRROR:-$(host_mirror)}"
    if ! command -v debootstrap >/dev/null 2>&1; then
        log "installing debootstrap"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
    fi
    rootfs=$(mktemp -d "${TMPDIR:-/tmp}/cd4ml-rootfs.XXXXXX")
    # shellcheck disable=SC2064  # expand now: the trap must remove this very directory
    trap "as_root rm -rf '$rootfs'" EXIT
    log "debootstrap --variant=minbase $SUITE from $mirror (a few minutes, once)"
    as_root debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$mirror" \
        >"$rootfs.log" 2>&1 || { tail -n 30 "$rootfs.log" >&2; exit 1; }
    rm -f "$rootfs.log"
    as_root chroot "$rootfs" /bin/sh -eu <<'EOF'
# what the official slim images do: no docs, man pages or apt lists in the image, now or later
cat >/etc/dpkg/dpkg.cfg.d/docker-slim <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
CFG
cat >/etc/apt/apt.conf.d/docker-clean <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
APT::Install-Recommends "false";
Acquire::Languages "none";
CFG
# root may pip install, as in python:3.11-slim (whose Python is not Debian-managed)
rm -f /usr/lib/python3*/EXTERNALLY-MANAGED
ln -sf /usr/bin/python3 /usr/local/bin/python
[ -e /usr/bin/pip ] || ln -sf /usr/bin/pip3 /usr/local/bin/pip
apt-get clean
find /usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete
find /usr/share/doc -mindepth 1 -type d -empty -delete
rm -rf /usr/share/man/* /usr/share/info/* /var/lib/apt/lists/* /var/cache/apt/* \
       /var/log/*.log /var/log/apt/* /tmp/* /root/.cache
find /usr/share/locale -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
find /usr/lib/python3* -name __pycache__ -type d -prune -exec rm -rf {} +
EOF
    mkdir -p "$(dirname "$tarball")"
    as_root tar --numeric-owner --xattrs -C "$rootfs" -cf - . | gzip -1 >"$tarball.tmp"
    mv "$tarball.tmp" "$tarball"
    as_root rm -rf "$rootfs"
    trap - EXIT
}

ensure_base_image() {
    if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        return
    fi
    if [ "${CD4ML_NO_PULL:-}" != 1 ] && timeout 120 docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
        log "pulled $BASE_IMAGE"
        return
    fi
    log "$BASE_IMAGE is not present and cannot be pulled: building it from Debian $SUITE"
    local tarball="$CACHE_DIR/rootfs-$SUITE-python3-r$ROOTFS_REVISION.tar.gz"
    if [ ! -s "$tarball" ]; then
        build_rootfs "$tarball"
    else
        log "using cached root file system $tarball"
    fi
    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'LABEL cd4ml.base.origin=debootstrap' \
        --change "LABEL cd4ml.base.suite=$SUITE" \
        --change 'CMD ["python3"]' \
        "$tarball" "$BASE_IMAGE" >/dev/null
    log "imported $BASE_IMAGE ($(docker image inspect -f '{{.Size}}' "$BASE_IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
}

start=$(date +%s)
ensure_engine
ensure_base_image
log "ready: engine $(docker version -f '{{.Server.Version}}'), base image $BASE_IMAGE ($(( $(date +%s) - start )) s)"
