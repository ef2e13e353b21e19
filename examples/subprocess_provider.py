"""A complete third-party provider in three methods (plus the server): each container is a subprocess."""

import subprocess
from dockerparallel import ManagedCloudProvider, ServerAddress


class SubprocessProvider(ManagedCloudProvider):
    def __init__(self):
        self.procs, self.server = {}, None

    def _spawn(self, container):
        return subprocess.Popen(list(container.command), env=dict(container.environment), start_new_session=True)

    def run_docker_server(self, cluster, container, hardware, verbose=0):
        self.server = self._spawn(container)

    def stop_docker_server(self, cluster, verbose=0):
        self.server = self.server and (self.server.kill(), self.server.wait()) and None

    def get_server_status(self, cluster, verbose=0):
        return "running" if self.server and self.server.poll() is None else "stopped"

    def get_docker_server_ip(self, cluster, verbose=0):
        return ServerAddress(None, None, "127.0.0.1", 8786)

    def run_docker_worker_containers(self, cluster, container, hardware, worker_number, verbose=0):
        k, handles = container.max_workers_per_container, []
        for start in range(0, worker_number, k):
            proc = self._spawn(container.for_workers(min(k, worker_number - start), hardware))
            self.procs[str(proc.pid)] = proc
            handles += [str(proc.pid)] * min(k, worker_number - start)
        return handles

    def get_docker_worker_status(self, cluster, worker_handles, verbose=0):
        return ["running" if h in self.procs and self.procs[h].poll() is None else "stopped" for h in worker_handles]

    def kill_docker_worker_containers(self, cluster, worker_handles, verbose=0):
        for proc in filter(None, map(self.procs.pop, worker_handles, [None] * len(worker_handles))):
            proc.kill(), proc.wait()
        return [True] * len(worker_handles)
