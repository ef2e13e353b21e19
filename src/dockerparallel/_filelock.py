"""A per-cluster lock shared by processes: an ``fcntl.flock`` on a file beside the state file.

The OS releases it when its holder dies, so a crashed process never keeps a
cluster locked.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from contextlib import suppress
from pathlib import Path
from types import TracebackType

from ._errors import StateStoreError
from ._validation import check_seconds

logger = logging.getLogger("dockerparallel.state")

#: Seconds between two tries to take a cluster lock that another process holds.
_LOCK_POLL = 0.02


class ClusterLock:
    """An exclusive lock on one cluster (get one with :meth:`StateStore.cluster_lock`).

    An ``fcntl.flock`` on a file beside the state file: the OS releases it
    when its holder dies. The holder writes its pid into the file. The thread
    that holds it may take it again (calls nest; each needs a :meth:`release`);
    other threads, other lock objects on the file and other processes wait.

    Parameters
    ----------
    path : Path
        The lock file (created with mode 0600, in a directory of mode 0700).
    name : str
        The cluster's name, for messages.
    timeout : float, optional
        Seconds ``with lock:`` waits (default: as long as it takes).
    """

    _fd: int | None
    _owner: int | None

    def __init__(self, path: Path, name: str, timeout: float | None = None) -> None:
        self.path = Path(path)
        self.name = name
        self.timeout = None if timeout is None else check_seconds(timeout, "timeout")
        self._mutex, self._fd, self._count, self._owner = threading.RLock(), None, 0, None
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"ClusterLock({self.name!r}, {str(self.path)!r}, held={self.held})"

    @property
    def held(self) -> bool:
        """Whether the calling thread holds the lock."""
        return self._pid == os.getpid() and self._count > 0 and self._owner == threading.get_ident()

    def acquire(self, timeout: float | None = None) -> None:
        """Take the lock, waiting up to ``timeout`` seconds (default: as long as it takes).

        Raises
        ------
        TimeoutError
            If the lock is not free in time (0 tries once); names the cluster, the file and the holder's pid.
        StateStoreError
            If the lock file cannot be created.
        """
        timeout = None if timeout is None else check_seconds(timeout, "timeout")
        deadline = None if timeout is None else time.monotonic() + timeout
        self._forget_after_fork()
        if not self._mutex.acquire(timeout=-1 if timeout is None else timeout):
            raise self._timeout_error(timeout)
        try:
            if self._count == 0:
                self._fd = self._lock_file(deadline, timeout)
        except BaseException:
            self._mutex.release()
            raise
        self._count += 1
        self._owner = threading.get_ident()

    def release(self) -> None:
        """Undo one :meth:`acquire`; the last one frees the lock.

        Raises
        ------
        RuntimeError
            If the calling thread does not hold the lock.
        """
        if not self.held:
            raise RuntimeError(f"the lock of cluster {self.name!r} is not held by this thread")
        self._count -= 1
        if self._count == 0 and self._fd is not None:
            self._owner, fd, self._fd = None, self._fd, None
            self._unlock(fd)
        self._mutex.release()

    def __enter__(self) -> ClusterLock:
        self.acquire(self.timeout)
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.release()

    def __del__(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            with suppress(Exception):
                os.close(self._fd)  # an abandoned lock is freed

    # -- helpers ----------------------------------------------------------------------

    def _forget_after_fork(self) -> None:
        """In a child process, drop the state inherited from the parent (its holding is not ours)."""
        if self._pid == os.getpid():
            return
        if self._fd is not None:
            with suppress(OSError):
                os.close(self._fd)  # the parent's descriptor (and its flock) stays
        self._mutex, self._fd, self._count, self._owner = threading.RLock(), None, 0, None
        self._pid = os.getpid()

    def _open(self) -> int:
        try:
            self.path.parent.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.path.parent.mkdir(mode=0o700, exist_ok=True)
            flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
            return os.open(self.path, flags, 0o600)
        except OSError as exc:
            raise StateStoreError(f"cannot create lock file {self.path}: {exc.strerror or exc}") from exc

    def _lock_file(self, deadline: float | None, timeout: float | None) -> int:
        """Open the file and flock it (polling until ``deadline``); write our pid into it."""
        fd = self._open()
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise self._timeout_error(timeout) from None
                    time.sleep(_LOCK_POLL)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        logger.debug("locked cluster %r (%s)", self.name, self.path)
        return fd

    def _unlock(self, fd: int) -> None:
        with suppress(OSError):
            os.ftruncate(fd, 0)  # no stale pid for the next waiter to name
            fcntl.flock(fd, fcntl.LOCK_UN)  # explicitly: a forked child may share the descriptor
        os.close(fd)
        logger.debug("unlocked cluster %r (%s)", self.name, self.path)

    def _timeout_error(self, timeout: float | None) -> TimeoutError:
        try:
            holder: int | None = int(self.path.read_text().strip())
        except (OSError, ValueError):
            holder = None
        who = "another process" if holder is None else f"pid {holder}"
        if holder == os.getpid():
            who += " (this process: another thread or lock object)"
        return TimeoutError(f"cluster {self.name!r} is locked, held by {who}: "
                            f"lock file {self.path} was not free within {timeout or 0:g} s")
