"""The provider contract (ProviderContract) on DockerProvider: real containers of the test image, host network.

Needs an engine and the image ``dockerparallel-test:latest``; without them the
tests are skipped with the reason (and fail under ``DOCKERPARALLEL_REQUIRE_DOCKER=1``),
see ``docker_fixtures.py``. Every container a test leaves is removed by label.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest

from dockerparallel import DockerHardware
from dockerparallel.backends.dask import DaskWorkerContainer
from dockerparallel.providers.docker import LABEL_CLUSTER, DockerProvider
from dockerparallel.testing import ProviderContract

from .docker_fixtures import SMALL, dask_container, docker_client, remove_by_port  # noqa: F401

pytestmark = pytest.mark.docker


class TestDockerProviderContract(ProviderContract):
    poll = 0.1

    @pytest.fixture
    def provider_factory(self, docker_client: Any) -> Callable[[], DockerProvider]:  # noqa: F811
        return lambda: DockerProvider(pull=False, network_mode="host")

    @pytest.fixture
    def worker_container(self, docker_client: Any) -> Iterator[DaskWorkerContainer]:  # noqa: F811
        container = dask_container()  # k = 2, on free loopback ports
        yield container
        remove_by_port(docker_client, container.scheduler_port)

    @pytest.fixture
    def hardware(self) -> DockerHardware:
        return SMALL

    @pytest.fixture
    def timeout(self) -> float:
        return 60.0

    @pytest.fixture(autouse=True)
    def nothing_left(self, docker_client: Any, worker_container: DaskWorkerContainer) -> Iterator[None]:  # noqa: F811
        """No container of this test's cluster (found by its scheduler port) is left, running or not."""
        yield
        port = worker_container.scheduler_port
        boxes = docker_client.api.containers(all=True, filters={"label": LABEL_CLUSTER})
        left = [box["Names"] for box in boxes if f":{port} " in f" {box.get('Command', '')} "
                or f" {port} " in f" {box.get('Command', '')} "]
        assert not left, f"containers left behind: {left}"
