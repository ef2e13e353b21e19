"""Progress display for long waits (used by the CLI and the demo)."""

from __future__ import annotations

import time
from contextlib import ExitStack
from typing import TYPE_CHECKING, Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:
    from .cluster import DockerCluster

COLUMNS = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())

#: A counter: ``(workers counted, whether the wait is over)`` for a target number of workers.
Counter = Callable[[int], "tuple[int, bool]"]


def _counter(cluster: DockerCluster, stack: ExitStack, connected: bool) -> tuple[str, Counter]:
    """What to count: workers the provider runs or, with ``connected``, those the scheduler also sees.

    Counting connected workers, the wait is over when the scheduler sees
    exactly the target: at least that many running and connected, and no
    more connected (after a scale-down, until the removed workers have left).
    """
    if not connected:
        def running(target: int) -> tuple[int, bool]:
            done = cluster.get_worker_numbers().running
            return done, done >= target

        return "workers running", running
    client = stack.enter_context(cluster.get_client(set_as_default=False, timeout="60s"))

    def count(target: int) -> tuple[int, bool]:
        seen = len(client.scheduler_info(n_workers=-1)["workers"])
        done = min(seen, cluster.get_worker_numbers().running)
        return done, done >= target and seen <= target

    return "workers connected", count


def wait_with_progress(cluster: DockerCluster, workers: int, timeout: float, console: Console | None = None,
                       connected: bool = False) -> None:
    """Wait until ``workers`` workers run, with a progress bar.

    With ``connected``, a worker counts once the scheduler sees it too (the
    scheduler must be reachable from here, as on the local and Docker
    providers), and the wait lasts until the scheduler sees exactly
    ``workers`` workers (after a scale-down too; with ``workers=0``, until
    none is left).

    Raises
    ------
    TimeoutError
        When the workers are not there after ``timeout`` seconds.
    """
    with ExitStack() as stack:
        description, count = _counter(cluster, stack, connected)
        progress = stack.enter_context(Progress(*COLUMNS, console=console, transient=True))
        task = progress.add_task(description, total=workers)
        deadline = time.monotonic() + timeout
        while True:
            done, finished = count(workers)
            progress.update(task, completed=min(done, workers))
            if finished:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {done} of {workers} workers are up after {timeout:g} s"
                                   if done < workers else
                                   f"the scheduler still sees more than {workers} workers after {timeout:g} s")
            time.sleep(0.3)
