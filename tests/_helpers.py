"""Helpers shared by the tests: a manual clock, cluster factory and ledger/cloud checks."""

from __future__ import annotations

from collections import Counter

from dockerparallel import DockerCluster, DockerContainer, ProviderError
from dockerparallel.managed import ManagedCloudProvider
from dockerparallel.testing import FakeCloud, FakeCloudProvider

#: Workers packed into one container by the default test container.
PER_CONTAINER = 4
CLUSTER_NAME = "test-cluster"


class ManualClock:
    """A clock for :class:`FakeCloud` that moves only when told."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def worker_container(per_container: int = PER_CONTAINER) -> DockerContainer:
    """A generic worker container packing ``per_container`` workers."""
    return DockerContainer("img", name="worker", command=["w"], max_workers_per_container=per_container)


def make_cluster(provider: ManagedCloudProvider, container: DockerContainer | None = None,
                 **options: object) -> DockerCluster:
    """A cluster whose server container is the worker container (the generic one has none)."""
    container = container or worker_container()
    options.setdefault("name", CLUSTER_NAME)
    return DockerCluster(provider, container, server_container=container, **options)  # type: ignore[arg-type]


def started_cluster(provider: ManagedCloudProvider, container: DockerContainer | None = None,
                    **options: object) -> DockerCluster:
    """A cluster whose server runs (the fake's boot delay must be 0 at this point)."""
    cluster = make_cluster(provider, container, **options)
    cluster.start_cluster(timeout=5)
    return cluster


def ledger_counts(provider: ManagedCloudProvider) -> dict[str, int]:
    """Handle -> worker count, as the ledger has it."""
    return {e.handle: e.count for e in provider.worker_ledger}


def live_worker_counts(cloud: FakeCloud, cluster: str = CLUSTER_NAME) -> dict[str, int]:
    """Container id -> worker count, for the live worker containers of ``cluster``."""
    return {box.id: box.workers for box in cloud.live(cluster, "worker")}


def assert_no_leak(provider: FakeCloudProvider, cluster: str = CLUSTER_NAME) -> None:
    """Every live worker container of ``cluster`` is known to the ledger."""
    unknown = set(live_worker_counts(provider.cloud, cluster)) - set(provider.worker_ledger.handles())
    assert not unknown, f"leaked containers: {sorted(unknown)}"


def assert_no_phantom(provider: FakeCloudProvider, cluster: str = CLUSTER_NAME) -> None:
    """Every active handle in the ledger names a live container holding the recorded workers.

    A handle read as stopped stays (inactive) until a kill of it succeeds:
    one false reading must not lose a live worker.
    """
    live = live_worker_counts(provider.cloud, cluster)
    active = {e.handle: e.count for e in provider.worker_ledger.active_entries()}
    assert active == {h: live.get(h) for h in active}


def assert_agree(provider: FakeCloudProvider, cluster: str = CLUSTER_NAME) -> None:
    """The ledger and the fake cloud hold exactly the same containers and workers."""
    assert ledger_counts(provider) == live_worker_counts(provider.cloud, cluster)


def assert_names(error: ProviderError, provider: object, method: str) -> None:
    """The error message names the provider class and the method."""
    message = str(error)
    assert type(provider).__name__ in message, message
    assert method in message, message
    assert error.method == method


def container_sizes(cloud: FakeCloud, cluster: str = CLUSTER_NAME) -> list[int]:
    """Worker counts of the live worker containers, sorted."""
    return sorted(live_worker_counts(cloud, cluster).values())


def handle_counts(handles: list[str]) -> dict[str, int]:
    """How often each handle occurs."""
    return dict(Counter(handles))
