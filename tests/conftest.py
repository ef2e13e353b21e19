"""Fixtures shared by every test module."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import settings

from dockerparallel import DockerCluster, DockerContainer
from dockerparallel.testing import FakeCloud, FakeCloudProvider

from ._helpers import ManualClock, make_cluster, started_cluster, worker_container

#: In CI (or with DOCKERPARALLEL_REQUIRE_DOCKER=1 / DOCKERPARALLEL_STRICT=1) a test that is
#: skipped, xfailed, xpassed or deselected fails the session: see tests/_strict.py.
pytest_plugins = ["tests._strict"]

#: Hypothesis in CI: the same examples on every run (a failure there is reproducible with
#: the printed blob); locally: new random examples on every run.
settings.register_profile("ci", derandomize=True, max_examples=100, deadline=None, print_blob=True,
                          database=None)
settings.register_profile("dev", derandomize=False, deadline=None)


def hypothesis_profile(environ: Mapping[str, str] = os.environ) -> str:
    """The Hypothesis profile for this environment: ``HYPOTHESIS_PROFILE``, else "ci" in CI, else "dev"."""
    from ._strict import strict_requested  # imported by pytest_plugins first, so that pytest rewrites it

    return environ.get("HYPOTHESIS_PROFILE") or ("ci" if strict_requested(environ) else "dev")


def pytest_configure(config: pytest.Config) -> None:
    """Load the Hypothesis profile before any test module builds its settings."""
    settings.load_profile(hypothesis_profile())


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
