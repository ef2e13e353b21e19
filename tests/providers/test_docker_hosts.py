"""DockerProvider(hosts=[...]): one cluster on several Docker Engines.

The engine tests run on this machine's engine, a second daemon
(scripts/start-second-dockerd.sh) and that second daemon reached over SSH on
127.0.0.1 (scripts/start-test-sshd.sh). Every container uses the host
network and every address is on 127.0.0.1. Without those parts the tests
skip, or fail under ``DOCKERPARALLEL_REQUIRE_DOCKER=1`` (docker_fixtures.py).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import dockerparallel
from dockerparallel import DockerCluster, DockerContainer, DockerHardware, ProviderError
from dockerparallel.providers._docker_engines import at_engine
from dockerparallel.providers._docker_errors import translate
from dockerparallel.providers._docker_hosts import (
    Capacity,
    EngineHost,
    parse_hosts,
    place,
    split_handle,
)
from dockerparallel.providers.docker import (
    LABEL_CLUSTER,
    DockerEngineUnavailable,
    DockerProvider,
)
from dockerparallel.testing import check_provider

from .docker_fixtures import (  # noqa: F401 - fixtures are used by name
    started,
    FIRST_ENGINE,
    SECOND_ENGINE,
    TEST_IMAGE,
    dask_client,
    dask_container,
    docker_client,
    expected_sum_of_squares,
    free_port,
    free_ports,
    labelled,
    remove_by_port,
    second_docker_client,
    ssh_engine,
    sum_of_squares,
    two_engine_name,
    wait_for,
)

#: A quarter core and 512 MB per worker: the server (1 core) and 4 containers of 2 fit on two 2-core engines.
QUARTER = DockerHardware(cpu=256, memory=512)
SRC = os.path.dirname(os.path.dirname(os.path.abspath(dockerparallel.__file__)))


@dataclass
class View:
    """The smallest cluster view: what a provider reads of a cluster."""

    name: str = "dptest-view"
    verbose: int = 0
    worker_container: DockerContainer = field(
        default_factory=lambda: DockerContainer(TEST_IMAGE, command=["sleep", "60"]))
    server_container: DockerContainer = field(default_factory=lambda: DockerContainer(TEST_IMAGE))


def live(client: Any, name: str) -> list[dict[str, Any]]:
    return labelled(client, name)


# -- without an engine -------------------------------------------------------------------------------------------


def test_hosts_are_checked_and_survive_spec_options() -> None:
    hosts: list[Any] = ["unix:///run/a.sock", {"base_url": "tcp://127.0.0.1:2376", "tls": {"ca_cert": "/c/ca.pem"}},
             {"base_url": "ssh://root@127.0.0.1:2222", "use_ssh_client": True}]
    provider = DockerProvider(hosts=hosts, server_host=1)
    options = provider.spec_options()
    assert options["hosts"] == hosts and options["server_host"] == 1 and "base_url" not in options
    assert DockerProvider.from_spec_options(options, None).spec_options() == options
    assert "base_url" in DockerProvider().spec_options() and "hosts" not in DockerProvider().spec_options()
    bad: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"hosts": ["unix:///a"], "base_url": "unix:///b"}, ValueError, "either base_url or hosts"),
        ({"hosts": []}, ValueError, "at least one"),
        ({"hosts": "unix:///a"}, TypeError, "list"),
        ({"hosts": ["/var/run/docker.sock"]}, ValueError, r"hosts\[0\] must start with"),
        ({"hosts": ["unix:///a", "unix:///a"]}, ValueError, "more than once"),
        ({"hosts": [{"base_url": "unix:///a", "tls": True}]}, ValueError, "tcp:// hosts only"),
        ({"hosts": [{"base_url": "tcp://h:2376", "tls": {"key": "x"}}]}, ValueError, "unknown option"),
        ({"hosts": [{"base_url": "tcp://h:2376", "use_ssh_client": True}]}, ValueError, "ssh:// hosts only"),
        ({"hosts": [{"url": "tcp://h:2376"}]}, ValueError, "unknown option"),
        ({"hosts": ["unix:///a"], "server_host": 1}, ValueError, "server_host"),
    ]
    for options, error, words in bad:
        with pytest.raises(error, match=words):
            DockerProvider(**options)


def test_handles_name_their_host_and_bare_ones_are_on_the_first() -> None:
    assert split_handle("abc", 1) == (0, "abc") == split_handle("abc", 3)
    assert split_handle("2/abc", 3) == (2, "abc")
    assert split_handle("3/abc", 3) is None and split_handle("x/abc", 3) is None and split_handle("1/", 3) is None


def test_placement_fills_the_host_with_the_most_room_and_warns_when_none_fits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gib = 2**30
    capacities = [Capacity(2, 16 * gib, used_cpus=1, used_memory=2 * gib), Capacity(2, 16 * gib)]
    with caplog.at_level(logging.WARNING, "dockerparallel.providers.docker"):
        assert place(capacities, [(0.5, gib)] * 4, ["a", "b"]) == [1, 1, 0, 1]
    assert caplog.records == []
    assert place([Capacity(8, 4 * gib), Capacity(4, 64 * gib)], [(1, 2 * gib)] * 3, ["a", "b"]) == [1, 1, 0]
    with caplog.at_level(logging.WARNING, "dockerparallel.providers.docker"):
        assert place([Capacity(1, gib), Capacity(1, gib)], [(1, gib)] * 3, ["a", "b"]) == [0, 1, 0]
    assert ["fits on no Docker host" in record.getMessage() for record in caplog.records] == [True]


def test_tls_options_become_the_sdks_tls_config(tmp_path: Path) -> None:
    pytest.importorskip("docker")
    paths = {name: str(tmp_path / f"{name}.pem") for name in ("ca_cert", "client_cert", "client_key")}
    for path in paths.values():
        Path(path).write_text("not read here\n")
    (host,), _ = parse_hosts([{"base_url": "tcp://127.0.0.1:2376", "tls": paths}], None)
    config = host.tls_config()
    assert config.cert == (paths["client_cert"], paths["client_key"]) and config.ca_cert == paths["ca_cert"]
    assert config.verify is True
    assert EngineHost("tcp://127.0.0.1:2375").tls_config() is False


def test_an_error_names_the_engine_it_came_from() -> None:
    docker = pytest.importorskip("docker")
    with pytest.raises(docker.errors.APIError) as caught, at_engine("ssh://root@127.0.0.1:2222"):
        raise docker.errors.APIError("conflict")
    text = str(translate(DockerProvider(), "m", caught.value, None))
    assert text == "DockerProvider.m: the Docker Engine refused: conflict (engine ssh://root@127.0.0.1:2222)"


def test_an_unreachable_second_host_is_named(tmp_path: Path) -> None:
    pytest.importorskip("docker")
    nowhere = [f"unix://{tmp_path}/first.sock", f"unix://{tmp_path}/second.sock"]
    provider = DockerProvider(hosts=nowhere)
    with pytest.raises(DockerEngineUnavailable, match="second.sock") as caught:
        provider.get_docker_worker_status(View(), ["1/abc"])
    assert str(caught.value).startswith("DockerProvider.get_docker_worker_status: ")
    assert provider.get_docker_worker_status(View(), ["7/abc"]) == ["stopped"]  # no such host: no call
    assert provider.kill_docker_worker_containers(View(), ["7/abc"]) == [True]


# -- two engines ---------------------------------------------------------------------------------------------------


def two_engine_cluster(name: str, hosts: list[str], hardware: DockerHardware = QUARTER) -> Any:
    """A started Dask cluster (TLS, server on the first host) on a provider of ``hosts``; stopped afterwards."""
    return started(DockerCluster(DockerProvider(pull=False, hosts=hosts), dask_container(), name=name,
                                 worker_hardware=hardware))


@pytest.mark.docker
def test_eight_workers_spread_over_two_engines_and_a_killed_container_is_replaced(
    docker_client: Any, second_docker_client: Any, two_engine_name: str,  # noqa: F811
) -> None:
    name = two_engine_name
    with two_engine_cluster(name, [FIRST_ENGINE, SECOND_ENGINE]) as cluster:
        provider = cluster.provider
        assert isinstance(provider, DockerProvider)
        cluster.set_worker_number(8)
        first, second = labelled(docker_client, name, "worker"), labelled(second_docker_client, name, "worker")
        assert len(first) >= 1 and len(second) >= 1 and len(first) + len(second) == 4, (first, second)
        assert labelled(second_docker_client, name, "server") == []  # the server is on the first host
        assert set(provider.get_managed_worker_handles()) == (
            {f"0/{box['Id']}" for box in first} | {f"1/{box['Id']}" for box in second})
        with dask_client(cluster) as client:
            client.wait_for_workers(8, timeout=90)  # workers on both engines reach the scheduler
            assert sum_of_squares(client, 100) == expected_sum_of_squares(100)
            victim = f"1/{second[0]['Id']}"
            second_docker_client.api.kill(second[0]["Id"])
            wait_for(lambda: cluster.update().running == 8 and victim not in provider.get_managed_worker_handles(),
                     90, "the container killed on the second engine to be replaced")
            client.wait_for_workers(8, timeout=90)
            assert sum_of_squares(client, 50) == expected_sum_of_squares(50)
        logs = provider.get_docker_logs(cluster)
        assert list(logs)[0] == "server" and any(key.startswith("worker 1/") for key in logs)
    assert live(docker_client, name) == [] and live(second_docker_client, name) == []


CREATOR = """
    from dockerparallel import DockerCluster, DockerHardware
    from dockerparallel.backends.dask import DaskWorkerContainer
    from dockerparallel.providers.docker import DockerProvider

    container = DaskWorkerContainer(host="127.0.0.1", scheduler_port={port}, dashboard_port={dashboard},
                                    image="dockerparallel-test:latest", max_workers_per_container=2)
    provider = DockerProvider(pull=False, hosts={hosts!r}, max_concurrent_calls=1)
    cluster = DockerCluster(provider, container, name="{name}", worker_hardware=DockerHardware(256, 512))
    cluster.start_cluster(timeout=60)
    print("started", flush=True)
    cluster.set_worker_number(8)
    print("scaled", flush=True)
    import time
    time.sleep(600)
"""


@pytest.mark.docker
def test_a_killed_creator_leaves_nothing_after_down_from_a_fresh_process(
    docker_client: Any, second_docker_client: Any, two_engine_name: str, private_state_store: Path,  # noqa: F811
) -> None:
    from tests.local_fixtures import run_cli

    name = two_engine_name
    port, dashboard = free_ports(2)
    code = CREATOR.format(port=port, dashboard=dashboard, hosts=[FIRST_ENGINE, SECOND_ENGINE], name=name)
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env={**os.environ, "PYTHONPATH": SRC},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:  # mid scale-up, one container at a time: killed once the second engine has a worker container
        wait_for(lambda: bool(labelled(second_docker_client, name, "worker")) or child.poll() is not None, 90,
                 "a worker container on the second engine")
        child.send_signal(signal.SIGKILL)
        out, err = child.communicate(timeout=30)
    finally:
        child.kill()
    assert "started" in out and child.returncode == -signal.SIGKILL, err
    assert live(second_docker_client, name) != []
    result = run_cli(private_state_store, "down", name)
    assert live(docker_client, name) == [] and live(second_docker_client, name) == [], result.stdout


@pytest.mark.docker
def test_conformance_on_two_hosts(docker_client: Any, second_docker_client: Any) -> None:  # noqa: F811
    container = dask_container()
    try:
        report = check_provider(lambda: DockerProvider(pull=False, hosts=[FIRST_ENGINE, SECOND_ENGINE]), container,
                                hardware=QUARTER, timeout=90)
    finally:
        for client in (docker_client, second_docker_client):
            remove_by_port(client, container.scheduler_port)
    assert report.skipped == [] and report.passed_names == [
        "start cluster", "scale up to 5", "shared handles counted", "scale down to 3",
        "kill of unknown handles succeeds", "killed worker reports stopped", "update() heals",
        "reconnect from a fresh provider", "stop leaves nothing running"], str(report)


@pytest.mark.docker
def test_an_engine_that_does_not_answer_gets_no_worker(docker_client: Any, tmp_path: Path,  # noqa: F811
                                                       caplog: pytest.LogCaptureFixture) -> None:
    view = View(name=f"dptest-{tmp_path.name[-10:]}")
    provider = DockerProvider(pull=False, hosts=[FIRST_ENGINE, f"unix://{tmp_path}/gone.sock"])
    try:
        with caplog.at_level(logging.WARNING, "dockerparallel.providers.docker"):
            handles = provider.run_docker_worker_containers(view, view.worker_container, QUARTER, 2)
        assert len(handles) == 2 and {split_handle(handle, 2)[0] for handle in handles} == {0}  # type: ignore[index]
        assert any("gone.sock" in record.getMessage() for record in caplog.records)
        assert provider.get_docker_worker_status(view, handles[:1]) == ["running"]
        assert provider.kill_docker_worker_containers(view, handles[:1]) == [True]
    finally:
        for box in docker_client.api.containers(all=True, filters={"label": f"{LABEL_CLUSTER}={view.name}"}):
            docker_client.api.remove_container(box["Id"], force=True)


# -- an engine over SSH --------------------------------------------------------------------------------------------


@pytest.mark.docker
def test_an_engine_over_ssh_runs_reports_and_kills_workers(
    docker_client: Any, second_docker_client: Any, ssh_engine: str, two_engine_name: str,  # noqa: F811
) -> None:
    name = two_engine_name
    with two_engine_cluster(name, [FIRST_ENGINE, ssh_engine]) as cluster:
        provider = cluster.provider
        assert isinstance(provider, DockerProvider)
        cluster.set_worker_number(4)  # the SSH engine has the most room: both containers go there
        behind = labelled(second_docker_client, name, "worker")  # the engine the sshd leads to
        assert len(behind) == 2 and labelled(docker_client, name, "worker") == []
        handles = sorted(set(provider.get_managed_worker_handles()))
        assert handles == sorted(f"1/{box['Id']}" for box in behind)
        with dask_client(cluster) as client:
            client.wait_for_workers(4, timeout=90)
        assert provider.get_docker_worker_status(cluster, handles) == ["running", "running"]
        assert provider.kill_docker_worker_containers(cluster, handles[:1]) == [True]
        assert [box["Id"] for box in labelled(second_docker_client, name, "worker")] == [handles[1][2:]]
        assert provider.get_docker_worker_status(cluster, handles) == ["stopped", "running"]
    assert live(docker_client, name) == [] and live(second_docker_client, name) == []


@pytest.mark.docker
def test_two_addresses_of_one_engine_are_refused(ssh_engine: str) -> None:  # noqa: F811
    provider = DockerProvider(pull=False, hosts=[SECOND_ENGINE, ssh_engine])
    with pytest.raises(ProviderError, match=r"hosts\[0\] .* and hosts\[1\] .* reach the same Docker Engine"):
        provider.initialize_cloud_provider(View())
