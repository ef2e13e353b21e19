#!/usr/bin/env bash
# start-second-dockerd.sh - a second Docker daemon beside the first, for the
# tests of DockerProvider(hosts=[...]) (tests/providers/test_docker_hosts.py).
#
# Idempotent: when the second daemon already answers and holds the test image,
# it says so and exits 0. Otherwise it starts
#
#   dockerd --host unix:///run/dockerparallel-docker2.sock
#           --data-root /var/lib/dockerparallel-docker2
#           --exec-root /run/dockerparallel-docker2-exec
#           --pidfile   /run/dockerparallel-docker2.pid
#           --bridge none --iptables=false --ip-masq=false
#
# (its own containerd, state, pid file and cgroup parent; no bridge and no
# iptables rules, so it cannot disturb the first daemon's network: its
# containers use the host network, as the tests do), waits until it answers,
# and loads the test image into it from the first daemon
# (`docker save IMAGE | docker -H SOCKET load`); nothing is pulled.
#
# Needs: root, the first daemon (scripts/install-docker.sh) holding the test
# image (scripts/build-test-image.sh).
#
# Environment knobs (all optional):
#   DOCKER2_SOCKET   the socket path      (default /run/dockerparallel-docker2.sock)
#   DOCKER2_LOG      the daemon's log     (default /var/log/dockerparallel-docker2.log)
#   DOCKER2_WAIT     seconds to wait      (default 60)
#   TEST_IMAGE       image to load        (default dockerparallel-test:latest)
set -euo pipefail

NAME="start-second-dockerd"
log() { printf '[%s] %s\n' "$NAME" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$NAME" "$*" >&2; exit 1; }

SOCKET="${DOCKER2_SOCKET:-/run/dockerparallel-docker2.sock}"
DATA_ROOT=/var/lib/dockerparallel-docker2
EXEC_ROOT=/run/dockerparallel-docker2-exec
PIDFILE=/run/dockerparallel-docker2.pid
CONFIG=/run/dockerparallel-docker2-daemon.json
LOG="${DOCKER2_LOG:-/var/log/dockerparallel-docker2.log}"
WAIT="${DOCKER2_WAIT:-60}"
IMAGE="${TEST_IMAGE:-dockerparallel-test:latest}"

[[ "$(id -u)" -eq 0 ]] || die "must run as root (starts dockerd)"
command -v dockerd >/dev/null 2>&1 || die "dockerd is missing; run: bash scripts/install-docker.sh"
if [[ -x /usr/bin/docker ]]; then DOCKER=/usr/bin/docker; else DOCKER="$(command -v docker)" || die "no docker client"; fi

first()  { timeout 30 "$DOCKER" "$@"; }
second() { timeout 30 "$DOCKER" -H "unix://$SOCKET" "$@"; }
answers() { second info >/dev/null 2>&1; }
# Whether process $1 lives (a zombie, not yet reaped, does not); alive FILE: the process of a pid file.
alive_pid() {
    local state
    [[ -n "${1:-}" ]] || return 1
    state="$(ps -o stat= -p "$1" 2>/dev/null)" || return 1
    [[ -n "$state" && "$state" != Z* ]]
}
alive() { alive_pid "$(cat "$1" 2>/dev/null)"; }

first info >/dev/null 2>&1 || die "the first Docker daemon does not answer; run: bash scripts/install-docker.sh"

if answers; then
    log "the second daemon already answers at unix://$SOCKET"
else
    started="$(cat "$PIDFILE" 2>/dev/null || true)"
    if alive_pid "$started"; then
        log "dockerd (pid $started) is starting; waiting for it"
    else
        rm -f "$PIDFILE" "$SOCKET"
        # A containerd left by a killed daemon (or its zombie) would be waited for in vain.
        alive "$EXEC_ROOT/containerd/containerd.pid" || rm -f "$EXEC_ROOT/containerd/containerd.pid"
        mkdir -p "$DATA_ROOT" "$EXEC_ROOT" "$(dirname "$LOG")"
        echo '{}' >"$CONFIG"  # not /etc/docker/daemon.json: that one is the first daemon's
        args=(--host "unix://$SOCKET" --data-root "$DATA_ROOT" --exec-root "$EXEC_ROOT" --pidfile "$PIDFILE"
              --config-file "$CONFIG" --bridge none --iptables=false --ip-masq=false
              --exec-opt native.cgroupdriver=cgroupfs --cgroup-parent dockerparallel-docker2)
        log "starting: dockerd ${args[*]} (log: $LOG)"
        setsid nohup dockerd "${args[@]}" >>"$LOG" 2>&1 </dev/null &
        started=$!
    fi
    for ((i = 0; i < WAIT; i++)); do
        answers && break
        if ! alive_pid "$started"; then
            log "dockerd exited"
            break
        fi
        sleep 1
    done
    if ! answers; then
        tail -n 30 "$LOG" >&2 || true
        die "the second daemon did not answer at unix://$SOCKET within ${WAIT}s"
    fi
    log "the second daemon answers at unix://$SOCKET"
fi

wanted="$(first image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null)" \
    || die "the first daemon has no $IMAGE; run: bash scripts/build-test-image.sh .venv/bin/python"
have="$(second image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
if [[ "$have" == "$wanted" ]]; then
    log "$IMAGE is on the second daemon"
else
    log "loading $IMAGE into the second daemon (docker save | docker -H unix://$SOCKET load)"
    "$DOCKER" save "$IMAGE" | timeout 300 "$DOCKER" -H "unix://$SOCKET" load >&2 || die "loading $IMAGE failed"
fi
echo "unix://$SOCKET"
