"""The provider contract (ProviderContract) on examples/subprocess_provider.py, imported by its path."""

from __future__ import annotations

import subprocess
from typing import Any, Callable, Iterator

import pytest

from dockerparallel import DockerContainer
from dockerparallel.managed import ManagedCloudProvider
from dockerparallel.testing import ProviderContract

from .test_conformance import SLEEP, load_example, sleeping_children

EXAMPLE = load_example()


class TestSubprocessExampleContract(ProviderContract):
    poll = 0.01

    @pytest.fixture
    def spawned(self) -> Iterator[list[subprocess.Popen[Any]]]:
        """Every process the example spawns; survivors are killed and reported after the test."""
        processes: list[subprocess.Popen[Any]] = []
        yield processes
        survivors = [p.pid for p in processes if p.poll() is None]
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
        assert not survivors, f"processes left running: {survivors}"
        assert sleeping_children() == []

    @pytest.fixture
    def provider_factory(self, spawned: list[subprocess.Popen[Any]]) -> Callable[[], ManagedCloudProvider]:
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
