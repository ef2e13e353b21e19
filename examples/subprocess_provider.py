"""A complete third-party provider in three methods (plus the server): each container is a subprocess,
labelled in its environment so that a fresh provider finds a running cluster again (reconnect).
Installed as a plugin (examples/pyproject.toml), the command line runs it: dockerparallel up --provider subprocess"""

import contextlib
import os
import signal
import subprocess
import time

import psutil
from dockerparallel import ManagedCloudProvider, ProviderPlugin, ServerAddress

LABEL = "DOCKERPARALLEL_CLUSTER"  # "<cluster name> <role> <workers>"


def labelled(cluster, role, pids=None):
    """{pid: workers} of the live processes of ``cluster`` in ``role``, among ``pids`` (default: all).

    Only the process that was started counts (it leads a session of its own), not the processes it starts."""
    found = {}
    for pid in psutil.pids() if pids is None else pids:
        with contextlib.suppress(TypeError, ValueError, OSError, psutil.Error):  # not a pid, gone, or not ours
            proc = psutil.Process(int(pid))
            name, got, workers = proc.environ().get(LABEL, "").rsplit(" ", 2)
            mine = (name, got) == (cluster.name, role) and os.getsid(proc.pid) == proc.pid
            if mine and proc.status() != psutil.STATUS_ZOMBIE:
                found[str(pid)] = int(workers)
    return found


class SubprocessProvider(ManagedCloudProvider):
    plugin = ProviderPlugin(name="subprocess", host_network=True)  # for the command line: name, what it needs

    def __init__(self):
        self.children, self.server = {}, None  # pid -> Popen of the processes we started; the server's pid

    def _spawn(self, cluster, container, role, workers):
        env = {"PATH": os.environ["PATH"], **container.environment, LABEL: f"{cluster.name} {role} {workers}"}
        child = subprocess.Popen(list(container.command), env=env, start_new_session=True,  # output: not ours
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.children[str(child.pid)] = child
        while child.poll() is None and not labelled(cluster, role, [str(child.pid)]):
            time.sleep(0.001)  # the label shows once exec() has set the environment up
        return str(child.pid)

    def _kill(self, pids):
        for pid in pids:
            with contextlib.suppress(OSError):  # the whole "container": the process and all it started
                os.killpg(int(pid), signal.SIGKILL)
            if pid in self.children:
                self.children.pop(pid).wait()

    def run_docker_server(self, cluster, container, hardware, verbose=0):
        self.server = self._spawn(cluster, container, "server", 0)

    def stop_docker_server(self, cluster, verbose=0):
        self._kill(labelled(cluster, "server", [self.server]))

    def get_server_status(self, cluster, verbose=0):
        return "running" if labelled(cluster, "server", [self.server]) else "stopped"

    def get_docker_server_ip(self, cluster, verbose=0):
        port = psutil.Process(int(self.server)).environ().get("DOCKERPARALLEL_SERVER_PORT", 8786)
        return ServerAddress(None, None, "127.0.0.1", int(port))

    def docker_cluster_exists(self, cluster, verbose=0):
        return bool(labelled(cluster, "server"))

    def reconnect_docker_cluster(self, cluster, verbose=0):
        self.server = next(iter(labelled(cluster, "server")), None)
        for pid, workers in labelled(cluster, "worker").items():
            if pid not in self.worker_ledger:
                self.add_managed_worker_handles([pid] * workers)

    def run_docker_worker_containers(self, cluster, container, hardware, worker_number, verbose=0):
        handles = []
        for n in container.container_sizes(worker_number):  # e.g. [4, 4, 2] for 10 workers, 4 per container
            handles += [self._spawn(cluster, container.for_workers(n, hardware), "worker", n)] * n
        return handles

    def get_docker_worker_status(self, cluster, worker_handles, verbose=0):
        alive = labelled(cluster, "worker", worker_handles)
        return ["running" if h in alive else "stopped" for h in worker_handles]

    def kill_docker_worker_containers(self, cluster, worker_handles, verbose=0):
        self._kill(labelled(cluster, "worker", worker_handles))
        return [True] * len(worker_handles)
