#!/usr/bin/env bash
# install-docker.sh - make a working Docker engine available on this machine.
#
# Idempotent:
#   * if `docker info` already answers, it says so and exits 0;
#   * otherwise installs Debian's docker.io (apt-get update only when needed),
#     starts dockerd in the background (there is no systemd here) and waits
#     until the daemon answers.
#
# Environment knobs (all optional):
#   DOCKERD_LOG        where dockerd writes its log   (default /var/log/dockerd.log)
#   DOCKERD_WAIT       seconds to wait for the daemon  (default 60)
#   DOCKERD_EXTRA_ARGS extra flags appended to the dockerd command line
#
# Client note: /usr/local/bin/docker (a standalone 28.x client, API 1.50)
# shadows Debian's /usr/bin/docker (20.10.24, API 1.41). The newer client
# negotiates the API down to 1.41, so info/run/import/build all work with it;
# `docker build` just prints a "legacy builder is deprecated" notice because
# there is no buildx plugin (Debian's docker.io has none). Our scripts still
# call /usr/bin/docker explicitly: it matches the daemon exactly.
set -euo pipefail

NAME="install-docker"
log()  { printf '[%s] %s\n' "$NAME" "$*" >&2; }
die()  { printf '[%s] ERROR: %s\n' "$NAME" "$*" >&2; exit 1; }

DOCKERD_LOG="${DOCKERD_LOG:-/var/log/dockerd.log}"
DOCKERD_WAIT="${DOCKERD_WAIT:-60}"

# Prefer Debian's client when present (matches the daemon exactly); fall back
# to whatever `docker` is on PATH (e.g. /usr/local/bin/docker).
pick_docker() {
    if [[ -x /usr/bin/docker ]]; then
        DOCKER=/usr/bin/docker
    elif command -v docker >/dev/null 2>&1; then
        DOCKER="$(command -v docker)"
    else
        DOCKER=""
    fi
}

docker_answers() {
    [[ -n "${DOCKER:-}" ]] && timeout 20 "$DOCKER" info >/dev/null 2>&1
}

print_versions() {
    local sv
    sv="$("$DOCKER" version --format '{{.Server.Version}} (API {{.Server.APIVersion}})' 2>/dev/null || true)"
    log "docker server version: ${sv:-unknown}"
    log "docker client used: $DOCKER ($("$DOCKER" version --format '{{.Client.Version}}' 2>/dev/null || echo '?'))"
    if [[ "$DOCKER" != "$(command -v docker 2>/dev/null || true)" ]] && command -v docker >/dev/null 2>&1; then
        log "note: 'docker' on PATH is $(command -v docker); it $(timeout 20 docker info >/dev/null 2>&1 && echo 'also talks to the daemon' || echo 'does NOT talk to the daemon; use /usr/bin/docker')"
    fi
}

[[ "$(id -u)" -eq 0 ]] || die "must run as root (needs apt-get and dockerd)"

pick_docker
if docker_answers; then
    log "docker already answers (docker info OK); nothing to do"
    print_versions
    exit 0
fi

# ---------------------------------------------------------------- install ---
export DEBIAN_FRONTEND=noninteractive

apt_candidate() {  # prints candidate version of $1 or empty
    apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}' | grep -v '(none)' || true
}

if ! command -v dockerd >/dev/null 2>&1; then
    # apt-get update only if the package is unknown or the lists are stale
    # (a stale list makes apt fetch .debs that the mirror no longer has).
    need_update=0
    [[ -n "$(apt_candidate docker.io)" ]] || need_update=1
    if [[ $need_update -eq 0 ]] && \
       [[ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 -print -quit 2>/dev/null)" ]]; then
        need_update=1
    fi
    if [[ $need_update -eq 1 ]]; then
        log "apt-get update"
        apt-get update -q >&2 || die "apt-get update failed"
    fi
    log "apt-get install -y docker.io"
    if ! apt-get install -y -q --no-install-recommends docker.io >&2; then
        log "install failed; refreshing package lists and retrying once"
        apt-get update -q >&2 || die "apt-get update failed"
        apt-get install -y -q --no-install-recommends docker.io >&2 \
            || die "apt-get install docker.io failed"
    fi
else
    log "dockerd already installed: $(command -v dockerd)"
fi
command -v dockerd >/dev/null 2>&1 || die "dockerd not found after install"
pick_docker
[[ -n "$DOCKER" ]] || die "no docker client found after install"

# ------------------------------------------------------------------ start ---
# dockerd flags for this sandbox (a Firecracker VM, kernel 6.18, ext4 root,
# cgroup v1 hybrid, no systemd). Tested: plain `dockerd` with no flags works
# here - it picks overlay2 storage, the cgroupfs driver and sets up docker0 /
# iptables (nft) fine, and --cpus/--memory limits are enforced. So no flag is
# strictly needed; the one below only pins the default for clarity:
DOCKERD_ARGS=(
    # No systemd as PID 1 here, so cgroups must be managed via cgroupfs.
    --exec-opt native.cgroupdriver=cgroupfs
)
# Storage: dockerd auto-selects overlay2 (ext4 + overlayfs available). If a
# machine lacks overlayfs, run with DOCKERD_EXTRA_ARGS=--storage-driver=vfs.
# shellcheck disable=SC2206
DOCKERD_ARGS+=( ${DOCKERD_EXTRA_ARGS:-} )

# The default daemon is the one whose pid is in /var/run/docker.pid: a second daemon
# (scripts/start-second-dockerd.sh) has a pid file of its own and does not count.
default_dockerd_running() { [[ -f /var/run/docker.pid ]] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; }

if default_dockerd_running; then
    DOCKERD_PID="$(cat /var/run/docker.pid)"
    log "dockerd already running (pid $DOCKERD_PID); waiting for it"
else
    # A stale pid file from an earlier (killed) dockerd blocks a new start.
    if [[ -f /var/run/docker.pid ]] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
        log "removing stale /var/run/docker.pid"
        rm -f /var/run/docker.pid
    fi
    log "starting: dockerd ${DOCKERD_ARGS[*]} (log: $DOCKERD_LOG)"
    mkdir -p "$(dirname "$DOCKERD_LOG")"
    # setsid + nohup: detach from this shell so dockerd outlives the script.
    setsid nohup dockerd "${DOCKERD_ARGS[@]}" >>"$DOCKERD_LOG" 2>&1 </dev/null &
    DOCKERD_PID=$!
    log "dockerd started (pid $DOCKERD_PID)"
fi

log "waiting up to ${DOCKERD_WAIT}s for the daemon"
for ((i = 0; i < DOCKERD_WAIT; i++)); do
    if docker_answers; then
        log "daemon answers after ${i}s"
        print_versions
        exit 0
    fi
    if ! kill -0 "$DOCKERD_PID" 2>/dev/null; then
        log "dockerd exited; last lines of $DOCKERD_LOG:"
        tail -n 30 "$DOCKERD_LOG" >&2 || true
        die "dockerd died during startup"
    fi
    sleep 1
done
log "last lines of $DOCKERD_LOG:"
tail -n 30 "$DOCKERD_LOG" >&2 || true
die "docker daemon did not answer within ${DOCKERD_WAIT}s"
