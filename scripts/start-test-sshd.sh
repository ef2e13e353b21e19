#!/usr/bin/env bash
# start-test-sshd.sh - an SSH server on 127.0.0.1 through which the tests reach
# a Docker Engine as DockerProvider(hosts=["ssh://root@127.0.0.1:PORT", ...]).
#
# Idempotent: when its sshd already runs, it only prints what the tests need.
# Otherwise it
#   * installs Debian's openssh-server if sshd is missing (apt-get update
#     first only when apt does not know the package; no service is started:
#     /usr/sbin/policy-rc.d forbids it during the install);
#   * makes, under $DIR (default /run/dockerparallel-sshd, mode 0700), a host
#     key and a client key pair (ed25519, no passphrase, used by nothing else);
#   * starts `sshd -f $DIR/sshd_config`: ListenAddress 127.0.0.1 only, root
#     with that key only (no password, no PAM, no forwarding, no tty), and the
#     key may run one command only: `docker system dial-stdio` (what the docker
#     SDK's ssh:// transport runs) against $SSH_DOCKER_HOST, by default the
#     SECOND daemon (scripts/start-second-dockerd.sh). So the SSH engine is a
#     real, separate engine reached over SSH, not the first daemon twice;
#   * writes $DIR/home/.ssh/{config,known_hosts}: the docker SDK (paramiko)
#     reads ~/.ssh/config (IdentityFile) and ~/.ssh/known_hosts (unknown
#     hosts are refused), so the tests run with HOME=$DIR/home;
#   * writes $DIR/sshd.env (KEY=value lines) and prints it:
#       DOCKERPARALLEL_SSH_URL=ssh://root@127.0.0.1:PORT
#       DOCKERPARALLEL_SSH_HOME=$DIR/home
#       DOCKERPARALLEL_SSH_KEY=$DIR/client_ed25519
#       DOCKERPARALLEL_SSH_ENGINE=<the engine behind it>
#
# Environment knobs (all optional):
#   DOCKERPARALLEL_SSHD_DIR   (default /run/dockerparallel-sshd)
#   DOCKERPARALLEL_SSHD_PORT  (default 22122; another free port if taken)
#   SSH_DOCKER_HOST           (default unix:///run/dockerparallel-docker2.sock)
set -euo pipefail

NAME="start-test-sshd"
log() { printf '[%s] %s\n' "$NAME" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$NAME" "$*" >&2; exit 1; }

DIR="${DOCKERPARALLEL_SSHD_DIR:-/run/dockerparallel-sshd}"
PORT="${DOCKERPARALLEL_SSHD_PORT:-22122}"
ENGINE="${SSH_DOCKER_HOST:-unix:///run/dockerparallel-docker2.sock}"
SSHD=/usr/sbin/sshd

[[ "$(id -u)" -eq 0 ]] || die "must run as root (installs openssh-server, logs in as root)"

# Whether our sshd runs (a zombie, not yet reaped, does not) and has written what the tests read.
running() {
    local pid state
    pid="$(cat "$DIR/sshd.pid" 2>/dev/null)" || return 1
    state="$(ps -o stat= -p "$pid" 2>/dev/null)" || return 1
    [[ -n "$state" && "$state" != Z* && -f "$DIR/sshd.env" ]]
}

if running; then
    log "sshd (pid $(cat "$DIR/sshd.pid")) already runs"
    cat "$DIR/sshd.env"
    exit 0
fi

# ---------------------------------------------------------------- install ---
if [[ ! -x "$SSHD" ]]; then
    export DEBIAN_FRONTEND=noninteractive
    if [[ -z "$(apt-cache policy openssh-server 2>/dev/null | awk '/Candidate:/ && $2 != "(none)" {print $2}')" ]]; then
        log "apt-get update"
        apt-get update -q >&2 || die "apt-get update failed"
    fi
    made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then  # no service may start during the install
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
    fi
    log "apt-get install -y openssh-server"
    status=0
    apt-get install -y -q --no-install-recommends openssh-server >&2 || status=$?
    [[ $made_policy -eq 0 ]] || rm -f /usr/sbin/policy-rc.d
    [[ $status -eq 0 ]] || die "apt-get install openssh-server failed"
fi
[[ -x "$SSHD" ]] || die "$SSHD is missing after the install"

# ------------------------------------------------------------------- keys ---
install -d -m 0700 "$DIR" "$DIR/home" "$DIR/home/.ssh"
install -d -m 0755 /run/sshd  # sshd's privilege separation directory
[[ -f "$DIR/host_ed25519" ]] || ssh-keygen -q -t ed25519 -N '' -C dockerparallel-test-host -f "$DIR/host_ed25519"
[[ -f "$DIR/client_ed25519" ]] || ssh-keygen -q -t ed25519 -N '' -C dockerparallel-test-client -f "$DIR/client_ed25519"

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if ! port_free "$PORT"; then
    PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    log "port taken; using $PORT"
fi

DOCKER=/usr/bin/docker
[[ -x "$DOCKER" ]] || DOCKER="$(command -v docker)" || die "no docker client"
cat >"$DIR/dial-stdio.sh" <<EOF
#!/bin/sh
# The one command the test key may run: the docker SDK's ssh:// transport.
case "\$SSH_ORIGINAL_COMMAND" in
    "docker system dial-stdio") ;;
    *) echo "only 'docker system dial-stdio' is allowed" >&2; exit 1 ;;
esac
DOCKER_HOST='$ENGINE' exec '$DOCKER' system dial-stdio
EOF
chmod 0755 "$DIR/dial-stdio.sh"
printf 'restrict,command="%s" %s\n' "$DIR/dial-stdio.sh" "$(cat "$DIR/client_ed25519.pub")" >"$DIR/authorized_keys"
chmod 0600 "$DIR/authorized_keys"

cat >"$DIR/sshd_config" <<EOF
# sshd of the dockerparallel tests: loopback only, root by one key only.
Port $PORT
ListenAddress 127.0.0.1
HostKey $DIR/host_ed25519
PidFile $DIR/sshd.pid
AuthorizedKeysFile $DIR/authorized_keys
AllowUsers root
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowTcpForwarding no
AllowAgentForwarding no
X11Forwarding no
PermitTunnel no
PermitTTY no
MaxStartups 30:50:100
MaxSessions 64
LogLevel INFO
EOF
"$SSHD" -t -f "$DIR/sshd_config" || die "sshd rejects $DIR/sshd_config"

printf 'Host 127.0.0.1\n    User root\n    IdentityFile %s\n    IdentitiesOnly yes\n    UserKnownHostsFile %s\n' \
    "$DIR/client_ed25519" "$DIR/home/.ssh/known_hosts" >"$DIR/home/.ssh/config"
printf '[127.0.0.1]:%s %s\n' "$PORT" "$(cut -d' ' -f1,2 "$DIR/host_ed25519.pub")" >"$DIR/home/.ssh/known_hosts"
chmod 0600 "$DIR/home/.ssh/config" "$DIR/home/.ssh/known_hosts"

# ------------------------------------------------------------------ start ---
log "starting: $SSHD -f $DIR/sshd_config (127.0.0.1:$PORT; log: $DIR/sshd.log)"
"$SSHD" -f "$DIR/sshd_config" -E "$DIR/sshd.log"
for ((i = 0; i < 50; i++)); do
    port_free "$PORT" || break
    sleep 0.1
done
port_free "$PORT" && die "sshd does not listen on 127.0.0.1:$PORT; see $DIR/sshd.log"

cat >"$DIR/sshd.env" <<EOF
DOCKERPARALLEL_SSH_URL=ssh://root@127.0.0.1:$PORT
DOCKERPARALLEL_SSH_HOME=$DIR/home
DOCKERPARALLEL_SSH_KEY=$DIR/client_ed25519
DOCKERPARALLEL_SSH_ENGINE=$ENGINE
EOF
log "sshd listens on 127.0.0.1:$PORT; the key may only run docker system dial-stdio against $ENGINE"
cat "$DIR/sshd.env"
