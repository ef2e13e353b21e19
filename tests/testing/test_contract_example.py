"""The provider contract (ProviderContract) on examples/subprocess_provider.py, imported by its path."""

from __future__ import annotations

import subprocess
from typing import Any, Callable

import pytest

from dockerparallel import DockerContainer
from dockerparallel.managed import ManagedCloudProvider
from dockerparallel.testing import ProviderContract

from .test_conformance import SLEEP, load_example, spawned  # noqa: F401 - spawned is a fixture

EXAMPLE = load_example()


class TestSubprocessExampleContract(ProviderContract):
    poll = 0.01

    @pytest.fixture
    def provider_factory(self, spawned: list[subprocess.Popen[Any]]) -> Callable[[], ManagedCloudProvider]:  # noqa: F811
        class Tracked(EXAMPLE.SubprocessProvider):  # type: ignore[misc, name-defined]
            def _spawn(self, *args: Any) -> str:
                pid: str = super()._spawn(*args)
                spawned.append(self.children[pid])
                return pid

        return Tracked

    @pytest.fixture
    def worker_container(self) -> DockerContainer:
        return DockerContainer("none", name="worker", command=SLEEP, max_workers_per_container=2)

    @pytest.fixture
    def server_container(self, worker_container: DockerContainer) -> DockerContainer:
        return worker_container

    @pytest.fixture
    def timeout(self) -> float:
        return 10.0
