"""`LocalProcessProvider`: the embedded default; each "container" is a local process group.

The image is ignored: the container's command runs directly on this machine,
detached in a session of its own, so that the cluster outlives the Python
process that started it. Each process is recorded in the
:class:`~dockerparallel.state.StateStore` with its pid and start time (a
reused pid is not mistaken for it), so another process can reconnect, scale
and stop the cluster. On Linux the start time is counted in clock ticks since
boot, so a step of the wall clock does not make live processes look stopped.
Processes are labelled with the absolute path of their store, so clusters of
the same name in different stores stay apart.

What each process prints goes to ``<store dir>/logs/<cluster name>/<role>-<start
ns>-<handle>.log`` (:meth:`LocalProcessProvider.get_docker_logs` reads them).
A log outlives its process: a killed worker's log stays readable, and a deep
cleanup (``dockerparallel down``) keeps the directory unless the provider has
``delete_logs=True``, as the ``ecs`` provider keeps its log group.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from .._verbose import say
from .._validation import check_count, check_flag, check_seconds
from ..container import ENV_SERVER_PORT
from ..managed import ManagedCloudProvider
from ..provider import ProviderOption, ProviderPlugin
from ..provider import ClusterView, ServerAddress
from ..state import ResourceRecord, StateStore

if TYPE_CHECKING:
    from ..container import DockerContainer, DockerHardware

logger = logging.getLogger("dockerparallel.providers.local")

_HOST = "127.0.0.1"
#: The labels every process carries in its environment.
ENV_CLUSTER = "DOCKERPARALLEL_CLUSTER"
ENV_ROLE = "DOCKERPARALLEL_ROLE"
ENV_WORKERS = "DOCKERPARALLEL_WORKERS"
#: Clusters of the same name in different state stores are different clusters.
ENV_STORE = "DOCKERPARALLEL_STORE"


#: A log file's name: ``<role>-<start ns>[-<handle>].log`` (the handle is added once the process runs).
_LOG_NAME = re.compile(r"^(server|worker)-(\d+)(?:-(local-\d+-\d+))?\.log$")

#: Linux: the start stamp is the start time in clock ticks since boot, from ``/proc/<pid>/stat``.
_PROC_STAT = sys.platform.startswith("linux")


def start_stamp(pid: int) -> int:
    """The start stamp of process ``pid``, the last part of its handle ``local-<pid>-<stamp>``.

    Parameters
    ----------
    pid : int
        The process.

    Returns
    -------
    int
        On Linux, the start time in clock ticks since boot (field 22 of
        ``/proc/<pid>/stat``), which a step of the wall clock does not move;
        elsewhere psutil's ``create_time`` in milliseconds since the epoch.

    Raises
    ------
    psutil.NoSuchProcess
        If there is no process ``pid``.
    """
    if not _PROC_STAT:
        return int(psutil.Process(pid).create_time() * 1000)
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read()
    except (FileNotFoundError, ProcessLookupError):
        raise psutil.NoSuchProcess(pid) from None
    # comm (field 2) may hold spaces and parentheses: count fields after the last ')'.
    return int(text[text.rindex(b")") + 2:].split()[19])


def started_at(pid: int, stamp: int) -> bool:
    """Whether process ``pid`` runs and is the one that started at ``stamp`` (not a reused pid).

    A stamp of the older form (psutil ``create_time`` in milliseconds) is
    accepted too, while the wall clock has not been stepped since.
    """
    try:
        if start_stamp(pid) == stamp:
            return True
        return _PROC_STAT and int(psutil.Process(pid).create_time() * 1000) == stamp
    except (psutil.Error, OSError, ValueError, IndexError):
        return False


def _handle(proc: psutil.Process) -> str:
    return f"local-{proc.pid}-{start_stamp(proc.pid)}"


def _resolve(command: list[str]) -> list[str]:
    """Find the program on PATH, or beside this Python (a virtual environment's bin)."""
    if not command:
        raise ValueError("the container has no command to run")
    search = os.pathsep.join([os.environ.get("PATH", ""), os.path.dirname(sys.executable)])
    program = shutil.which(command[0], path=search)
    if program is None:
        raise FileNotFoundError(f"cannot find {command[0]!r} on PATH or beside {sys.executable}")
    return [program, *command[1:]]


def labelled_processes(cluster: str, store: StateStore | None = None) -> dict[str, tuple[str, int]]:
    """Handle -> (role, workers) of every process group leader labelled with ``cluster`` (in ``store``, if given).

    The label is the environment each process is started with, so this finds
    processes that were started but not yet recorded when their parent died.
    """
    found = {}
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) != proc.pid:
                continue
            env = proc.environ()
            mine = env.get(ENV_CLUSTER) == cluster and (store is None or env.get(ENV_STORE) == str(store.path))
            if mine and proc.status() != psutil.STATUS_ZOMBIE:
                found[_handle(proc)] = (env.get(ENV_ROLE, "worker"), int(env.get(ENV_WORKERS, "1")))
        except (psutil.Error, OSError, ValueError):
            continue
    return found


def _process(handle: str) -> psutil.Process | None:
    """The live process named by ``handle``, or ``None`` (dead, reused pid, bad handle)."""
    try:
        kind, pid, started = handle.split("-")
        if kind != "local" or not started_at(int(pid), int(started)):
            return None
        proc = psutil.Process(int(pid))
        return None if proc.status() == psutil.STATUS_ZOMBIE else proc
    except (ValueError, psutil.Error):
        return None


class LocalProcessProvider(ManagedCloudProvider):
    """Runs the server and workers as local process groups.

    Parameters
    ----------
    store : StateStore, optional
        Where processes are recorded (default: the user's state store).
    grace_period : float
        Seconds between SIGTERM and SIGKILL when a process group is killed.
    delete_logs : bool
        Whether a deep cleanup (``dockerparallel down``) also deletes the
        cluster's log directory. By default the logs stay (and the logs of
        later clusters of the same name join them); the attribute may be set
        after construction.
    """

    #: Local processes talk over the loopback interface: TLS is an option, not the default.
    tls_by_default = False

    plugin = ProviderPlugin(
        name="local", host_network=True, store_option="store",
        options=(ProviderOption("grace_period", "Seconds between SIGTERM and SIGKILL when a process is stopped.",
                                float),),
    )

    def __init__(self, store: StateStore | None = None, grace_period: float = 5.0, delete_logs: bool = False) -> None:
        if store is not None and not isinstance(store, StateStore):
            raise TypeError(f"store must be a StateStore or None, got {type(store).__name__}")
        self.store = store if store is not None else StateStore()
        self.grace_period = check_seconds(grace_period, "grace_period")
        self.delete_logs = check_flag(delete_logs, "delete_logs")
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def __repr__(self) -> str:
        return f"LocalProcessProvider(store={self.store!r})"

    def spec_options(self) -> dict[str, Any]:
        """The grace period and ``delete_logs`` (the store comes from the cluster's record)."""
        return {"grace_period": self.grace_period, "delete_logs": self.delete_logs}

    @classmethod
    def from_spec_options(cls, options: dict[str, Any], store: Any) -> LocalProcessProvider:
        """Rebuild on the store the cluster was found in."""
        return cls(store=store, **options)

    # -- processes ----------------------------------------------------------------

    def _spawn(self, cluster: ClusterView, role: str, container: DockerContainer, workers: int) -> str:
        log_dir = self.store.log_dir / cluster.name
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{role}-{time.time_ns()}.log"
        env = {**os.environ, **container.environment, ENV_CLUSTER: cluster.name, ENV_ROLE: role,
               ENV_WORKERS: str(workers), ENV_STORE: str(self.store.path)}
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                _resolve(list(container.command)), env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        self._children[popen.pid] = popen
        handle = _handle(psutil.Process(popen.pid))
        log_path = _named_log(log_path, handle)
        data = {"pid": popen.pid, "log": str(log_path), "port": container.environment.get(ENV_SERVER_PORT)}
        self.store.put_resource(cluster.name, handle, role, workers, data)
        logger.debug("started %s %s: %s", role, handle, " ".join(container.command[:2]))
        return handle

    def _reap(self) -> None:
        for pid, popen in list(self._children.items()):
            if popen.poll() is not None:
                del self._children[pid]

    @staticmethod
    def _alive(handle: str) -> bool:
        return _process(handle) is not None

    def _terminate(self, handles: list[str]) -> None:
        """SIGTERM each process group, wait up to the grace period, then SIGKILL."""
        pgids = [p.pid for p in map(_process, handles) if p is not None]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pgid in pgids:
                try:
                    os.killpg(pgid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
            deadline = time.monotonic() + (self.grace_period if sig == signal.SIGTERM else 5.0)
            while time.monotonic() < deadline and any(self._group_alive(g) for g in pgids):
                time.sleep(0.05)
                self._reap()
        self._reap()

    @staticmethod
    def _group_alive(pgid: int) -> bool:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return any(_live_member(p, pgid) for p in psutil.process_iter(["pid"]))

    # -- server -------------------------------------------------------------------

    def _server(self, cluster: ClusterView) -> ResourceRecord | None:
        self._reap()
        live = [r for r in self.store.resources(cluster.name, "server") if self._alive(r.handle)]
        return live[-1] if live else None

    def run_docker_server(self, cluster: ClusterView, container: DockerContainer,
                          hardware: DockerHardware, verbose: int = 0) -> None:
        """Start the server process."""
        if ENV_SERVER_PORT not in container.environment:
            raise ValueError(f"the server container must set {ENV_SERVER_PORT} in its environment")
        self._spawn(cluster, "server", container, 1)

    def stop_docker_server(self, cluster: ClusterView, verbose: int = 0) -> None:
        """Stop every server process of the cluster."""
        records = self.store.resources(cluster.name, "server")
        self._terminate([r.handle for r in records])
        self.store.delete_resources(cluster.name, [r.handle for r in records])

    def get_server_status(self, cluster: ClusterView, verbose: int = 0) -> str:
        """``running`` once the server accepts connections, ``initializing`` before."""
        record = self._server(cluster)
        if record is None:
            return "stopped"
        try:
            with socket.create_connection((_HOST, int(record.data["port"])), timeout=0.5):
                return "running"
        except OSError:
            return "initializing"

    def get_docker_server_ip(self, cluster: ClusterView, verbose: int = 0) -> ServerAddress:
        """The server listens on 127.0.0.1."""
        record = self._server(cluster)
        if record is None:
            raise RuntimeError(f"cluster {cluster.name!r} has no running server")
        return ServerAddress(None, None, _HOST, int(record.data["port"]))

    def docker_cluster_exists(self, cluster: ClusterView, verbose: int = 0) -> bool:
        """Whether a server process of the cluster runs."""
        return self._server(cluster) is not None

    def reconnect_docker_cluster(self, cluster: ClusterView, verbose: int = 0) -> None:
        """Adopt the worker processes that still run: recorded ones and any labelled with the cluster."""
        known = set(self.worker_ledger.handles())
        found = {r.handle: r.count for r in self.store.resources(cluster.name, "worker")}
        found.update({h: n for h, (role, n) in labelled_processes(cluster.name, self.store).items() if role == "worker"})
        for handle, count in found.items():
            if handle not in known and self._alive(handle):
                self.add_managed_worker_handles([handle] * count)

    def cleanup_docker_cluster(self, cluster: ClusterView, deep: bool = False, verbose: int = 0) -> None:
        """With ``deep``, kill every process recorded or labelled with the cluster, and forget them.

        The cluster's logs stay, unless :attr:`delete_logs` is set: then the
        log directory goes too.
        """
        if deep:
            records = [r.handle for r in self.store.resources(cluster.name)]
            self._terminate(records + list(labelled_processes(cluster.name, self.store)))
            self.store.delete_resources(cluster.name, records)
            self.worker_ledger.remove(self.worker_ledger.handles())
            log_dir = self.store.log_dir / cluster.name
            if self.delete_logs and log_dir.is_dir():
                shutil.rmtree(log_dir, ignore_errors=True)
                say(logger, verbose, "deleted the logs in %s", log_dir)

    def get_docker_logs(self, cluster: ClusterView, verbose: int = 0) -> dict[str, str]:
        """Return what the cluster's processes printed, live or gone, the server first.

        Parameters
        ----------
        cluster : ClusterView
            The cluster; its logs are the files in ``store.log_dir / cluster.name``.
        verbose : int
            Unused.

        Returns
        -------
        dict of str to str
            ``"server"``: the log of the recorded server (else of the newest
            server process); then ``"server <handle>"`` for earlier servers
            and ``"worker <handle>"`` for every worker process, in the order
            they started. A log whose process is no longer recorded (a killed
            worker, say) is named by the handle in its file name, or by the
            file name itself. Each text is the whole file.
        """
        logs: dict[str, str] = {}
        for key, path in _log_entries(self.store.log_dir / cluster.name, self.store.resources(cluster.name)):
            try:
                logs[key] = path.read_text(errors="replace")
            except OSError as exc:  # deleted meanwhile
                logger.debug("cannot read log %s: %s", path.name, exc.strerror or exc)
        return logs

    # -- the three primitives ------------------------------------------------------------

    def run_docker_worker_containers(self, cluster: ClusterView, container: DockerContainer,
                                     hardware: DockerHardware, worker_number: int,
                                     verbose: int = 0) -> list[str]:
        """Start process groups of up to ``max_workers_per_container`` workers each."""
        worker_number = check_count(worker_number, "worker_number")
        handles: list[str] = []
        for size in container.container_sizes(worker_number):
            handles += [self._spawn(cluster, "worker", container.for_workers(size, hardware), size)] * size
        return handles

    def get_docker_worker_status(self, cluster: ClusterView, worker_handles: list[str],
                                 verbose: int = 0) -> list[str]:
        """``running`` while the process lives, ``stopped`` after."""
        self._reap()
        return ["running" if self._alive(h) else "stopped" for h in worker_handles]

    def kill_docker_worker_containers(self, cluster: ClusterView, worker_handles: list[str],
                                      verbose: int = 0) -> list[bool]:
        """Terminate the process groups; unknown handles are success."""
        self._terminate(list(worker_handles))
        self.store.delete_resources(cluster.name, list(worker_handles))
        return [not self._alive(h) for h in worker_handles]


def _named_log(path: Path, handle: str) -> Path:
    """Rename the log ``path`` to carry ``handle`` (its process keeps writing to it); ``path`` if that fails."""
    named = path.with_name(f"{path.stem}-{handle}.log")
    try:
        path.rename(named)
    except OSError as exc:
        logger.debug("cannot rename log %s: %s", path.name, exc.strerror or exc)
        return path
    return named


def _log_entries(directory: Path, records: list[ResourceRecord]) -> list[tuple[str, Path]]:
    """(key, path) of each log of a cluster: ``"server"`` first, then ``"server <h>"``, ``"worker <h>"``.

    ``records`` are the cluster's resources; a log file of no record is named
    by the handle in its file name, else by the file name.
    """
    recorded = {Path(r.data["log"]): r for r in records if r.data.get("log")}
    paths = set(recorded) | (set(directory.glob("*.log")) if directory.is_dir() else set())
    found: list[tuple[str, str, Path, bool]] = []  # role, label, path, recorded
    for path in sorted(paths, key=lambda p: p.name):  # within a role: by start time
        record, match = recorded.get(path), _LOG_NAME.match(path.name)
        if record is not None:
            found.append((record.role, record.handle, path, True))
        elif match is not None:
            found.append((match.group(1), match.group(3) or path.name, path, False))
    servers = [entry for entry in found if entry[0] == "server"]
    current = ([entry for entry in servers if entry[3]] or servers)[-1:]
    others = [entry for entry in found if entry not in current and entry[0] in ("server", "worker")]
    others.sort(key=lambda entry: entry[0] != "server")  # stable: earlier servers, then workers
    return [("server", path) for *_, path, _ in current] + [(f"{role} {label}", path)
                                                          for role, label, path, _ in others]


def _live_member(proc: psutil.Process, pgid: int) -> bool:
    try:
        return os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE
    except (ProcessLookupError, psutil.Error, OSError):
        return False

