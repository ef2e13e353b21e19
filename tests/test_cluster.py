"""DockerCluster: lifecycle, context manager, repr, and numbers recorded before the server runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dockerparallel import ClusterStateError, DockerCluster, DockerContainer, ProviderThrottled, WorkerNumbers
from dockerparallel.state import StateStore
from dockerparallel.testing import FakeCloud, FakeCloudProvider

from ._helpers import CLUSTER_NAME, ManualClock, assert_agree, container_sizes, make_cluster, started_cluster


def test_start_cluster_starts_one_server_and_the_expected_workers(provider: FakeCloudProvider,
                                                                   container: DockerContainer) -> None:
    cluster = make_cluster(provider, container, worker_number=6)
    assert not cluster.is_server_running()
    cluster.start_cluster(timeout=5)
    cluster.start_cluster(timeout=5)  # already running: no second server
    assert cluster.is_server_running() and cluster.server_status() == "running"
    assert provider.calls["run_docker_server"] == 1
    assert len(provider.cloud.live(CLUSTER_NAME, "server")) == 1
    assert cluster.get_worker_numbers() == WorkerNumbers(0, 6, 6)
    assert container_sizes(provider.cloud) == [2, 4]


def test_numbers_set_before_the_server_runs_are_recorded_then_applied(cluster: DockerCluster,
                                                                      provider: FakeCloudProvider) -> None:
    cluster.set_worker_number(5)
    assert cluster.expected_workers == 5
    assert cluster.get_worker_numbers() == (0, 0, 5)
    assert provider.calls["run_docker_worker_containers"] == 0
    cluster.start_cluster(timeout=5)
    assert cluster.get_worker_numbers() == (0, 5, 5)
    assert_agree(provider)


def test_numbers_set_while_the_server_initializes_are_only_recorded(
    provider: FakeCloudProvider, clock: ManualClock
) -> None:
    provider.boot_delay = 10.0
    cluster = make_cluster(provider)
    cluster.start_server()
    assert cluster.server_status() == "initializing"
    cluster.set_worker_number(3)
    assert provider.calls["run_docker_worker_containers"] == 0
    clock.advance(10.0)
    assert cluster.update() == (3, 0, 3)  # started; booting on the same delay
    clock.advance(10.0)
    assert cluster.get_worker_numbers() == (0, 3, 3)


def test_start_cluster_times_out_on_a_server_that_never_boots(provider: FakeCloudProvider) -> None:
    provider.boot_delay = 10.0
    cluster = make_cluster(provider, worker_number=2)
    with pytest.raises(TimeoutError, match=CLUSTER_NAME):
        cluster.start_cluster(timeout=0)
    assert provider.calls["run_docker_worker_containers"] == 0


def test_wait_for_server_raises_when_the_server_stops(cluster: DockerCluster, provider: FakeCloudProvider) -> None:
    cluster.start_server()
    provider.cloud.stop(provider.cloud.live(CLUSTER_NAME, "server")[0].id)
    with pytest.raises(ClusterStateError, match="stopped"):
        cluster.wait_for_server(timeout=5)


def test_stop_cluster_kills_everything_and_keeps_the_expected_number(provider: FakeCloudProvider) -> None:
    cluster = started_cluster(provider, worker_number=9)
    cluster.stop_cluster()
    assert provider.cloud.live() == []
    assert cluster.expected_workers == 9
    assert cluster.get_worker_numbers() == (0, 0, 9)
    cluster.start_cluster(timeout=5)
    assert cluster.get_worker_numbers() == (0, 9, 9)


def test_context_manager_starts_and_stops(provider: FakeCloudProvider) -> None:
    with make_cluster(provider, worker_number=3) as cluster:
        assert cluster.get_worker_numbers() == (0, 3, 3)
    assert provider.cloud.live() == []


def test_context_manager_stops_on_error(provider: FakeCloudProvider) -> None:
    with pytest.raises(RuntimeError, match="user code"):
        with make_cluster(provider, worker_number=3):
            raise RuntimeError("user code failed")
    assert provider.cloud.live() == []


def test_context_manager_adopts_a_running_server(started: DockerCluster, provider: FakeCloudProvider) -> None:
    with started:
        pass
    assert provider.calls["run_docker_server"] == 1


def test_repr_names_cluster_provider_and_expected_workers(provider: FakeCloudProvider) -> None:
    text = repr(make_cluster(provider, worker_number=7))
    assert text == f"<DockerCluster {CLUSTER_NAME!r} provider=FakeCloudProvider status=created expected_workers=7>"


def test_generated_names_are_unique_and_valid(provider: FakeCloudProvider, container: DockerContainer) -> None:
    names = {DockerCluster(provider, container, server_container=container).name for _ in range(3)}
    assert len(names) == 3 and all(n.startswith("dockerparallel-") for n in names)


def test_missing_server_container_is_derived_from_the_worker_container(
    provider: FakeCloudProvider, container: DockerContainer
) -> None:
    with pytest.raises(NotImplementedError, match="server_container"):
        DockerCluster(provider, container)


def test_update_heals_dead_workers(provider: FakeCloudProvider) -> None:
    cluster = started_cluster(provider, worker_number=8)
    victim = provider.cloud.live(CLUSTER_NAME, "worker")[0]
    provider.cloud.stop(victim.id)
    assert cluster.get_worker_numbers() == (0, 4, 8)
    assert cluster.update() == (0, 8, 8)
    assert victim.id not in provider.worker_ledger
    assert_agree(provider)


def test_worker_changes_need_a_running_server(provider: FakeCloudProvider) -> None:
    cluster = started_cluster(provider, worker_number=2)
    cluster.stop_server()
    cluster.set_worker_number(6)
    assert provider.calls["run_docker_worker_containers"] == 1
    assert cluster.update() == (0, 2, 6)


def test_wait_for_workers(started: DockerCluster, provider: FakeCloudProvider) -> None:
    started.set_worker_number(3)
    assert started.wait_for_workers(timeout=5) == (0, 3, 3)
    provider.boot_delay = 10.0
    started.set_worker_number(7)
    with pytest.raises(TimeoutError, match="7 running"):
        started.wait_for_workers(timeout=0)
    assert started.wait_for_workers(3, timeout=0) == (4, 3, 7)


def test_server_address_is_cached_until_the_server_restarts(started: DockerCluster,
                                                           provider: FakeCloudProvider) -> None:
    address = started.server_address()
    assert started.server_address() is address
    assert started.configured_worker_container().environment["DOCKERPARALLEL_SERVER_PORT"] == "8786"
    started.stop_server()
    started.start_server()
    assert started.server_address() is not address and started.server_address() == address


def test_reconnect_from_a_fresh_provider(provider: FakeCloudProvider, cloud: FakeCloud) -> None:
    started_cluster(provider, worker_number=6)
    fresh = FakeCloudProvider(cloud)
    twin = make_cluster(fresh, worker_number=6)
    assert twin.cluster_exists()
    twin.reconnect()
    assert twin.is_server_running()
    assert twin.get_worker_numbers() == (0, 6, 6)
    assert_agree(fresh)


def test_cleanup_deep_removes_everything_labelled(provider: FakeCloudProvider, cloud: FakeCloud) -> None:
    cluster = started_cluster(provider, worker_number=5)
    other = started_cluster(FakeCloudProvider(cloud), name="other-cluster", worker_number=1)
    cluster.cleanup()
    assert len(cloud.live(CLUSTER_NAME)) == 3
    cluster.cleanup(deep=True)
    assert cloud.live(CLUSTER_NAME) == [] and not cluster.cluster_exists()
    assert len(cloud.live(other.name)) == 2


class _FlakyStatus(FakeCloudProvider):
    """Fails the first status call after ``flaky`` is set, as a cloud's passing fault would."""

    flaky = False

    def get_docker_worker_status(self, *args: Any, **kwargs: Any) -> list[str]:
        if self.flaky:
            self.flaky = False
            raise ProviderThrottled("FakeCloudProvider: rate exceeded (test)")
        return super().get_docker_worker_status(*args, **kwargs)


def test_reconnect_by_name_survives_a_passing_status_fault(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.sqlite3")
    cloud = FakeCloud()
    cluster = DockerCluster(_FlakyStatus(cloud), DockerContainer("img", command=["w"]),
                            server_container=DockerContainer("img", command=["s"]), name="flaky", state=store)
    cluster.start_cluster(timeout=5)
    cluster.set_worker_number(3)
    _FlakyStatus.flaky = True  # the rebuilt provider's first status call fails
    try:
        again = DockerCluster.reconnect("flaky", state=store)
    finally:
        _FlakyStatus.flaky = False
    assert again.get_worker_numbers() == (0, 3, 3)
    again.stop_cluster()
