"""Fixtures for tests that run real Dask processes on the local-process provider."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Callable
from typing import Iterator

import psutil
import pytest

from dockerparallel import DockerCluster
from dockerparallel._wait import wait_until
from dockerparallel._spec import free_port, free_ports  # noqa: F401 - free_port is imported from here
from dockerparallel.backends.dask import DaskWorkerContainer
from dockerparallel.providers.local import LocalProcessProvider
from dockerparallel.state import StateStore


CLI = [sys.executable, "-m", "dockerparallel"]


def run_cli(state: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``dockerparallel ARGS`` in a subprocess on the state file ``state``."""
    env = {**os.environ, "DOCKERPARALLEL_STATE": str(state), "COLUMNS": "200"}
    result = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        pytest.fail(f"dockerparallel {' '.join(args)} failed: {result.stdout}{result.stderr}")
    return result


def live_children() -> list[psutil.Process]:
    """Descendants of this process that are not zombies."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.NoSuchProcess:
            pass
    return found


def processes_mentioning(text: str) -> list[psutil.Process]:
    """Live processes anywhere whose command line contains ``text``."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] != psutil.STATUS_ZOMBIE and text in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


def wait_for(condition: Callable[[], bool], timeout: float = 60.0, what: str = "a condition",
             poll: float = 0.2) -> None:
    """Poll ``condition`` until true; fail the test after ``timeout`` seconds."""
    try:
        wait_until(condition, timeout, what, poll)
    except TimeoutError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(tmp_path / "state.sqlite3")


@pytest.fixture
def dask_container() -> DaskWorkerContainer:
    return DaskWorkerContainer(host="127.0.0.1", scheduler_port=(ports := free_ports(2))[0], dashboard_port=ports[1],
                               max_workers_per_container=2)


@pytest.fixture
def local_cluster(store: StateStore, dask_container: DaskWorkerContainer) -> Iterator[DockerCluster]:
    name = f"localtest-{uuid.uuid4().hex[:8]}"
    cluster = DockerCluster(LocalProcessProvider(store, grace_period=3.0), dask_container, name=name, state=store)
    yield cluster
    cluster.stop_cluster()
    cluster.cleanup(deep=True)
