"""`FakeCloudProvider`: an in-memory cloud with fault injection, for tests."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from .._errors import ProviderThrottled
from ..managed import ManagedCloudProvider
from ..provider import ServerAddress

if TYPE_CHECKING:
    from ..cluster import DockerCluster
    from ..container import DockerContainer, DockerHardware


class FakeCloudError(RuntimeError):
    """A failure injected by :class:`FakeCloudProvider`."""


@dataclass
class FakeContainer:
    """One container of the fake cloud."""

    id: str
    cluster: str
    role: str
    workers: int
    started: float
    boot_delay: float
    stopped: bool = False
    environment: dict[str, str] = field(default_factory=dict, repr=False)


class FakeCloud:
    """An in-memory container service, shared by any number of provider objects.

    Parameters
    ----------
    clock : callable
        Returns the current time in seconds (default :func:`time.monotonic`);
        tests may pass a manual clock.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.containers: dict[str, FakeContainer] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def start(self, cluster: str, role: str, workers: int, boot_delay: float,
              environment: dict[str, str] | None = None) -> FakeContainer:
        """Start a container and return it."""
        with self._lock:
            cid = f"fake-{role}-{next(self._ids):06d}"
            box = FakeContainer(cid, cluster, role, workers, self.clock(), boot_delay, environment=environment or {})
            self.containers[cid] = box
            return box

    def state(self, cid: str) -> str:
        """``"initializing"``, ``"running"`` or ``"stopped"`` (unknown ids are stopped)."""
        box = self.containers.get(cid)
        if box is None or box.stopped:
            return "stopped"
        return "running" if self.clock() - box.started >= box.boot_delay else "initializing"

    def stop(self, cid: str) -> None:
        """Stop a container; unknown ids are ignored."""
        box = self.containers.get(cid)
        if box is not None:
            box.stopped = True

    def live(self, cluster: str | None = None, role: str | None = None) -> list[FakeContainer]:
        """Containers not stopped, optionally of one cluster and role."""
        return [
            b for b in list(self.containers.values())
            if not b.stopped and (cluster is None or b.cluster == cluster) and (role is None or b.role == role)
        ]

    def live_workers(self, cluster: str | None = None) -> int:
        """Number of workers in live worker containers."""
        return sum(b.workers for b in self.live(cluster, "worker"))

    def kill_random(self, number: int, rng: random.Random, cluster: str | None = None) -> list[str]:
        """Let ``number`` random live worker containers die (as a crash would)."""
        boxes = self.live(cluster, "worker")
        victims = rng.sample(boxes, min(number, len(boxes)))
        for box in victims:
            box.stopped = True
        return [b.id for b in victims]


class FakeCloudProvider(ManagedCloudProvider):
    """A :class:`ManagedCloudProvider` on a :class:`FakeCloud`, with knobs for faults.

    Every knob is a plain attribute and may change between calls.

    Parameters
    ----------
    cloud : FakeCloud, optional
        The cloud; share one between providers to test reconnection.
    workers_per_container : int, optional
        Pack at most this many workers per container (default: the
        container's ``max_workers_per_container``).
    latency : float
        Seconds every call sleeps.
    boot_delay : float
        Seconds a container stays initializing.
    failure_rate : float
        Probability that a call fails with :class:`FakeCloudError`.
    partial_launch_rate : float
        Probability that a run call starts fewer containers than asked.
    death_rate : float
        Probability that each live worker container dies at a status call.
    throttle_rate : float
        Probability that a call raises :class:`~dockerparallel.ProviderThrottled`.
    kill_failure_rate : float
        Probability that the kill of one handle fails (returns ``False``).
    max_containers_per_call : int, optional
        Most containers one run call starts (more is a partial launch).
    seed : int, optional
        Seed of the random faults.
    """

    def __init__(
        self,
        cloud: FakeCloud | None = None,
        *,
        workers_per_container: int | None = None,
        latency: float = 0.0,
        boot_delay: float = 0.0,
        failure_rate: float = 0.0,
        partial_launch_rate: float = 0.0,
        death_rate: float = 0.0,
        throttle_rate: float = 0.0,
        kill_failure_rate: float = 0.0,
        max_containers_per_call: int | None = None,
        seed: int | None = None,
    ) -> None:
        self.cloud = cloud if cloud is not None else FakeCloud()
        self.workers_per_container = workers_per_container
        self.latency = latency
        self.boot_delay = boot_delay
        self.failure_rate = failure_rate
        self.partial_launch_rate = partial_launch_rate
        self.death_rate = death_rate
        self.throttle_rate = throttle_rate
        self.kill_failure_rate = kill_failure_rate
        self.max_containers_per_call = max_containers_per_call
        self.rng = random.Random(seed)
        self.calls: Counter[str] = Counter()
        self._server_id: str | None = None

    def __repr__(self) -> str:
        return f"<FakeCloudProvider live_containers={len(self.cloud.live())}>"

    def faults_off(self) -> None:
        """Turn every fault knob off."""
        self.failure_rate = self.partial_launch_rate = self.death_rate = 0.0
        self.throttle_rate = self.kill_failure_rate = 0.0

    def _enter(self, method: str) -> None:
        self.calls[method] += 1
        if self.latency:
            time.sleep(self.latency)
        if self.throttle_rate and self.rng.random() < self.throttle_rate:
            raise ProviderThrottled(f"FakeCloudProvider.{method}: rate exceeded (injected)")
        if self.failure_rate and self.rng.random() < self.failure_rate:
            raise FakeCloudError(f"FakeCloudProvider.{method}: injected failure")

    # -- server -------------------------------------------------------------

    def run_docker_server(self, cluster: DockerCluster, container: DockerContainer,
                          hardware: DockerHardware, verbose: int = 0) -> None:
        self.calls["run_docker_server"] += 1
        box = self.cloud.start(cluster.name, "server", 0, self.boot_delay, dict(container.environment))
        self._server_id = box.id

    def stop_docker_server(self, cluster: DockerCluster, verbose: int = 0) -> None:
        self.calls["stop_docker_server"] += 1
        for box in self.cloud.live(cluster.name, "server"):
            self.cloud.stop(box.id)
        self._server_id = None

    def get_server_status(self, cluster: DockerCluster, verbose: int = 0) -> str:
        if self._server_id is None:
            return "stopped"
        return self.cloud.state(self._server_id)

    def get_docker_server_ip(self, cluster: DockerCluster, verbose: int = 0) -> ServerAddress:
        return ServerAddress(None, None, "127.0.0.1", 8786)

    def docker_cluster_exists(self, cluster: DockerCluster, verbose: int = 0) -> bool:
        return bool(self.cloud.live(cluster.name, "server"))

    def reconnect_docker_cluster(self, cluster: DockerCluster, verbose: int = 0) -> None:
        servers = self.cloud.live(cluster.name, "server")
        self._server_id = servers[0].id if servers else None
        known = set(self.worker_ledger.handles())
        for box in self.cloud.live(cluster.name, "worker"):
            if box.id not in known:
                self.add_managed_worker_handles([box.id] * box.workers)

    def cleanup_docker_cluster(self, cluster: DockerCluster, deep: bool = False, verbose: int = 0) -> None:
        if deep:
            for box in self.cloud.live(cluster.name):
                self.cloud.stop(box.id)

    # -- the three primitives ------------------------------------------------------

    def run_docker_worker_containers(self, cluster: DockerCluster, container: DockerContainer,
                                     hardware: DockerHardware, worker_number: int,
                                     verbose: int = 0) -> list[str]:
        self._enter("run_docker_worker_containers")
        per = container.max_workers_per_container
        if self.workers_per_container:
            per = min(per, self.workers_per_container)
        sizes = [min(per, worker_number - i) for i in range(0, worker_number, per)]
        if self.max_containers_per_call is not None:
            sizes = sizes[: self.max_containers_per_call]
        if sizes and self.partial_launch_rate and self.rng.random() < self.partial_launch_rate:
            sizes = sizes[: self.rng.randrange(len(sizes))]
        handles: list[str] = []
        for size in sizes:
            box = self.cloud.start(cluster.name, "worker", size, self.boot_delay,
                                   dict(container.for_workers(size, hardware).environment))
            handles.extend([box.id] * size)
        return handles

    def get_docker_worker_status(self, cluster: DockerCluster, worker_handles: list[str],
                                 verbose: int = 0) -> list[str]:
        self._enter("get_docker_worker_status")
        if self.death_rate:
            for box in self.cloud.live(cluster.name, "worker"):
                if self.rng.random() < self.death_rate:
                    self.cloud.stop(box.id)
        return [self.cloud.state(h) for h in worker_handles]

    def kill_docker_worker_containers(self, cluster: DockerCluster, worker_handles: list[str],
                                      verbose: int = 0) -> list[bool]:
        self._enter("kill_docker_worker_containers")
        results = []
        for handle in worker_handles:
            if self.kill_failure_rate and self.rng.random() < self.kill_failure_rate:
                results.append(False)
                continue
            self.cloud.stop(handle)
            results.append(True)
        return results
