"""DockerProvider(base_url=...) on Podman's Docker-compatible API (``podman system service``).

Real containers of the test image, run by rootful Podman on the host network,
every address on 127.0.0.1. Needs the service at
``unix:///run/podman/podman.sock`` holding the test image
(``bash scripts/start-podman.sh``; another socket through
``DOCKERPARALLEL_PODMAN``): without it the tests are skipped with the reason,
and a strict run (CI, ``DOCKERPARALLEL_REQUIRE_DOCKER=1``) fails them
(tests/_strict.py). Every container a test leaves is removed by label.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from dockerparallel import DockerCluster
from dockerparallel.backends.dask import DaskWorkerContainer
from dockerparallel.providers.docker import DockerEngineUnavailable, DockerImageUnavailable, DockerProvider

from . import test_contract_docker
from .docker_fixtures import (  # noqa: F401 - fixtures are used by name
    fresh_name,
    started,
    SMALL,
    TEST_IMAGE,
    dask_client,
    dask_container,
    docker_client,
    expected_sum_of_squares,
    free_ports,
    labelled,
    sum_of_squares,
    wait_for,
)
from .test_docker import FRESH, run_python, worker_counts

PODMAN_ENGINE = os.environ.get("DOCKERPARALLEL_PODMAN", "unix:///run/podman/podman.sock")
START = "bash scripts/start-podman.sh"


def podman_problem() -> str | None:
    """Why the Podman tests cannot run here, or ``None`` when they can."""
    import docker

    try:
        client = docker.DockerClient(base_url=PODMAN_ENGINE, version="auto", timeout=30)
        components = [part.get("Name", "") for part in client.version().get("Components") or []]
        client.api.inspect_image(TEST_IMAGE)
    except docker.errors.ImageNotFound:
        return f"the test image {TEST_IMAGE} is not in Podman's storage: {START}"
    except docker.errors.DockerException as exc:
        return f"Podman service not running: {START} (nothing answers at {PODMAN_ENGINE}: {exc})"
    if "Podman Engine" not in components:
        return f"{PODMAN_ENGINE} answers, but no Podman service is behind it ({components}): {START}"
    return None


def podman_provider(**options: Any) -> DockerProvider:
    """A DockerProvider on the Podman service: host network, no pulling (no registry is reachable)."""
    return DockerProvider(base_url=PODMAN_ENGINE, network_mode="host", pull=False, **options)


@pytest.fixture(scope="session")
def podman_client() -> Any:
    """A docker SDK client of the Podman service; skips the test without it."""
    problem = podman_problem()
    if problem is not None:
        pytest.skip(problem)
    import docker

    return docker.DockerClient(base_url=PODMAN_ENGINE, version="auto", timeout=60)


@pytest.fixture
def podman_name(podman_client: Any) -> Iterator[str]:
    """A fresh cluster name; every container labelled with it is removed from Podman after the test."""
    yield from fresh_name(podman_client, "dptest-podman")


@pytest.fixture
def podman_cluster(podman_name: str) -> Iterator[DockerCluster]:
    """A started Dask cluster (the scheduler's container only) on Podman."""
    with started(DockerCluster(podman_provider(), dask_container(), name=podman_name, worker_hardware=SMALL)) as cluster:
        yield cluster


def test_an_absent_podman_service_is_named_with_how_to_start_it(tmp_path: Path) -> None:
    socket = f"unix://{tmp_path}/podman/podman.sock"
    cluster = DockerCluster(DockerProvider(base_url=socket), dask_container())
    with pytest.raises(DockerEngineUnavailable) as caught:
        cluster.start_cluster()
    message = str(caught.value)
    assert socket in message and f"podman system service --time=0 {socket}" in message, message
    assert START in message, message


@pytest.mark.docker
def test_a_cluster_on_podman_computes_scales_and_stops(podman_client: Any, docker_client: Any,  # noqa: F811
                                                       podman_cluster: DockerCluster) -> None:
    name = podman_cluster.name
    for asked, containers in ((4, [2, 2]), (6, [2, 2, 2])):
        podman_cluster.set_worker_number(asked)
        assert worker_counts(podman_client, name) == containers, asked
    box = podman_client.api.inspect_container(labelled(podman_client, name, "worker")[0]["Id"])
    assert box["HostConfig"]["NetworkMode"] == "host"
    assert box["HostConfig"]["NanoCpus"] == 2 * SMALL.cpu * 10**9 // 1024
    assert box["HostConfig"]["Memory"] == 2 * SMALL.memory * 2**20
    assert labelled(docker_client, name) == []  # Podman ran them, not the Docker Engine
    with dask_client(podman_cluster) as client:
        client.wait_for_workers(6, timeout=60)
        assert sum_of_squares(client, 100) == expected_sum_of_squares(100)
    podman_cluster.set_worker_number(3)  # 3 of 6 may go: one container of 2, whole
    assert worker_counts(podman_client, name) == [2, 2]
    assert len(labelled(podman_client, name, "worker")) == 2  # a removed container is gone, not exited
    logs = podman_cluster.provider.get_docker_logs(podman_cluster)  # type: ignore[attr-defined]
    assert "distributed.scheduler" in logs["server"] and len(logs) == 3, list(logs)
    podman_cluster.stop_cluster()
    assert labelled(podman_client, name) == []


@pytest.mark.docker
def test_a_failed_pull_on_podman_says_why(podman_client: Any, podman_name: str) -> None:
    # Podman answers a failed pull with 200 and the error inside the progress stream (Docker with a 500).
    image = "dockerparallel-no-such-image:never"
    said = [item["error"] for item in podman_client.api.pull(image, stream=True, decode=True) if "error" in item]
    assert said, "Podman pulled an image that does not exist"
    container = DaskWorkerContainer(image=image, host="127.0.0.1", scheduler_port=free_ports(1)[0])
    cluster = DockerCluster(DockerProvider(base_url=PODMAN_ENGINE, pull=True), container, name=podman_name)
    with pytest.raises(DockerImageUnavailable) as caught:
        cluster.start_cluster(timeout=30)
    assert image in str(caught.value) and said[-1] in str(caught.value), str(caught.value)
    assert labelled(podman_client, podman_name) == []


@pytest.mark.docker
def test_a_worker_container_killed_from_outside_is_replaced_on_podman(
    podman_client: Any, podman_cluster: DockerCluster
) -> None:
    podman_cluster.set_worker_number(4)
    victim = labelled(podman_client, podman_cluster.name, "worker")[0]["Id"]
    provider: DockerProvider = podman_cluster.provider  # type: ignore[assignment]
    podman_client.api.kill(victim)
    wait_for(lambda: podman_cluster.update().running == 4 and victim not in provider.get_managed_worker_handles(),
             60, "the killed container to be replaced")
    assert worker_counts(podman_client, podman_cluster.name) == [2, 2]
    assert victim not in {box["Id"] for box in labelled(podman_client, podman_cluster.name)}
    with dask_client(podman_cluster) as client:
        client.wait_for_workers(4, timeout=60)
        assert sum_of_squares(client, 50) == expected_sum_of_squares(50)


@pytest.mark.docker
def test_cli_down_in_a_fresh_process_removes_every_container_on_podman(
    podman_client: Any, podman_name: str, tmp_path: Path
) -> None:
    from tests.local_fixtures import run_cli

    state = tmp_path / "state.sqlite3"
    out = run_cli(state, "up", "--provider", "docker", "--base-url", PODMAN_ENGINE, "--network", "host",
                  "--image", TEST_IMAGE, "--no-pull", "-n", "4", "-k", "2", "--memory", "512",
                  "--name", podman_name).stdout
    assert f"cluster {podman_name} is up with 4 worker(s)" in out
    assert worker_counts(podman_client, podman_name) == [2, 2]
    run_cli(state, "down", podman_name)  # the provider is rebuilt from the record: base_url included
    assert labelled(podman_client, podman_name) == []


@pytest.mark.docker
def test_a_fresh_process_finds_the_cluster_by_label_alone_on_podman(
    podman_client: Any, podman_cluster: DockerCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    podman_cluster.set_worker_number(4)
    container = podman_cluster.worker_container
    assert isinstance(container, DaskWorkerContainer)
    monkeypatch.setenv("DOCKER_HOST", PODMAN_ENGINE)  # the fresh DockerProvider() finds Podman there
    fresh = run_python(FRESH.format(port=container.scheduler_port, dashboard=container.dashboard_port,
                                    name=podman_cluster.name))
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.split("\n")[:3] == ["exists True", "workers 4", "exists False"], fresh.stdout
    assert labelled(podman_client, podman_cluster.name) == []


@pytest.mark.docker
class TestPodmanProviderContract(test_contract_docker.TestDockerProviderContract):
    """The provider contract (the Docker Engine's fixtures), with every container on Podman."""

    @pytest.fixture
    def docker_client(self, podman_client: Any) -> Any:  # noqa: F811 - the inherited fixtures list Podman's
        return podman_client

    @pytest.fixture
    def provider_factory(self, podman_client: Any) -> Callable[[], DockerProvider]:
        return podman_provider
