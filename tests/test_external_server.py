"""Workers join a scheduler this library did not start (the R original's ``CloudPrivateServer``)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from distributed import Client

from dockerparallel import DockerCluster, ServerAddress
from dockerparallel._spec import free_ports
from dockerparallel.backends.dask import DaskWorkerContainer
from dockerparallel.providers.local import LocalProcessProvider, labelled_processes
from dockerparallel.state import StateStore
from dockerparallel.testing import FakeCloudProvider
from tests.local_fixtures import store, wait_for  # noqa: F401
from tests.providers.docker_fixtures import cluster_name, docker_client  # noqa: F401


@pytest.fixture
def scheduler() -> Iterator[str]:
    """A Dask scheduler on 127.0.0.1 started by the test, not by the library."""
    port, dashboard = free_ports(2)
    process = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                "--port", str(port), "--dashboard-address", f"127.0.0.1:{dashboard}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"tcp://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                Client(address, timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the test's scheduler did not start"
        yield address
    finally:
        process.kill()
        process.wait()


def test_local_workers_join_a_scheduler_started_elsewhere(scheduler: str, store: StateStore) -> None:
    container = DaskWorkerContainer(host="127.0.0.1", max_workers_per_container=2)
    cluster = DockerCluster(LocalProcessProvider(store), container, server=scheduler, worker_number=2, state=store,
                            name="attached")
    cluster.start_cluster(timeout=60)
    assert cluster.scheduler_address == scheduler
    with Client(scheduler) as client:
        client.wait_for_workers(2, timeout=60)
        assert client.submit(lambda: 40 + 2).result(timeout=60) == 42
        cluster.set_worker_number(4)
        client.wait_for_workers(4, timeout=60)
    cluster.stop_cluster()
    assert labelled_processes("attached", store) == {}
    with Client(scheduler, timeout=10) as client:  # the scheduler runs on, without workers
        wait_for(lambda: not client.scheduler_info()["workers"], 60, "the workers to leave")


def test_a_record_keeps_the_external_server(scheduler: str, store: StateStore) -> None:
    container = DaskWorkerContainer(host="127.0.0.1")
    cluster = DockerCluster(LocalProcessProvider(store), container, server=scheduler, state=store, name="kept")
    cluster.start_cluster(timeout=60)
    again = DockerCluster.reconnect("kept", state=store)
    assert again.scheduler_address == scheduler and again.server_status() == "running"
    again.stop_cluster()


def test_bad_servers_are_named() -> None:
    container = DaskWorkerContainer()
    for server, error in (("10.0.0.5:8786", ValueError), ("http://x:1", ValueError), (5, TypeError)):
        with pytest.raises(error, match="server"):
            DockerCluster(FakeCloudProvider(), container, server=server, state=False)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="security"):
        DockerCluster(FakeCloudProvider(), container, server="tls://127.0.0.1:8786", state=False)
    with pytest.raises(ValueError, match="client_address"):
        DockerCluster(FakeCloudProvider(), container, server="tcp://127.0.0.1:1", client_address="lan", state=False)


def test_client_address_picks_the_private_or_public_address() -> None:
    address = ServerAddress("203.0.113.7", 8786, "10.0.0.5", 8786)
    assert address.for_client("auto").client_ip == "203.0.113.7"
    assert address.for_client("private").client_ip == "10.0.0.5"
    with pytest.raises(ValueError, match="public"):
        ServerAddress(None, None, "10.0.0.5", 8786).for_client("public")


def test_up_with_scheduler_starts_only_workers(scheduler: str, tmp_path: Path) -> None:
    from tests.local_fixtures import run_cli

    state = tmp_path / "state.sqlite3"
    run_cli(state, "up", "--provider", "local", "-n", "2", "--name", "joined", "--scheduler", scheduler)
    with Client(scheduler, timeout=10) as client:
        assert len(client.scheduler_info()["workers"]) == 2
    run_cli(state, "down", "joined")
    with Client(scheduler, timeout=10) as client:  # still there
        wait_for(lambda: not client.scheduler_info()["workers"], 60, "the workers to leave")


@pytest.mark.docker
def test_docker_workers_join_a_scheduler_started_elsewhere(scheduler: str, docker_client: Any,
                                                           cluster_name: str) -> None:
    from dockerparallel.providers.docker import DockerProvider
    from tests.providers.docker_fixtures import SMALL, dask_container

    cluster = DockerCluster(DockerProvider(pull=False), dask_container(), server=scheduler, worker_number=2,
                            worker_hardware=SMALL, name=cluster_name)
    cluster.start_cluster(timeout=120)
    with Client(scheduler, timeout=10) as client:
        client.wait_for_workers(2, timeout=120)
        assert client.submit(lambda: 6 * 7).result(timeout=60) == 42
    cluster.stop_cluster()
    cluster.cleanup(deep=True)
    with Client(scheduler, timeout=10) as client:
        wait_for(lambda: not client.scheduler_info()["workers"], 60, "the workers to leave")
