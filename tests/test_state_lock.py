"""The per-cluster lock: one process (and one thread) at a time, freed by the OS when its holder dies."""

from __future__ import annotations

import multiprocessing
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from dockerparallel.state import ClusterLock, StateStore

HOLDER = textwrap.dedent("""
    import sys
    from dockerparallel.state import StateStore
    lock = StateStore(sys.argv[1]).cluster_lock(sys.argv[2])
    lock.acquire()
    print("locked", flush=True)
    sys.stdin.readline()
    lock.release()
    print("released", flush=True)
    sys.stdin.readline()
""")


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(tmp_path / "state.sqlite3")


@pytest.fixture
def holder(store: StateStore) -> Iterator[subprocess.Popen[str]]:
    """Another process that holds the lock of cluster ``c`` until told (a line on stdin) to release it."""
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(store.path), "c"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "locked", process.stderr
        yield process
    finally:
        process.kill()
        process.wait(timeout=10)


def _tell(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.write("go\n")
    process.stdin.flush()


def test_the_lock_file_sits_beside_the_state_file_and_is_private(store: StateStore) -> None:
    lock = store.cluster_lock("c")
    assert isinstance(lock, ClusterLock) and not lock.held
    assert lock.path == store.path.parent / "locks" / "state.sqlite3.c.lock"
    with lock as same:
        assert same is lock and lock.held
        assert lock.path.read_text().strip() == str(os.getpid())
    assert not lock.held
    assert stat.S_IMODE(lock.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(lock.path.parent.stat().st_mode) == 0o700


def test_a_second_process_waits_until_the_first_releases(store: StateStore,
                                                          holder: subprocess.Popen[str]) -> None:
    lock = store.cluster_lock("c")
    taken, done = threading.Event(), threading.Event()

    def take() -> None:
        with store.cluster_lock("c", timeout=30):
            taken.set()
            done.wait(30)

    waiter = threading.Thread(target=take)
    waiter.start()
    try:
        assert not taken.wait(0.5)  # the holder has it
        _tell(holder)
        assert taken.wait(10)
        assert holder.stdout is not None and holder.stdout.readline().strip() == "released"
        with pytest.raises(TimeoutError):
            lock.acquire(timeout=0)  # now the waiter holds it
    finally:
        done.set()
        waiter.join(30)
    with lock:
        pass


def test_a_timeout_names_the_cluster_the_file_and_the_holder(store: StateStore,
                                                             holder: subprocess.Popen[str]) -> None:
    lock = store.cluster_lock("c")
    started = time.monotonic()
    with pytest.raises(TimeoutError) as excinfo:
        lock.acquire(timeout=0.3)
    assert 0.25 < time.monotonic() - started < 5
    message = str(excinfo.value)
    assert "'c'" in message and str(lock.path) in message and f"pid {holder.pid}" in message, message
    assert not lock.held
    with pytest.raises(TimeoutError, match="'c'"):
        with store.cluster_lock("c", timeout=0):
            pass


def test_the_lock_of_a_killed_holder_is_free_at_once(store: StateStore, holder: subprocess.Popen[str]) -> None:
    lock = store.cluster_lock("c")
    with pytest.raises(TimeoutError):
        lock.acquire(timeout=0)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=10)
    lock.acquire(timeout=0)
    assert lock.held
    lock.release()


def test_the_holding_thread_may_take_it_again(store: StateStore) -> None:
    lock, other = store.cluster_lock("c"), store.cluster_lock("c")
    lock.acquire()
    lock.acquire(timeout=0)
    with lock:
        assert lock.held
    lock.release()
    assert lock.held  # one acquire is still to be undone
    with pytest.raises(TimeoutError):
        other.acquire(timeout=0)
    lock.release()
    assert not lock.held
    with pytest.raises(RuntimeError, match="not held"):
        lock.release()
    other.acquire(timeout=0)
    other.release()


def test_two_lock_objects_and_two_threads_of_one_process_exclude_each_other(store: StateStore) -> None:
    first, second = store.cluster_lock("c"), StateStore(store.path).cluster_lock("c")
    errors: list[BaseException] = []

    def try_to_take() -> None:
        try:
            first.acquire(timeout=0.2)
        except TimeoutError as exc:
            errors.append(exc)

    with first:
        with pytest.raises(TimeoutError, match="this process"):
            second.acquire(timeout=0.1)
        thread = threading.Thread(target=try_to_take)
        thread.start()
        thread.join(10)
        assert len(errors) == 1 and first.held
    with second:
        thread = threading.Thread(target=try_to_take)
        thread.start()
        thread.join(10)
        assert len(errors) == 2


def test_locks_of_other_clusters_and_other_stores_are_independent(store: StateStore, tmp_path: Path) -> None:
    with store.cluster_lock("c"):
        with store.cluster_lock("d"), StateStore(tmp_path / "other" / "state.sqlite3").cluster_lock("c"):
            pass


def _child_sees_the_lock_held_elsewhere(lock: ClusterLock) -> None:
    assert not lock.held
    try:
        lock.acquire(timeout=0.1)
    except TimeoutError:
        os._exit(0)
    os._exit(1)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_a_forked_child_does_not_inherit_the_holding(store: StateStore) -> None:
    lock = store.cluster_lock("c")
    with lock:
        child = multiprocessing.get_context("fork").Process(target=_child_sees_the_lock_held_elsewhere, args=(lock,))
        child.start()
        child.join(30)
        assert child.exitcode == 0
        assert lock.held
    lock.acquire(timeout=0)  # the child's exit did not leave the lock taken
    lock.release()


@pytest.mark.parametrize("name, error", [("", ValueError), ("../x", ValueError), (5, TypeError)])
def test_a_bad_name_or_timeout_is_refused(store: StateStore, name: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        store.cluster_lock(name)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        store.cluster_lock("c").acquire(timeout=-1)
