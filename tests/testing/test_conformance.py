"""The conformance kit on the fake provider and on the example subprocess provider."""

from __future__ import annotations

import importlib.util
import logging
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator

import psutil
import pytest

from dockerparallel import ConformanceError, DockerContainer
from dockerparallel.managed import ManagedCloudProvider
from dockerparallel.testing import ConformanceReport, FakeCloud, FakeCloudProvider, check_provider

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "subprocess_provider.py"
SLEEP = ["sleep", "600"]
RECONNECT_SKIPPED = "reconnect not checked"


def check(factory: Callable[[], ManagedCloudProvider], container: DockerContainer) -> ConformanceReport:
    return check_provider(factory, container, server_container=container, timeout=10, poll=0.01)


def step_names(report: ConformanceReport) -> list[str]:
    return [name for name, _ in report.steps]


def load_example() -> ModuleType:
    """Import examples/subprocess_provider.py by its path."""
    spec = importlib.util.spec_from_file_location("subprocess_provider_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sleeping_children() -> list[int]:
    """Child processes running ``sleep``, zombies included."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.name() == "sleep":
                found.append(child.pid)
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen[Any]]]:
    """Every process the example provider spawns; the survivors are killed and reported afterwards."""
    processes: list[subprocess.Popen[Any]] = []
    yield processes
    survivors = [p.pid for p in processes if p.poll() is None]
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
    assert not survivors, f"processes left running: {survivors}"
    assert sleeping_children() == []


def test_conformance_fake_provider_with_reconnect(container: DockerContainer,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    cloud = FakeCloud()
    made: list[FakeCloudProvider] = []

    def factory() -> FakeCloudProvider:
        made.append(FakeCloudProvider(cloud))
        return made[-1]

    with caplog.at_level(logging.INFO, logger="dockerparallel.testing"):
        report = check(factory, container)
    assert "reconnect from a fresh provider" in step_names(report)
    assert len(made) == 2 and RECONNECT_SKIPPED not in caplog.text
    assert made[1].calls["get_docker_worker_status"] > 0  # the fresh provider counted the adopted workers
    assert cloud.live() == []


def test_conformance_skips_reconnect_without_a_shared_cloud(container: DockerContainer,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="dockerparallel.testing"):
        check(FakeCloudProvider, container)
    assert RECONNECT_SKIPPED in caplog.text


def test_conformance_subprocess_example(spawned: list[subprocess.Popen[Any]]) -> None:
    example = load_example()

    class TrackedSubprocessProvider(example.SubprocessProvider):  # type: ignore[misc, name-defined]
        def _spawn(self, container: DockerContainer) -> subprocess.Popen[Any]:
            spawned.append(super()._spawn(container))
            return spawned[-1]

    container = DockerContainer("none", name="worker", command=SLEEP, max_workers_per_container=2)
    report = check(TrackedSubprocessProvider, container)
    assert len(report.steps) == 9
    assert len(spawned) >= 4  # a server and at least three worker containers (5 workers, 2 per container)


class KillOfUnknownFails(FakeCloudProvider):
    def kill_docker_worker_containers(self, cluster: Any, worker_handles: list[str], verbose: int = 0) -> list[bool]:
        known = set(self.worker_ledger.handles())
        return [ok and h in known for h, ok in
                zip(worker_handles, super().kill_docker_worker_containers(cluster, worker_handles, verbose))]


class KillLeavesWorkersRunning(FakeCloudProvider):
    def kill_docker_worker_containers(self, cluster: Any, worker_handles: list[str], verbose: int = 0) -> list[bool]:
        return [True] * len(worker_handles)


@pytest.mark.parametrize(("broken", "step"), [
    (KillOfUnknownFails, "kill of an unknown handle returned [False]"),
    (KillLeavesWorkersRunning, "killed worker"),
])
def test_conformance_catches_broken_providers(broken: type[FakeCloudProvider], step: str,
                                              container: DockerContainer) -> None:
    cloud = FakeCloud()
    with pytest.raises(ConformanceError, match=broken.__name__) as excinfo:
        check_provider(lambda: broken(cloud), container, server_container=container, timeout=0.2, poll=0.01)
    assert step in str(excinfo.value)


def test_conformance_rejects_an_unmanaged_provider(container: DockerContainer) -> None:
    with pytest.raises(TypeError, match="ManagedCloudProvider"):
        check_provider(lambda: object(), container)  # type: ignore[arg-type, return-value]
