#!/usr/bin/env bash
# start-podman.sh - Podman's Docker-compatible API beside the Docker Engine, for the tests of
# DockerProvider(base_url="unix:///run/podman/podman.sock") (tests/providers/test_podman.py).
#
# Idempotent: installs Debian's podman when it is missing (rootful: no
# fuse-overlayfs, uidmap or slirp4netns needed), writes its settings, starts
#
#   podman system service --time=0 unix:///run/podman/podman.sock
#
# in the background unless it already answers, waits until it does, loads the
# test image into podman's own storage from the Docker Engine
# (`docker save IMAGE | podman load`; nothing is pulled) and checks that a
# container of it runs on the host network. Podman keeps its containers and
# images apart (/var/lib/containers) and, with the host network, creates no
# bridge or iptables rule: the Docker daemons are not touched.
#
# Settings (/etc/containers/containers.conf.d/dockerparallel.conf):
#   default_ulimits  rootful podman asks for RLIMIT_NOFILE = 1048576 in every
#                    container; without CAP_SYS_RESOURCE (as in this sandbox)
#                    runc then fails with "error setting rlimit type 7:
#                    operation not permitted". The limits written here are
#                    this shell's hard limits (nproc at most 32768, what
#                    podman sets for itself), which runc can always set.
#   cgroup_manager   cgroupfs (no systemd as PID 1 here); events_logger file.
#
# The short name dockerparallel-test:latest resolves to podman's
# localhost/dockerparallel-test:latest (what `podman load` names it), both
# in the CLI and in the Docker-compatible API.
#
# Needs: root, the Docker Engine (scripts/install-docker.sh) holding the test
# image (scripts/build-test-image.sh).
#
# Environment knobs (all optional):
#   PODMAN_SOCKET  the socket path        (default /run/podman/podman.sock)
#   PODMAN_LOG     the service's log      (default /var/log/dockerparallel-podman.log)
#   PODMAN_WAIT    seconds to wait        (default 30)
#   TEST_IMAGE     image to load          (default dockerparallel-test:latest)
set -euo pipefail

NAME="start-podman"
log() { printf '[%s] %s\n' "$NAME" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$NAME" "$*" >&2; exit 1; }

SOCKET="${PODMAN_SOCKET:-/run/podman/podman.sock}"
LOG="${PODMAN_LOG:-/var/log/dockerparallel-podman.log}"
WAIT="${PODMAN_WAIT:-30}"
IMAGE="${TEST_IMAGE:-dockerparallel-test:latest}"
PIDFILE=/run/dockerparallel-podman.pid
CONF=/etc/containers/containers.conf.d/dockerparallel.conf

[[ "$(id -u)" -eq 0 ]] || die "must run as root (apt-get, rootful podman)"
if [[ -x /usr/bin/docker ]]; then DOCKER=/usr/bin/docker; else DOCKER="$(command -v docker)" || die "no docker client"; fi
timeout 30 "$DOCKER" info >/dev/null 2>&1 || die "the Docker Engine does not answer; run: bash scripts/install-docker.sh"

# ---------------------------------------------------------------- install ---
missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if (( ${#missing[@]} )); then
    export DEBIAN_FRONTEND=noninteractive
    if [[ -z "$(apt-cache policy podman 2>/dev/null | awk '/Candidate:/ && $2 != "(none)" {print $2}')" ]] || \
       [[ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 -print -quit 2>/dev/null)" ]]; then
        log "apt-get update"
        apt-get update -q >&2 || die "apt-get update failed"
    fi
    log "apt-get install -y ${missing[*]}"
    if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; then
        log "install failed; refreshing package lists and retrying once"
        apt-get update -q >&2 || die "apt-get update failed"
        apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
    fi
fi
log "$(podman --version)"

# --------------------------------------------------------------- settings ---
hard() {  # hard() LIMIT_FLAG CAP: this shell's hard limit, at most CAP
    local value
    value="$(ulimit -H "$1")"
    if [[ "$value" == unlimited ]] || (( value > $2 )); then value=$2; fi
    echo "$value"
}
nofile="$(hard -n 1048576)"
nproc="$(hard -u 32768)"
wanted_conf="# Written by scripts/start-podman.sh (dockerparallel's tests); see the comments there.
[containers]
default_ulimits = [\"nofile=$nofile:$nofile\", \"nproc=$nproc:$nproc\"]

[engine]
cgroup_manager = \"cgroupfs\"
events_logger = \"file\""
conf_changed=0
if [[ "$(cat "$CONF" 2>/dev/null || true)" != "$wanted_conf" ]]; then
    mkdir -p "$(dirname "$CONF")"
    printf '%s\n' "$wanted_conf" >"$CONF"
    conf_changed=1
    log "wrote $CONF (nofile=$nofile, nproc=$nproc)"
fi

# ---------------------------------------------------------------- service ---
answers() { curl -sf --max-time 5 --unix-socket "$SOCKET" http://d/_ping >/dev/null 2>&1; }
alive_pid() {  # a live process (a zombie is not one)
    local state
    [[ -n "${1:-}" ]] || return 1
    state="$(ps -o stat= -p "$1" 2>/dev/null)" || return 1
    [[ -n "$state" && "$state" != Z* ]]
}
ours="$(cat "$PIDFILE" 2>/dev/null || true)"
if (( conf_changed )) && alive_pid "$ours"; then
    log "settings changed: stopping the service (pid $ours) to restart it"
    kill "$ours"
    for ((i = 0; i < 50; i++)); do alive_pid "$ours" || break; sleep 0.1; done
elif (( conf_changed )) && answers; then
    die "settings changed but the service at unix://$SOCKET was not started by this script; restart it"
fi

if answers; then
    log "the service already answers at unix://$SOCKET"
else
    if alive_pid "$ours"; then
        log "podman system service (pid $ours) is starting; waiting for it"
    else
        mkdir -p "$(dirname "$SOCKET")" "$(dirname "$LOG")"
        rm -f "$SOCKET"
        log "starting: podman system service --time=0 unix://$SOCKET (log: $LOG)"
        setsid nohup podman system service --time=0 "unix://$SOCKET" >>"$LOG" 2>&1 </dev/null &
        ours=$!
        echo "$ours" >"$PIDFILE"
    fi
    for ((i = 0; i < WAIT * 10; i++)); do
        answers && break
        alive_pid "$ours" || break
        sleep 0.1
    done
    if ! answers; then
        tail -n 30 "$LOG" >&2 || true
        die "podman system service did not answer at unix://$SOCKET within ${WAIT}s"
    fi
    log "the service answers at unix://$SOCKET"
fi

# ------------------------------------------------------------------ image ---
wanted="$(timeout 30 "$DOCKER" image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null)" \
    || die "the Docker Engine has no $IMAGE; run: bash scripts/build-test-image.sh .venv/bin/python"
have="$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
if [[ "sha256:${have#sha256:}" == "$wanted" ]]; then
    log "$IMAGE is in podman's storage"
else
    log "loading $IMAGE into podman (docker save | podman load)"
    "$DOCKER" save "$IMAGE" | timeout 300 podman load -q >&2 || die "loading $IMAGE failed"
fi
curl -sf --max-time 10 --unix-socket "$SOCKET" "http://d/v1.41/images/$IMAGE/json" >/dev/null \
    || die "the Docker-compatible API does not resolve $IMAGE"

# A container of the image runs on the host network (fails here, with runc's words, rather than in the tests).
timeout 60 podman run --rm --network host "$IMAGE" python -c 'pass' >&2 \
    || die "podman cannot run a container: podman run --rm --network host $IMAGE python -c pass"
log "a container of $IMAGE runs on the host network"
echo "unix://$SOCKET"
