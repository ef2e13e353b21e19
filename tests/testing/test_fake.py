"""FakeCloud and FakeCloudProvider: the in-memory cloud and its fault knobs."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from dockerparallel import DockerCluster, ProviderThrottled
from dockerparallel.state import StateStore
from dockerparallel.testing import FakeCloud, FakeCloudError, FakeCloudProvider

from .._helpers import CLUSTER_NAME, ManualClock, container_sizes, started_cluster

RUN = "run_docker_worker_containers"


def run(provider: FakeCloudProvider, cluster: DockerCluster, number: int) -> list[str]:
    """Call the run primitive directly, bypassing the managed layer."""
    return provider.run_docker_worker_containers(cluster, cluster.worker_container, cluster.worker_hardware, number)


def test_cloud_lifecycle_on_a_manual_clock(cloud: FakeCloud, clock: ManualClock) -> None:
    box = cloud.start("c", "worker", 3, boot_delay=2.0, environment={"A": "1"})
    assert box.id.startswith("fake-worker-") and box.environment == {"A": "1"}
    assert cloud.state(box.id) == "initializing"
    clock.advance(2.0)
    assert cloud.state(box.id) == "running"
    cloud.stop(box.id)
    cloud.stop("no-such-container")
    assert cloud.state(box.id) == "stopped" and cloud.state("no-such-container") == "stopped"


def test_cloud_live_filters_by_cluster_and_role(cloud: FakeCloud) -> None:
    server = cloud.start("c", "server", 0, 0.0)
    workers = [cloud.start("c", "worker", n, 0.0) for n in (1, 2)]
    cloud.start("other", "worker", 4, 0.0)
    assert [b.id for b in cloud.live("c")] == [server.id] + [w.id for w in workers]
    assert cloud.live_workers("c") == 3 and cloud.live_workers() == 7
    assert len(cloud.live(role="worker")) == 3


def test_kill_random_stops_live_workers_only(cloud: FakeCloud) -> None:
    server = cloud.start("c", "server", 0, 0.0)
    ids = {cloud.start("c", "worker", 1, 0.0).id for _ in range(3)}
    victims = cloud.kill_random(5, random.Random(1), "c")
    assert set(victims) == ids and cloud.live("c") == [server]
    assert cloud.kill_random(1, random.Random(1), "c") == []


def test_run_packs_workers_per_container(started: DockerCluster, provider: FakeCloudProvider) -> None:
    handles = run(provider, started, 9)
    assert len(handles) == 9 and container_sizes(provider.cloud) == [1, 4, 4]
    environment = provider.cloud.containers[handles[-1]].environment
    assert environment["DOCKERPARALLEL_WORKER_NUMBER"] == "1"


def test_max_containers_per_call_starts_fewer(started: DockerCluster, provider: FakeCloudProvider) -> None:
    provider.max_containers_per_call = 2
    assert len(run(provider, started, 12)) == 8


def test_partial_launch_rate_starts_fewer(started: DockerCluster, provider: FakeCloudProvider) -> None:
    provider.partial_launch_rate = 1.0
    for _ in range(5):
        assert len(run(provider, started, 8)) in (0, 4)


@pytest.mark.parametrize(("knob", "error"), [("failure_rate", FakeCloudError), ("throttle_rate", ProviderThrottled)])
def test_injected_failures(knob: str, error: type[Exception], started: DockerCluster,
                           provider: FakeCloudProvider) -> None:
    setattr(provider, knob, 1.0)
    with pytest.raises(error, match=RUN):
        run(provider, started, 2)
    assert provider.cloud.live(CLUSTER_NAME, "worker") == []
    assert provider.calls[RUN] == 1
    provider.faults_off()
    assert len(run(provider, started, 2)) == 2


def test_death_rate_kills_at_status_calls(started: DockerCluster, provider: FakeCloudProvider) -> None:
    handles = sorted(set(run(provider, started, 8)))
    provider.death_rate = 1.0
    assert provider.get_docker_worker_status(started, handles) == ["stopped", "stopped"]
    assert started.is_server_running()


def test_kill_failure_rate_and_unknown_handles(started: DockerCluster, provider: FakeCloudProvider) -> None:
    handle = run(provider, started, 1)[0]
    provider.kill_failure_rate = 1.0
    assert provider.kill_docker_worker_containers(started, [handle]) == [False]
    assert provider.cloud.state(handle) == "running"
    provider.kill_failure_rate = 0.0
    assert provider.kill_docker_worker_containers(started, [handle, "unknown", handle]) == [True] * 3
    assert provider.get_docker_worker_status(started, [handle, "unknown"]) == ["stopped", "stopped"]


def test_same_seed_same_faults() -> None:
    def outcomes(seed: int) -> list[bool]:
        provider = FakeCloudProvider(FakeCloud(), kill_failure_rate=0.5, seed=seed)
        cluster = started_cluster(provider, state=False)  # each run is a separate cluster of the same name
        return provider.kill_docker_worker_containers(cluster, [f"h{i}" for i in range(40)])

    assert outcomes(7) == outcomes(7)
    assert outcomes(7) != outcomes(8)


def test_server_lifecycle(cluster: DockerCluster, provider: FakeCloudProvider) -> None:
    assert provider.get_server_status(cluster) == "stopped" and not provider.docker_cluster_exists(cluster)
    cluster.start_server()
    assert provider.get_server_status(cluster) == "running" and provider.docker_cluster_exists(cluster)
    assert provider.get_docker_server_ip(cluster).private_port == 8786
    cluster.stop_server()
    assert provider.get_server_status(cluster) == "stopped" and provider.cloud.live() == []


def test_reconnect_adopts_unknown_workers_once(started: DockerCluster, provider: FakeCloudProvider) -> None:
    stranger = provider.cloud.start(CLUSTER_NAME, "worker", 3, 0.0)
    provider.cloud.start("other", "worker", 1, 0.0)
    started.reconnect()
    started.reconnect()
    assert provider.get_managed_worker_handles() == [stranger.id] * 3


def test_latency_is_slept(started: DockerCluster, provider: FakeCloudProvider,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("dockerparallel.testing.fake.time.sleep", slept.append)
    provider.latency = 0.25
    provider.get_docker_worker_status(started, ["x"])
    assert slept == [0.25]


def test_repr_counts_live_containers(started: DockerCluster, provider: FakeCloudProvider) -> None:
    run(provider, started, 5)
    assert repr(provider) == "<FakeCloudProvider live_containers=3>"


def test_unknown_options_are_rejected() -> None:
    with pytest.raises(TypeError, match="boot_delays"):
        FakeCloudProvider(boot_delays=1.0)  # type: ignore[call-arg]


def test_spec_options_rebuild_a_provider_on_the_same_cloud(provider: FakeCloudProvider, cloud: FakeCloud) -> None:
    provider.max_containers_per_call, provider.latency = 3, 0.5
    options = provider.spec_options()
    again = FakeCloudProvider.from_spec_options(options, None)
    assert again.cloud is cloud and again.spec_options() == options
    assert FakeCloud.find(cloud.id) is cloud
    with pytest.raises(ValueError, match="no FakeCloud"):
        FakeCloudProvider.from_spec_options({**options, "cloud": "fakecloud-0"}, None)


def test_reconnect_by_name_finds_the_cloud(tmp_path: Path, cloud: FakeCloud) -> None:
    store = StateStore(tmp_path / "state.sqlite3")
    cluster = started_cluster(FakeCloudProvider(cloud, workers_per_container=2), worker_number=5, state=store)
    again = DockerCluster.reconnect(cluster.name, state=store)
    assert isinstance(again.provider, FakeCloudProvider) and again.provider.cloud is cloud
    assert again.provider.workers_per_container == 2
    assert again.get_worker_numbers() == (0, 5, 5)
    again.stop_cluster()
    assert cloud.live() == []


def test_injected_faults_and_run_sizes_are_counted(started: DockerCluster, provider: FakeCloudProvider,
                                                   clock: ManualClock) -> None:
    provider.stuck_rate = provider.kill_failure_rate = 1.0
    handles = run(provider, started, 6)
    clock.advance(1e9)
    assert {provider.cloud.state(h) for h in handles} == {"initializing"}
    provider.kill_docker_worker_containers(started, sorted(set(handles)))
    provider.throttle_rate = 1.0
    with pytest.raises(ProviderThrottled):
        run(provider, started, 1)
    assert provider.injected == {"stuck": 2, "kill_failure": 2, "throttle": 1}
    assert provider.run_sizes == [6, 1] and provider.peak_concurrent_runs == 1
    provider.faults_off()
    assert provider.stuck_rate == provider.kill_failure_rate == provider.throttle_rate == 0.0
