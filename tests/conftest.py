"""Fixtures shared by every test module."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockerparallel import DockerCluster, DockerContainer
from dockerparallel.testing import FakeCloud, FakeCloudProvider

from ._helpers import ManualClock, make_cluster, started_cluster, worker_container

#: Lines that tests add (through the ``summary_lines`` fixture) for the end of the test report.
SUMMARY_LINES: list[str] = []


@pytest.fixture
def summary_lines() -> list[str]:
    """Append lines here to have them printed in the terminal summary (with or without ``-s``)."""
    return SUMMARY_LINES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print what the tests put in :data:`SUMMARY_LINES`."""
    if SUMMARY_LINES:
        terminalreporter.write_sep("-", "dockerparallel test summary")
        for line in SUMMARY_LINES:
            terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
def private_state_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty state store; no test reads or writes the user's."""
    path = tmp_path / "state.sqlite3"
    monkeypatch.setenv("DOCKERPARALLEL_STATE", str(path))
    return path


@pytest.fixture
def container() -> DockerContainer:
    """A worker container packing four workers per container."""
    return worker_container()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def cloud(clock: ManualClock) -> FakeCloud:
    """A fake cloud on a manual clock: containers boot only when the test advances it."""
    return FakeCloud(clock)


@pytest.fixture
def provider(cloud: FakeCloud) -> FakeCloudProvider:
    return FakeCloudProvider(cloud)


@pytest.fixture
def cluster(provider: FakeCloudProvider, container: DockerContainer) -> DockerCluster:
    """A cluster that is not started."""
    return make_cluster(provider, container)


@pytest.fixture
def started(provider: FakeCloudProvider, container: DockerContainer) -> DockerCluster:
    """A cluster whose server runs, with no workers."""
    return started_cluster(provider, container)
