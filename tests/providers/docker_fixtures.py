"""Fixtures and helpers of the Docker Engine tests.

Without a reachable engine or without the test image, the tests that need
them are skipped with the reason; with ``DOCKERPARALLEL_REQUIRE_DOCKER=1``
(as in CI) they fail instead. Every container a test starts is labelled with
its cluster's name and removed by label when the test ends.
"""

from __future__ import annotations

import contextlib
import os
import uuid
import warnings
from typing import Any, Iterator

import pytest

from dockerparallel import DockerCluster, DockerHardware
from dockerparallel._spec import free_port, free_ports
from dockerparallel.backends.dask import DaskWorkerContainer
from dockerparallel.providers.docker import LABEL_CLUSTER, LABEL_ROLE, DockerProvider
from tests.local_fixtures import wait_for

__all__ = [
    "SMALL", "TEST_IMAGE", "cluster_name", "dask_client", "dask_container", "dask_worker_container",
    "docker_client", "docker_cluster", "expected_sum_of_squares", "free_port", "fresh_name", "labelled", "started",
    "sum_of_squares", "wait_for",
]

TEST_IMAGE = "dockerparallel-test:latest"
REQUIRE_DOCKER = "DOCKERPARALLEL_REQUIRE_DOCKER"
#: Hardware of one test worker: half a core and 1 GB (a container of 2 gets 1 core, 2 GB).
SMALL = DockerHardware(cpu=512, memory=1024)


def engine_problem() -> str | None:
    """Why the Docker tests cannot run here, or ``None`` when they can."""
    try:
        import docker
    except ImportError:
        return "the docker SDK is not installed (pip install 'dockerparallel[docker]')"
    try:
        client = docker.from_env(version="auto", timeout=30)
    except docker.errors.DockerException as exc:
        return f"no Docker Engine is reachable ({exc}); run: bash scripts/install-docker.sh"
    try:
        client.api.inspect_image(TEST_IMAGE)
    except docker.errors.ImageNotFound:
        return f"the test image {TEST_IMAGE} is missing; run: bash scripts/build-test-image.sh .venv/bin/python"
    return None


def dask_container(scheduler_port: int | None = None, dashboard_port: int | None = None) -> DaskWorkerContainer:
    """The test worker container: the test image, loopback only, 2 workers per container."""
    ports = free_ports(2)  # two different ones
    return DaskWorkerContainer(
        host="127.0.0.1", scheduler_port=scheduler_port or ports[0], dashboard_port=dashboard_port or ports[1],
        image=TEST_IMAGE, max_workers_per_container=2,
    )


def labelled(client: Any, name: str, role: str | None = None, *, all: bool = True) -> list[dict[str, Any]]:
    """The containers labelled with cluster ``name`` (and ``role``), from the Docker API."""
    labels = [f"{LABEL_CLUSTER}={name}"] + ([f"{LABEL_ROLE}={role}"] if role else [])
    return list(client.api.containers(all=all, filters={"label": labels}))


def remove_labelled(client: Any, name: str) -> None:
    """Remove every container labelled with cluster ``name``."""
    for box in labelled(client, name):
        with contextlib.suppress(Exception):
            client.api.remove_container(box["Id"], force=True)


def server_diagnosis(name: str) -> str:
    """State and last log lines of the server container of cluster ``name``."""
    import docker

    api = docker.from_env(version="auto").api
    lines = []
    for box in labelled(docker.from_env(version="auto"), name, "server"):
        logs = api.logs(box["Id"], tail=15).decode(errors="replace")
        lines.append(f"server {box['Id'][:12]} {box['State']} ({box['Status']}):\n{logs}")
    return "\n".join(lines) or "no server container"


@contextlib.contextmanager
def dask_client(cluster: DockerCluster) -> Iterator[Any]:
    """A ``distributed.Client`` of the cluster (TLS when it uses TLS; patch-level version warnings muted)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Mismatched versions")
        try:
            client = cluster.get_client(timeout=60)
        except OSError as exc:
            pytest.fail(f"cannot connect to {cluster.scheduler_address}: {exc}\n{server_diagnosis(cluster.name)}")
        with client:
            yield client


def sum_of_squares(client: Any, n: int, delay: float = 0.0) -> int:
    """Compute ``sum(i * i for i in range(n))`` on the cluster, each task sleeping ``delay`` s."""

    def square(x: int) -> int:
        import time

        time.sleep(delay)
        return x * x

    return int(client.submit(sum, client.map(square, range(n), pure=False)).result(timeout=120))


def expected_sum_of_squares(n: int) -> int:
    return sum(i * i for i in range(n))


@pytest.fixture(scope="session")
def docker_client() -> Any:
    """A docker SDK client; skips the test (fails it under DOCKERPARALLEL_REQUIRE_DOCKER=1) without an engine."""
    problem = engine_problem()
    if problem is not None:
        if os.environ.get(REQUIRE_DOCKER) == "1":
            pytest.fail(f"{REQUIRE_DOCKER}=1 but {problem}", pytrace=False)
        pytest.skip(problem)
    import docker

    return docker.from_env(version="auto", timeout=60)


def remove_by_port(client: Any, port: int) -> None:
    """Remove every dockerparallel container whose command names scheduler ``port``.

    Finds the containers of a cluster whose name the test does not know (the
    conformance kit makes its own), and only those: another test session on
    the same engine cannot hold the same port at the same time.
    """
    for box in client.api.containers(all=True, filters={"label": LABEL_CLUSTER}):
        command = f" {box.get('Command', '')} "
        if f":{port} " in command or f" {port} " in command:
            with contextlib.suppress(Exception):
                client.api.remove_container(box["Id"], force=True)


def fresh_name(client: Any, prefix: str = "dptest") -> Iterator[str]:
    """A fresh cluster name (for a fixture to yield from); every container labelled with it is removed after."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    yield name
    remove_labelled(client, name)


@contextlib.contextmanager
def started(cluster: DockerCluster, timeout: float = 60) -> Iterator[DockerCluster]:
    """``cluster``, started; stopped afterwards, whatever happened."""
    try:
        cluster.start_cluster(timeout=timeout)
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            cluster.stop_cluster()


@pytest.fixture
def cluster_name(docker_client: Any) -> Iterator[str]:
    """A fresh cluster name; every container labelled with it is removed after the test."""
    yield from fresh_name(docker_client)


@pytest.fixture
def dask_worker_container(docker_client: Any) -> Iterator[DaskWorkerContainer]:
    """The test worker container, on free ports; its containers are removed after the test."""
    container = dask_container()
    yield container
    remove_by_port(docker_client, container.scheduler_port)


@pytest.fixture
def docker_cluster(cluster_name: str, dask_worker_container: DaskWorkerContainer) -> Iterator[DockerCluster]:
    """A started Dask cluster (scheduler only, TLS as by default) on a :class:`DockerProvider`."""
    cluster = DockerCluster(DockerProvider(pull=False), dask_worker_container, name=cluster_name, worker_hardware=SMALL)
    with started(cluster):
        yield cluster


# -- several engines: a second daemon and that daemon over SSH (scripts/start-second-dockerd.sh,
# -- scripts/start-test-sshd.sh); both fail, not skip, under DOCKERPARALLEL_REQUIRE_DOCKER=1 --------

#: The first engine's address (the docker SDK's default) and the second daemon's socket.
FIRST_ENGINE = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
SECOND_ENGINE = os.environ.get("DOCKERPARALLEL_DOCKER2", "unix:///run/dockerparallel-docker2.sock")
#: What scripts/start-test-sshd.sh writes: the ssh:// URL and the HOME whose ~/.ssh the SDK reads.
SSHD_ENV = os.environ.get("DOCKERPARALLEL_SSHD_ENV", "/run/dockerparallel-sshd/sshd.env")


def _absent(problem: str) -> None:
    """Skip the test for want of a part, or fail it under DOCKERPARALLEL_REQUIRE_DOCKER=1."""
    if os.environ.get(REQUIRE_DOCKER) == "1":
        pytest.fail(f"{REQUIRE_DOCKER}=1 but {problem}", pytrace=False)
    pytest.skip(problem)


def second_engine_problem() -> str | None:
    """Why the second engine cannot be used here, or ``None`` when it can."""
    import docker

    try:
        client = docker.DockerClient(base_url=SECOND_ENGINE, version="auto", timeout=30)
        client.api.inspect_image(TEST_IMAGE)
    except docker.errors.ImageNotFound:
        return f"the test image is not on the second engine {SECOND_ENGINE}; run: bash scripts/start-second-dockerd.sh"
    except docker.errors.DockerException as exc:
        return f"no second Docker Engine at {SECOND_ENGINE} ({exc}); run: bash scripts/start-second-dockerd.sh"
    return None


@pytest.fixture(scope="session")
def second_docker_client(docker_client: Any) -> Any:
    """A docker SDK client of the second engine (skips, or fails when Docker is required, without it)."""
    problem = second_engine_problem()
    if problem is not None:
        _absent(problem)
    import docker

    return docker.DockerClient(base_url=SECOND_ENGINE, version="auto", timeout=60)


def read_sshd_env(path: str = SSHD_ENV) -> dict[str, str]:
    """The ``KEY=value`` lines that scripts/start-test-sshd.sh wrote (``{}`` when it has not run)."""
    try:
        with open(path, encoding="utf-8") as file:
            return dict(line.strip().split("=", 1) for line in file if "=" in line)
    except OSError:
        return {}


@pytest.fixture
def ssh_engine(second_docker_client: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """The ``ssh://root@127.0.0.1:PORT`` URL of the test sshd, with HOME set to the home whose ~/.ssh it needs.

    The docker SDK's ssh:// transport (paramiko) reads ``~/.ssh/config`` (the
    key) and ``~/.ssh/known_hosts`` (the host key); subprocesses inherit HOME.
    """
    import docker

    found = read_sshd_env()
    if not found.get("DOCKERPARALLEL_SSH_URL"):
        _absent(f"no test sshd ({SSHD_ENV} is missing); run: bash scripts/start-test-sshd.sh")
    monkeypatch.setenv("HOME", found["DOCKERPARALLEL_SSH_HOME"])
    try:
        docker.DockerClient(base_url=found["DOCKERPARALLEL_SSH_URL"], version="auto", timeout=30).close()
    except Exception as exc:  # paramiko's errors are no DockerException
        _absent(f"the Docker Engine over SSH at {found['DOCKERPARALLEL_SSH_URL']} does not answer ({exc}); "
                "run: bash scripts/start-test-sshd.sh")
    return found["DOCKERPARALLEL_SSH_URL"]


@pytest.fixture
def two_engine_name(docker_client: Any, second_docker_client: Any) -> Iterator[str]:
    """A fresh cluster name; every container labelled with it is removed from both engines after the test."""
    name = f"dptest-{uuid.uuid4().hex[:10]}"
    yield name
    for client in (docker_client, second_docker_client):
        remove_labelled(client, name)
