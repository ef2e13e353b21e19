"""The Dask backend: container commands, client access and adaptive scaling."""

from __future__ import annotations

import time

import pytest
from distributed import Client

from dockerparallel import DockerCluster, DockerHardware, ServerAddress
from dockerparallel.backends.dask import DaskWorkerContainer, container_token, default_image
from tests.local_fixtures import dask_container, live_children, local_cluster, store, wait_for  # noqa: F401

ADDRESS = ServerAddress(None, None, "127.0.0.1", 9999)


def test_default_image_follows_installed_dask() -> None:
    import dask

    assert DaskWorkerContainer().image == default_image() == f"ghcr.io/dask/dask:{dask.__version__}"


def test_worker_command_from_hardware() -> None:
    container = DaskWorkerContainer(host="127.0.0.1", max_workers_per_container=4).for_server(ADDRESS)
    command = list(container.for_workers(3, DockerHardware(cpu=2048, memory=1500)).command)
    assert command[:3] == ["dask", "worker", "tcp://127.0.0.1:9999"]
    assert command[command.index("--nworkers") + 1] == "3"
    assert command[command.index("--nthreads") + 1] == "2"
    assert command[command.index("--memory-limit") + 1] == "1500MB"
    assert container_token(command[command.index("--name") + 1] + "-2") is not None


def test_server_container_declares_its_ports() -> None:
    server = DaskWorkerContainer(scheduler_port=1234, dashboard_port=4321).server_container()
    assert server.command[:2] == ("dask", "scheduler")
    assert server.environment["DOCKERPARALLEL_SERVER_PORT"] == "1234"
    assert "--host" not in server.command


@pytest.mark.parametrize(
    "kwargs, error",
    [({"scheduler_port": 0}, ValueError), ({"dashboard_port": 70000}, ValueError), ({"host": 5}, TypeError)],
)
def test_bad_container_options(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        DaskWorkerContainer(**kwargs)  # type: ignore[arg-type]


def test_for_workers_needs_a_server() -> None:
    with pytest.raises(ValueError, match="for_server"):
        DaskWorkerContainer().for_workers(1)


def test_client_of_cluster_object(local_cluster: DockerCluster) -> None:
    local_cluster.set_worker_number(1)
    local_cluster.start_cluster(timeout=60)
    assert local_cluster.dashboard_link.endswith("/status")
    with Client(local_cluster) as client:
        client.wait_for_workers(1, timeout=60)
        assert client.submit(lambda: 41 + 1).result() == 42


def test_adapt_grows_under_load_and_shrinks_when_idle(local_cluster: DockerCluster) -> None:
    # one worker per container, so that every number down to the minimum can be reached exactly
    local_cluster.worker_container = local_cluster.worker_container.replace(max_workers_per_container=1)
    local_cluster.start_cluster(timeout=60)
    adaptive = local_cluster.adapt(minimum=1, maximum=4, interval=0.3, wait_count=2)
    with local_cluster.get_client() as client:
        wait_for(lambda: local_cluster.get_worker_numbers().running == 1)
        kept = client.submit(lambda: "kept", pure=False)
        assert kept.result(timeout=60) == "kept"
        futures = client.map(lambda i: time.sleep(0.4) or i, range(60))
        peak = 0
        while not all(f.done() for f in futures):
            peak = max(peak, len(client.scheduler_info(n_workers=-1)["workers"]))
            time.sleep(0.1)
        assert sorted(client.gather(futures)) == list(range(60))  # no task lost
        assert peak > 1
        try:
            wait_for(lambda: local_cluster.get_worker_numbers() == (0, 1, 1), timeout=90)
        except BaseException:
            workers = {a: w.get("name") for a, w in client.scheduler_info(n_workers=-1)["workers"].items()}
            pytest.fail(f"no shrink: {local_cluster.get_worker_numbers()}, history {adaptive.history}, "
                        f"dask workers {workers}, ledger {list(local_cluster.provider.worker_ledger)}")
        assert kept.result(timeout=30) == "kept"  # results moved before the containers went away
        assert max(target for _, target in adaptive.history) > 1
    local_cluster.stop_cluster()
    assert live_children() == []


def test_adapt_rejects_bad_bounds(local_cluster: DockerCluster) -> None:
    with pytest.raises(ValueError, match="maximum"):
        local_cluster.adapt(minimum=3, maximum=2)
