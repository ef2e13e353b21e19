#!/usr/bin/env bash
# build-test-image.sh [PYTHON] - build the local Docker image used by the tests.
#
# The image holds Debian bookworm's python3 plus a venv (/opt/venv, on PATH)
# with exactly the dask and distributed versions installed in PYTHON
# (default: .venv/bin/python if it exists, else python3).
#
# No image registry is reachable here, so nothing is pulled:
#   1. a bookworm minbase rootfs is made with mmdebstrap from the Debian
#      mirror in /etc/apt/sources.list* and `docker import`ed as
#      dockerparallel-base:bookworm (reused if it exists);
#   2. wheels are fetched on the host with `pip download` (PyPI);
#   3. `docker build --network none` installs them offline into /opt/venv.
#
# Tags: dockerparallel-test:dask-<dask version> and dockerparallel-test:latest.
# Caches (rootfs tarball, wheels): ${XDG_CACHE_HOME:-$HOME/.cache}/dockerparallel/
#
# Environment knobs (all optional):
#   FORCE=1         rebuild the test image even if the tag exists
#   REBUILD_BASE=1  also recreate the rootfs tarball and the base image
#   DOCKER=...      docker client to use (default: /usr/bin/docker, Debian's
#                   client matching the daemon, else `docker` on PATH)
set -euo pipefail

NAME="build-test-image"
log() { printf '[%s] %s\n' "$NAME" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$NAME" "$*" >&2; exit 1; }

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"

BASE_TAG="dockerparallel-base:bookworm"
IMAGE_REPO="dockerparallel-test"
SUITE="bookworm"
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/dockerparallel"
FORCE="${FORCE:-0}"
REBUILD_BASE="${REBUILD_BASE:-0}"

# ------------------------------------------------------------- interpreter ---
if [[ $# -ge 1 && -n "$1" ]]; then
    PY="$1"
elif [[ -x "$REPO_DIR/.venv/bin/python" ]]; then
    PY="$REPO_DIR/.venv/bin/python"
elif [[ -x .venv/bin/python ]]; then
    PY=".venv/bin/python"
else
    PY="python3"
fi
command -v "$PY" >/dev/null 2>&1 || [[ -x "$PY" ]] || die "python interpreter not found: $PY"

versions="$("$PY" -c 'import dask, distributed; print(dask.__version__, distributed.__version__)' 2>/dev/null)" \
    || die "$PY cannot import dask and distributed (install 'dask[distributed]' into it first)"
read -r DASK_VERSION DISTRIBUTED_VERSION <<<"$versions"
[[ -n "${DASK_VERSION:-}" && -n "${DISTRIBUTED_VERSION:-}" ]] || die "could not parse versions from: $versions"
log "interpreter $PY: dask $DASK_VERSION, distributed $DISTRIBUTED_VERSION"

TAG="$IMAGE_REPO:dask-$DASK_VERSION"
LATEST="$IMAGE_REPO:latest"

# ------------------------------------------------------------------ docker ---
if [[ -z "${DOCKER:-}" ]]; then
    if [[ -x /usr/bin/docker ]]; then DOCKER=/usr/bin/docker
    else DOCKER="$(command -v docker || true)"; fi
fi
[[ -n "$DOCKER" ]] || die "no docker client found (run scripts/install-docker.sh)"
# Classic builder: Debian's docker.io (20.10) ships no buildx plugin.
export DOCKER_BUILDKIT=0
timeout 20 "$DOCKER" info >/dev/null 2>&1 \
    || die "docker daemon does not answer via $DOCKER (run scripts/install-docker.sh)"

image_exists() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

verify_image() {
    local got
    got="$("$DOCKER" run --rm --network host "$TAG" \
        python -c 'import dask, distributed; print(dask.__version__, distributed.__version__)')" \
        || die "could not run python in $TAG"
    [[ "$got" == "$DASK_VERSION $DISTRIBUTED_VERSION" ]] \
        || die "version mismatch in $TAG: got '$got', want '$DASK_VERSION $DISTRIBUTED_VERSION'"
    local sched
    sched="$("$DOCKER" run --rm --network host "$TAG" dask scheduler --version 2>&1)" \
        || die "'dask scheduler --version' failed in $TAG: $sched"
    [[ "$sched" == *"$DISTRIBUTED_VERSION"* ]] \
        || die "'dask scheduler --version' in $TAG printed '$sched', want $DISTRIBUTED_VERSION"
    log "verified $TAG: dask $DASK_VERSION, distributed $DISTRIBUTED_VERSION ($sched)"
}

if image_exists "$TAG" && [[ "$FORCE" != "1" ]]; then
    log "image $TAG already exists; reusing it (FORCE=1 to rebuild)"
    "$DOCKER" tag "$TAG" "$LATEST"
    verify_image
    exit 0
fi

mkdir -p "$CACHE_DIR"
ARCH="$(uname -m)"
case "$ARCH" in
    x86_64)  DEB_ARCH=amd64 ;;
    aarch64) DEB_ARCH=arm64 ;;
    *) die "unsupported architecture: $ARCH" ;;
esac

# ------------------------------------------------------------- base image ---
# Find the Debian mirror(s) apt is configured with (deb822 *.sources and
# one-line *.list formats); the first URI without "security" is the main
# mirror, the first one with it is the security mirror.
apt_uris() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] || continue
        case "$f" in
            *.sources) awk 'tolower($1)=="uris:" {for (i=2;i<=NF;i++) print $i}' "$f" ;;
            *)         awk '$1=="deb" {for (i=2;i<=NF;i++) if ($i !~ /^\[/ && $i !~ /\]$/ && $i ~ /:\/\//) {print $i; break}}' "$f" ;;
        esac
    done
}

make_rootfs() {
    local tarball="$1"
    if ! command -v mmdebstrap >/dev/null 2>&1; then
        log "installing mmdebstrap with apt"
        export DEBIAN_FRONTEND=noninteractive
        if ! apt-cache policy mmdebstrap 2>/dev/null | grep -q 'Candidate: [0-9]'; then
            apt-get update -q >&2 || die "apt-get update failed"
        fi
        apt-get install -y -q --no-install-recommends mmdebstrap >&2 || {
            apt-get update -q >&2 && apt-get install -y -q --no-install-recommends mmdebstrap >&2
        } || die "could not install mmdebstrap"
    fi
    local uris mirror secmirror
    uris="$(apt_uris | grep -E '/debian(-security)?/?$' || true)"
    mirror="$(grep -v security <<<"$uris" | head -n1 || true)"
    secmirror="$(grep security <<<"$uris" | head -n1 || true)"
    mirror="${mirror:-http://deb.debian.org/debian}"
    mirror="${mirror%/}"
    local sources=("deb $mirror $SUITE main" "deb $mirror $SUITE-updates main")
    [[ -n "$secmirror" ]] && sources+=("deb ${secmirror%/} $SUITE-security main")
    log "mmdebstrap $SUITE (minbase + python3, python3-venv) from: $mirror${secmirror:+ , $secmirror}"
    # mmdebstrap picks the output format from the file name: keep ".tar".
    local tmp="${tarball%.tar}.tmp$$.tar"
    # path-exclude: drop docs/man pages/translations to keep the image small.
    mmdebstrap --variant=minbase --architectures="$DEB_ARCH" \
        --include=python3,python3-venv,ca-certificates \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        "$SUITE" "$tmp" "${sources[@]}" >&2 \
        || { rm -f "$tmp"; die "mmdebstrap failed"; }
    mv -f "$tmp" "$tarball"
}

ROOTFS_TAR="$CACHE_DIR/rootfs-$SUITE-$DEB_ARCH.tar"
if [[ "$REBUILD_BASE" == "1" ]]; then
    log "REBUILD_BASE=1: discarding cached rootfs and $BASE_TAG"
    rm -f "$ROOTFS_TAR"
    "$DOCKER" image rm "$BASE_TAG" >/dev/null 2>&1 || true
fi
if image_exists "$BASE_TAG"; then
    log "base image $BASE_TAG exists; reusing it"
else
    if [[ -s "$ROOTFS_TAR" ]]; then
        log "reusing cached rootfs $ROOTFS_TAR"
    else
        t0=$SECONDS
        make_rootfs "$ROOTFS_TAR"
        log "rootfs done in $((SECONDS - t0))s: $ROOTFS_TAR ($(du -h "$ROOTFS_TAR" | cut -f1))"
    fi
    log "docker import -> $BASE_TAG"
    "$DOCKER" import \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        "$ROOTFS_TAR" "$BASE_TAG" >/dev/null || die "docker import failed"
fi

IMG_PYVER="$("$DOCKER" run --rm --network none "$BASE_TAG" \
    python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
    || die "python3 does not run in $BASE_TAG"
log "base image python: $IMG_PYVER"

# ------------------------------------------------------------------ wheels ---
WHEEL_DIR="$CACHE_DIR/wheels/dask-$DASK_VERSION-distributed-$DISTRIBUTED_VERSION-py$IMG_PYVER-$ARCH"
REQS=("dask[distributed]==$DASK_VERSION" "distributed==$DISTRIBUTED_VERSION")
if [[ -f "$WHEEL_DIR/.complete" ]]; then
    log "reusing cached wheels in $WHEEL_DIR"
else
    # pip of the given interpreter if it has one, else the host's python3.
    PIP=("$PY" -m pip)
    "${PIP[@]}" --version >/dev/null 2>&1 || PIP=(python3 -m pip)
    log "pip download (${PIP[*]}) for python $IMG_PYVER/$ARCH -> $WHEEL_DIR"
    t0=$SECONDS
    mkdir -p "$WHEEL_DIR"
    # Binary wheels only, for the image's python and glibc (bookworm: 2.36),
    # so the result does not depend on the host's python.
    "${PIP[@]}" download --disable-pip-version-check --quiet \
        --dest "$WHEEL_DIR" --only-binary=:all: \
        --python-version "$IMG_PYVER" --implementation cp --abi "cp${IMG_PYVER/./}" --abi abi3 --abi none \
        --platform "manylinux_2_36_$ARCH" --platform "manylinux_2_28_$ARCH" \
        --platform "manylinux2014_$ARCH" --platform "manylinux2010_$ARCH" \
        --platform "manylinux1_$ARCH" --platform any \
        "${REQS[@]}" >&2 \
        || die "pip download failed"
    touch "$WHEEL_DIR/.complete"
    log "wheels done in $((SECONDS - t0))s: $(find "$WHEEL_DIR" -name '*.whl' | wc -l) wheels, $(du -sh "$WHEEL_DIR" | cut -f1)"
fi

# ------------------------------------------------------------------- build ---
CTX="$(mktemp -d "${TMPDIR:-/tmp}/dockerparallel-build.XXXXXX")"
trap 'rm -rf "$CTX"' EXIT
cp -a "$WHEEL_DIR" "$CTX/wheels"
rm -f "$CTX/wheels/.complete"
cat >"$CTX/Dockerfile" <<EOF
FROM $BASE_TAG
COPY wheels /wheels
RUN python3 -m venv /opt/venv \\
 && /opt/venv/bin/pip install --no-index --find-links /wheels --no-cache-dir --disable-pip-version-check \\
      'dask[distributed]==$DASK_VERSION' 'distributed==$DISTRIBUTED_VERSION' \\
 && rm -rf /wheels
ENV PATH=/opt/venv/bin:\$PATH \\
    PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1
LABEL org.dockerparallel.dask-version="$DASK_VERSION" \\
      org.dockerparallel.distributed-version="$DISTRIBUTED_VERSION"
CMD ["python3"]
EOF

OLD_ID="$("$DOCKER" image inspect -f '{{.Id}}' "$TAG" 2>/dev/null || true)"
BUILD_ARGS=(--force-rm -t "$TAG")
[[ "$FORCE" == "1" ]] && BUILD_ARGS+=(--no-cache)
log "docker build ${BUILD_ARGS[*]} (network none: pip installs offline)"
t0=$SECONDS
if ! "$DOCKER" build --network none "${BUILD_ARGS[@]}" "$CTX" >&2; then
    log "build with --network none failed; retrying with the default network"
    "$DOCKER" build "${BUILD_ARGS[@]}" "$CTX" >&2 || die "docker build failed"
fi
"$DOCKER" tag "$TAG" "$LATEST"
# On a rebuild, drop the previous image if nothing tags it any more
# (docker rmi also removes its untagged parent layers, e.g. an old base).
if [[ -n "$OLD_ID" && "$OLD_ID" != "$("$DOCKER" image inspect -f '{{.Id}}' "$TAG")" ]] && \
   [[ "$("$DOCKER" image inspect -f '{{len .RepoTags}}' "$OLD_ID" 2>/dev/null || echo 1)" == "0" ]]; then
    if "$DOCKER" image rm "$OLD_ID" >/dev/null 2>&1; then
        log "removed previous, now untagged image ${OLD_ID:7:12}"
    fi
fi
log "build done in $((SECONDS - t0))s: $TAG ($("$DOCKER" image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}'))"

verify_image
log "done: $TAG and $LATEST"
