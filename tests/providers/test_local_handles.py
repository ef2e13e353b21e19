"""Local-process handles: clock-independent start stamps, bad handles, and store-specific labels."""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from dockerparallel.container import DockerContainer, DockerHardware
from dockerparallel.providers import local
from dockerparallel.providers.local import ENV_STORE, LocalProcessProvider, labelled_processes
from dockerparallel.state import StateStore

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/stat")


SLEEP = DockerContainer(image="ignored", command=("sleep", "60"))


@dataclass
class View:
    """What a provider sees of a cluster."""

    name: str = "handles"
    verbose: int = 0
    worker_container: DockerContainer = SLEEP
    server_container: DockerContainer = SLEEP


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[LocalProcessProvider]:
    """A provider whose every process group is SIGKILLed after the test."""
    made = LocalProcessProvider(StateStore(tmp_path / "state.sqlite3"), grace_period=1.0)
    try:
        yield made
    finally:
        for pid, popen in list(made._children.items()):
            _kill_group(pid)
            popen.wait(timeout=10)


def _start(provider: LocalProcessProvider) -> tuple[str, int]:
    [handle] = provider.run_docker_worker_containers(View(), SLEEP, DockerHardware(), 1)
    return handle, int(handle.split("-")[1])


@linux_only
def test_the_handle_holds_the_start_time_in_clock_ticks(provider: LocalProcessProvider) -> None:
    handle, pid = _start(provider)
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    ticks = int(stat[stat.rindex(b")") + 2:].split()[19])
    assert handle == f"local-{pid}-{ticks}"


def test_a_stepped_wall_clock_does_not_make_a_live_process_look_stopped(
        provider: LocalProcessProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    handle, pid = _start(provider)
    assert provider.get_docker_worker_status(View(), [handle]) == ["running"]
    # The wall clock is stepped: psutil's boot time, hence every create_time, moves.
    monkeypatch.setattr(psutil.Process, "create_time", lambda self: 1e9)
    monkeypatch.setattr(psutil, "boot_time", lambda: 1e9)
    assert provider.get_docker_worker_status(View(), [handle]) == ["running"]
    assert provider.kill_docker_worker_containers(View(), [handle]) == [True]
    assert _gone(pid)
    assert provider.get_docker_worker_status(View(), [handle]) == ["stopped"]


@pytest.mark.parametrize("handle", [
    "garbage", "local-", "local-x-y", "local-1-2-3", "docker-1-2", f"local-{os.getpid()}-1", "local-999999999-1",
])
def test_a_bad_or_stale_handle_is_stopped_and_killing_it_is_harmless(provider: LocalProcessProvider,
                                                                      handle: str) -> None:
    assert provider.get_docker_worker_status(View(), [handle]) == ["stopped"]
    assert provider.kill_docker_worker_containers(View(), [handle]) == [True]


def test_a_reused_pid_is_not_taken_for_the_process(provider: LocalProcessProvider) -> None:
    handle, pid = _start(provider)
    _, _, stamp = handle.split("-")
    other = f"local-{pid}-{int(stamp) - 1}"
    assert provider.get_docker_worker_status(View(), [other]) == ["stopped"]
    provider.kill_docker_worker_containers(View(), [other])
    assert provider.get_docker_worker_status(View(), [handle]) == ["running"]


def test_an_old_form_handle_is_read_without_a_crash(provider: LocalProcessProvider) -> None:
    """A handle of the old form (pid and psutil create_time in ms) still names its process."""
    handle, pid = _start(provider)
    old = f"local-{pid}-{int(psutil.Process(pid).create_time() * 1000)}"
    assert provider.get_docker_worker_status(View(), [old]) == ["running"]
    assert provider.kill_docker_worker_containers(View(), [old]) == [True]
    assert _gone(pid)


def test_elsewhere_the_stamp_falls_back_to_psutil(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "_PROC_STAT", False)
    stamp = local.start_stamp(os.getpid())
    assert stamp == int(psutil.Process().create_time() * 1000)
    assert local.started_at(os.getpid(), stamp) and not local.started_at(os.getpid(), stamp + 1)


# -- labels are specific to the absolute path of the store ----------------------------------------------------


def test_labels_of_two_directories_with_the_same_relative_state_path_differ(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``DOCKERPARALLEL_STATE=state.sqlite3`` in two directories: two stores, two clusters named ``job``."""
    monkeypatch.setenv("DOCKERPARALLEL_STATE", "state.sqlite3")
    stores = []
    for place in ("one", "two"):
        (tmp_path / place).mkdir()
        monkeypatch.chdir(tmp_path / place)
        stores.append(StateStore())
    first, second = stores
    provider = LocalProcessProvider(first, grace_period=1.0)
    try:
        [handle] = provider.run_docker_worker_containers(View("job"), SLEEP, DockerHardware(), 1)
        pid = int(handle.split("-")[1])
        assert psutil.Process(pid).environ()[ENV_STORE] == str(tmp_path / "one" / "state.sqlite3")
        assert labelled_processes("job", first) == {handle: ("worker", 1)}  # seen from directory two
        assert labelled_processes("job", second) == {}
        LocalProcessProvider(second).cleanup_docker_cluster(View("job"), deep=True)  # 'down job' in two
        assert provider.get_docker_worker_status(View("job"), [handle]) == ["running"]
    finally:
        for pid, popen in list(provider._children.items()):
            _kill_group(pid)
            popen.wait(timeout=10)
