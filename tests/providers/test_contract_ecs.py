"""The provider contract (ProviderContract) on ECSFargateProvider against a real moto server on 127.0.0.1.

moto keeps every task RUNNING until stop_task (conftest.py); each test deep-cleans
its cluster, and a last check finds no ECS cluster of the contract still active.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest

from dockerparallel import DockerContainer
from dockerparallel.testing import ProviderContract

pytest.importorskip("boto3", reason="boto3 is not installed (pip install 'dockerparallel[aws]')")

from .test_ecs import aws, server_container, worker_container  # noqa: E402

pytestmark = pytest.mark.moto


class TestECSFargateProviderContract(ProviderContract):
    poll = 0.05

    @pytest.fixture
    def provider_factory(self, ecs_provider: Callable[..., Any]) -> Callable[[], Any]:
        return lambda: ecs_provider()

    @pytest.fixture
    def worker_container(self) -> DockerContainer:
        return worker_container(2)

    @pytest.fixture
    def server_container(self) -> DockerContainer:
        return server_container()

    @pytest.fixture
    def timeout(self) -> float:
        return 20.0

    @pytest.fixture(autouse=True)
    def nothing_left(self, aws_env: str) -> Iterator[None]:
        """No ECS cluster of a contract test stays active, and no task of one runs."""
        yield
        ecs = aws(aws_env, "ecs")
        arns = [a for a in ecs.list_clusters()["clusterArns"] if a.rsplit("/", 1)[-1].startswith("contract-")]
        active = [c["clusterName"] for c in ecs.describe_clusters(clusters=arns)["clusters"]
                  if c["status"] == "ACTIVE"] if arns else []
        running = [t for a in arns for t in ecs.list_tasks(cluster=a, desiredStatus="RUNNING")["taskArns"]]
        assert not active and not running, f"left behind: clusters {active}, tasks {running}"
