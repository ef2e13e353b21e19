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
from dockerparallel.testing import ConformanceReport, FakeCloud, FakeCloudProvider, StepOutcome, check_provider
from dockerparallel.testing.conformance import NO_EXISTING_CLUSTERS

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "subprocess_provider.py"
SLEEP = ["sleep", "600"]
RECONNECT = "reconnect from a fresh provider"


def all_steps(k: int) -> list[str]:
    """Every step of the kit, in order, for ``k`` workers per container."""
    return ["start cluster", f"scale up to {2 * k + 1}", "shared handles counted", f"scale down to {k + 1}",
            "kill of unknown handles succeeds", "killed worker reports stopped", "update() heals", RECONNECT,
            "stop leaves nothing running"]


def check(factory: Callable[[], ManagedCloudProvider], container: DockerContainer) -> ConformanceReport:
    return check_provider(factory, container, server_container=container, timeout=10, poll=0.01)


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
    k = container.max_workers_per_container
    assert report.passed_names == all_steps(k) and report.skipped == [] and report.complete, str(report)
    assert report.ran(RECONNECT) and "not run" not in caplog.text
    assert len(made) == 2
    assert made[1].calls["get_docker_worker_status"] > 0  # the fresh provider counted the adopted workers
    assert cloud.live() == []


def test_conformance_reports_reconnect_not_run_without_a_shared_cloud(container: DockerContainer,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="dockerparallel.testing"):
        report = check(FakeCloudProvider, container)  # each fresh provider has a cloud of its own
    k = container.max_workers_per_container
    assert report.skipped == [(RECONNECT, NO_EXISTING_CLUSTERS)]
    assert not report.ran(RECONNECT) and not report.complete
    assert report.passed_names == [name for name in all_steps(k) if name != RECONNECT]
    assert f"not run  {RECONNECT}: {NO_EXISTING_CLUSTERS}" in str(report)
    assert "8 conformance steps passed, 1 not run" in str(report)
    assert NO_EXISTING_CLUSTERS in caplog.text


class AdoptsNothing(FakeCloudProvider):
    """Says the cluster exists but adopts neither its server nor its workers."""

    def reconnect_docker_cluster(self, cluster: Any, verbose: int = 0) -> None:
        pass


def test_conformance_checks_reconnect_when_the_cluster_exists(container: DockerContainer) -> None:
    cloud = FakeCloud()
    with pytest.raises(ConformanceError, match="AdoptsNothing") as excinfo:
        check(lambda: AdoptsNothing(cloud), container)
    assert "does not see the running server after reconnect()" in str(excinfo.value)
    assert cloud.live() == []


def test_report_str_shows_passed_and_not_run_steps() -> None:
    report = ConformanceReport("P", [StepOutcome("a", "passed", 1.5), StepOutcome("b", "not run", reason="why")])
    assert report.steps == [("a", 1.5)] and report.skipped == [("b", "why")]
    assert report.passed_names == ["a"] and report.ran("a") and not report.ran("b") and not report.complete
    assert str(report).splitlines() == ["P: 1 conformance steps passed, 1 not run",
                                        "  ok       a (1.50 s)", "  not run  b: why"]


def test_conformance_subprocess_example(spawned: list[subprocess.Popen[Any]]) -> None:
    example = load_example()

    class TrackedSubprocessProvider(example.SubprocessProvider):  # type: ignore[misc, name-defined]
        def _spawn(self, *args: Any) -> str:
            pid: str = super()._spawn(*args)
            spawned.append(self.children[pid])
            return pid

    container = DockerContainer("none", name="worker", command=SLEEP, max_workers_per_container=2)
    report = check(TrackedSubprocessProvider, container)
    assert report.passed_names == all_steps(2) and report.skipped == [], str(report)  # reconnect checked too
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
