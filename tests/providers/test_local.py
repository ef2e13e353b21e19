"""LocalProcessProvider with real Dask processes."""

from __future__ import annotations

import os
import signal

from dockerparallel import ProviderError, DockerCluster
from dockerparallel.backends.dask import DaskWorkerContainer
from dockerparallel.providers.local import LocalProcessProvider
from dockerparallel.state import StateStore
from dockerparallel.testing import check_provider
from tests.local_fixtures import dask_container, live_children, local_cluster, store, wait_for  # noqa: F401


def _dask_workers(client) -> int:  # type: ignore[no-untyped-def]
    return len(client.scheduler_info(n_workers=-1)["workers"])


def _scale_and_check(cluster: DockerCluster, client, workers: int) -> None:  # type: ignore[no-untyped-def]
    cluster.scale(workers)
    wait_for(lambda: _dask_workers(client) == workers)
    assert cluster.get_worker_numbers() == (0, workers, workers)


def test_compute_scale_heal_and_stop(local_cluster: DockerCluster) -> None:
    local_cluster.set_worker_number(4)
    local_cluster.start_cluster(timeout=60)
    provider = local_cluster.provider
    assert isinstance(provider, LocalProcessProvider)
    with local_cluster.get_client() as client:
        client.wait_for_workers(4, timeout=60)
        assert len(set(provider.get_managed_worker_handles())) == 2  # 4 workers in 2 processes
        assert client.submit(sum, range(100)).result() == 4950
        for workers in (8, 2):
            _scale_and_check(local_cluster, client, workers)
        victim = provider.get_managed_worker_handles()[0]
        os.kill(int(victim.split("-")[1]), signal.SIGKILL)
        wait_for(lambda: local_cluster.get_worker_numbers().running == 0)
        local_cluster.update()
        wait_for(lambda: _dask_workers(client) == 2)
        assert victim not in provider.get_managed_worker_handles()
        assert sum(client.gather(client.map(lambda x: x * x, range(10)))) == 285
        _scale_and_check(local_cluster, client, 0)
    local_cluster.stop_cluster()
    assert live_children() == []
    assert not local_cluster.cluster_exists()


def test_reconnect_from_another_provider_object(local_cluster: DockerCluster, store: StateStore,
                                                dask_container: DaskWorkerContainer) -> None:
    local_cluster.set_worker_number(3)
    local_cluster.start_cluster(timeout=60)
    twin = DockerCluster(LocalProcessProvider(store), dask_container, name=local_cluster.name, worker_number=1)
    assert twin.cluster_exists()
    twin.reconnect()
    assert twin.get_worker_numbers() == (0, 3, 1)
    twin.update()  # the recorded expected number (3) wins over the object's: another process may have scaled
    assert twin.get_worker_numbers() == (0, 3, 3)
    twin.set_worker_number(1)
    assert twin.get_worker_numbers().running == 1  # 3 = 2 + 1: the container of 2 goes
    twin.stop_cluster()
    assert live_children() == []


def test_conformance_local(store: StateStore, dask_container: DaskWorkerContainer) -> None:
    report = check_provider(lambda: LocalProcessProvider(store, grace_period=3.0), dask_container, timeout=60)
    assert report.skipped == [] and report.passed_names == [
        "start cluster", "scale up to 5", "shared handles counted", "scale down to 3",
        "kill of unknown handles succeeds", "killed worker reports stopped", "update() heals",
        "reconnect from a fresh provider", "stop leaves nothing running"], str(report)
    assert live_children() == []


def test_missing_program_is_a_clear_error(store: StateStore) -> None:
    container = DaskWorkerContainer(command=("no-such-program-xyz",), host="127.0.0.1")
    server = container.replace(command=("no-such-program-xyz",), environment={"DOCKERPARALLEL_SERVER_PORT": "1"})
    cluster = DockerCluster(LocalProcessProvider(store), container, server_container=server, name="missing")
    try:
        cluster.start_server()
    except ProviderError as exc:  # names the provider, the method and the program
        assert "LocalProcessProvider.run_docker_server" in str(exc) and "no-such-program-xyz" in str(exc)
    else:
        raise AssertionError("no error for a missing program")
