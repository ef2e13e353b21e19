"""`FakeCloudProvider`: an in-memory cloud with fault injection, for tests."""

from __future__ import annotations

import contextlib
import itertools
import math
import random
import threading
import time
import weakref
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

from .._errors import ProviderThrottled
from ..managed import ManagedCloudProvider, ProviderCapabilities
from ..container import split
from ..provider import ClusterView, ServerAddress

if TYPE_CHECKING:
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


#: Every live FakeCloud of this process by id, so that a provider rebuilt from its spec finds its cloud.
_CLOUDS: weakref.WeakValueDictionary[str, FakeCloud] = weakref.WeakValueDictionary()
_CLOUD_IDS = itertools.count(1)


class FakeCloud:
    """An in-memory container service, shared by any number of provider objects.

    Parameters
    ----------
    clock : callable
        Returns the current time in seconds (default :func:`time.monotonic`);
        tests may pass a manual clock.

    Attributes
    ----------
    id : str
        Names the cloud in this process: a provider rebuilt from its
        ``spec_options`` (as ``DockerCluster.reconnect(name)`` does) attaches
        to the cloud with this id, see :meth:`find`.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.containers: dict[str, FakeContainer] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.id = f"fakecloud-{next(_CLOUD_IDS)}"
        _CLOUDS[self.id] = self

    def __repr__(self) -> str:
        return f"<FakeCloud {self.id} containers={len(self.containers)}>"

    @staticmethod
    def find(cloud_id: str) -> FakeCloud:
        """The cloud named ``cloud_id`` in this process.

        Raises
        ------
        ValueError
            When no such cloud exists (any more) in this process.
        """
        cloud = _CLOUDS.get(cloud_id)
        if cloud is None:
            raise ValueError(f"cloud: no FakeCloud {cloud_id!r} in this process (a fake cloud lives in memory)")
        return cloud

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
        with self._lock:
            boxes = list(self.containers.values())
        return [
            b for b in boxes
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


#: The knobs that :meth:`FakeCloudProvider.spec_options` records (with the cloud's id).
_SPEC_KNOBS = (
    "workers_per_container", "latency", "boot_delay", "failure_rate", "partial_launch_rate", "death_rate",
    "throttle_rate", "kill_failure_rate", "stuck_rate", "max_containers_per_call", "max_concurrent_calls", "seed",
)


class FakeCloudProvider(ManagedCloudProvider):
    """A :class:`ManagedCloudProvider` on a :class:`FakeCloud`, with knobs for faults.

    Every knob is a plain attribute and may change between calls. The
    provider is safe to call from several threads at once; its launch limits
    (:meth:`launch_capabilities`) follow ``max_containers_per_call`` and
    ``max_concurrent_calls``.

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
    stuck_rate : float
        Probability that a started worker container never finishes booting.
    max_containers_per_call : int, optional
        Most containers one run call starts. Declared in the capabilities,
        so the managed layer splits launches to fit; a direct call asking
        for more starts fewer (a partial launch).
    max_concurrent_calls : int
        Most run calls in flight at once (declared too); one more is throttled.
    seed : int, optional
        Seed of the random faults.

    Attributes
    ----------
    calls : collections.Counter
        Calls made, by method name.
    injected : collections.Counter
        Faults injected, by kind: ``"failure"``, ``"throttle"``,
        ``"partial_launch"``, ``"death"``, ``"kill_failure"``, ``"stuck"``.
    run_sizes : list of int
        The ``worker_number`` of each run call, in order.
    peak_concurrent_runs : int
        Most run calls that were in flight at once.
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
        stuck_rate: float = 0.0,
        max_containers_per_call: int | None = None,
        max_concurrent_calls: int = 1,
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
        self.stuck_rate = stuck_rate
        self.max_containers_per_call = max_containers_per_call
        self.max_concurrent_calls = max_concurrent_calls
        self.seed = seed
        self.rng = random.Random(seed)
        self.calls: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self.run_sizes: list[int] = []
        self.peak_concurrent_runs = 0
        self._runs_in_flight = 0
        self._lock = threading.Lock()
        self._server_id: str | None = None

    def __repr__(self) -> str:
        return f"<FakeCloudProvider live_containers={len(self.cloud.live())}>"

    def spec_options(self) -> dict[str, Any]:
        """The knobs and the cloud's id: :meth:`from_spec_options` attaches to the same cloud."""
        return {"cloud": self.cloud.id, **{knob: getattr(self, knob) for knob in _SPEC_KNOBS}}

    @classmethod
    def from_spec_options(cls, options: dict[str, Any], store: Any) -> FakeCloudProvider:
        """A new provider on the cloud named in ``options`` (see :meth:`FakeCloud.find`)."""
        options = dict(options)
        cloud_id = options.pop("cloud", None)
        return cls(FakeCloud.find(cloud_id) if cloud_id is not None else None, **options)

    def launch_capabilities(self, container: DockerContainer, hardware: DockerHardware) -> ProviderCapabilities:
        """``max_containers_per_call`` full containers per call, ``max_concurrent_calls`` calls at once."""
        per_call = None
        if self.max_containers_per_call is not None:
            per_call = self.max_containers_per_call * self._per_container(container)
        return ProviderCapabilities(per_call, self.max_concurrent_calls)

    def faults_off(self) -> None:
        """Turn every fault knob off."""
        self.failure_rate = self.partial_launch_rate = self.death_rate = 0.0
        self.throttle_rate = self.kill_failure_rate = self.stuck_rate = 0.0

    def _chance(self, rate: float, fault: str) -> bool:
        """Draw whether the fault ``fault`` happens now (with probability ``rate``), counting it."""
        if not rate:
            return False
        with self._lock:
            happens = self.rng.random() < rate
            if happens:
                self.injected[fault] += 1
            return happens

    def _enter(self, method: str) -> None:
        with self._lock:
            self.calls[method] += 1
        if self.latency:
            time.sleep(self.latency)
        if self._chance(self.throttle_rate, "throttle"):
            raise ProviderThrottled(f"FakeCloudProvider.{method}: rate exceeded (injected)")
        if self._chance(self.failure_rate, "failure"):
            raise FakeCloudError(f"FakeCloudProvider.{method}: injected failure")

    def _per_container(self, container: DockerContainer) -> int:
        per = container.max_workers_per_container
        return min(per, self.workers_per_container) if self.workers_per_container else per

    # -- server -------------------------------------------------------------

    def run_docker_server(self, cluster: ClusterView, container: DockerContainer,
                          hardware: DockerHardware, verbose: int = 0) -> None:
        with self._lock:
            self.calls["run_docker_server"] += 1
        box = self.cloud.start(cluster.name, "server", 0, self.boot_delay, dict(container.environment))
        self._server_id = box.id

    def stop_docker_server(self, cluster: ClusterView, verbose: int = 0) -> None:
        with self._lock:
            self.calls["stop_docker_server"] += 1
        for box in self.cloud.live(cluster.name, "server"):
            self.cloud.stop(box.id)
        self._server_id = None

    def get_server_status(self, cluster: ClusterView, verbose: int = 0) -> str:
        if self._server_id is None:
            return "stopped"
        return self.cloud.state(self._server_id)

    def get_docker_server_ip(self, cluster: ClusterView, verbose: int = 0) -> ServerAddress:
        return ServerAddress(None, None, "127.0.0.1", 8786)

    def docker_cluster_exists(self, cluster: ClusterView, verbose: int = 0) -> bool:
        return bool(self.cloud.live(cluster.name, "server"))

    def reconnect_docker_cluster(self, cluster: ClusterView, verbose: int = 0) -> None:
        servers = self.cloud.live(cluster.name, "server")
        self._server_id = servers[0].id if servers else None
        known = set(self.worker_ledger.handles())
        for box in self.cloud.live(cluster.name, "worker"):
            if box.id not in known:
                self.add_managed_worker_handles([box.id] * box.workers)

    def cleanup_docker_cluster(self, cluster: ClusterView, deep: bool = False, verbose: int = 0) -> None:
        if deep:
            for box in self.cloud.live(cluster.name):
                self.cloud.stop(box.id)

    # -- the three primitives ------------------------------------------------------

    def run_docker_worker_containers(self, cluster: ClusterView, container: DockerContainer,
                                     hardware: DockerHardware, worker_number: int,
                                     verbose: int = 0) -> list[str]:
        with self._run_slot(worker_number):
            self._enter("run_docker_worker_containers")
            per = self._per_container(container)
            sizes = split(worker_number, per)
            if self.max_containers_per_call is not None:
                sizes = sizes[: self.max_containers_per_call]
            if sizes and self._chance(self.partial_launch_rate, "partial_launch"):
                with self._lock:
                    sizes = sizes[: self.rng.randrange(len(sizes))]
            handles: list[str] = []
            for size in sizes:
                boot = math.inf if self._chance(self.stuck_rate, "stuck") else self.boot_delay
                box = self.cloud.start(cluster.name, "worker", size, boot,
                                       dict(container.for_workers(size, hardware).environment))
                handles.extend([box.id] * size)
            return handles

    @contextlib.contextmanager
    def _run_slot(self, worker_number: int) -> Iterator[None]:
        """Count a run call in flight; one over ``max_concurrent_calls`` is throttled, as a cloud would."""
        with self._lock:
            self.run_sizes.append(worker_number)
            self._runs_in_flight += 1
            self.peak_concurrent_runs = max(self.peak_concurrent_runs, self._runs_in_flight)
            over = self._runs_in_flight > self.max_concurrent_calls
        try:
            if over:
                raise ProviderThrottled(f"FakeCloudProvider.run_docker_worker_containers: more than "
                                        f"{self.max_concurrent_calls} concurrent call(s)")
            yield
        finally:
            with self._lock:
                self._runs_in_flight -= 1

    def get_docker_worker_status(self, cluster: ClusterView, worker_handles: list[str],
                                 verbose: int = 0) -> list[str]:
        self._enter("get_docker_worker_status")
        if self.death_rate:
            for box in self.cloud.live(cluster.name, "worker"):
                if self._chance(self.death_rate, "death"):
                    self.cloud.stop(box.id)
        return [self.cloud.state(h) for h in worker_handles]

    def kill_docker_worker_containers(self, cluster: ClusterView, worker_handles: list[str],
                                      verbose: int = 0) -> list[bool]:
        self._enter("kill_docker_worker_containers")
        results = []
        for handle in worker_handles:
            if self._chance(self.kill_failure_rate, "kill_failure"):
                results.append(False)
                continue
            self.cloud.stop(handle)
            results.append(True)
        return results
