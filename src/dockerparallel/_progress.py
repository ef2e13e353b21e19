"""Progress display for long waits (used by the CLI and the demo)."""

from __future__ import annotations

import time
from contextlib import ExitStack
from typing import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .cluster import DockerCluster

COLUMNS = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())


def _counter(cluster: DockerCluster, stack: ExitStack, connected: bool) -> tuple[str, Callable[[], int]]:
    """What to count: workers the provider runs or, with ``connected``, those the scheduler also sees."""
    if not connected:
        return "workers running", lambda: cluster.get_worker_numbers().running
    client = stack.enter_context(cluster.get_client(set_as_default=False, timeout="60s"))

    def count() -> int:
        seen = len(client.scheduler_info(n_workers=-1)["workers"])
        return min(seen, cluster.get_worker_numbers().running)

    return "workers connected", count


def wait_with_progress(cluster: DockerCluster, workers: int, timeout: float, console: Console | None = None,
                       connected: bool = False) -> None:
    """Wait until ``workers`` workers run, with a progress bar.

    With ``connected``, a worker counts once the scheduler sees it too (the
    scheduler must be reachable from here, as on the local and Docker providers).
    """
    with ExitStack() as stack:
        description, count = _counter(cluster, stack, connected and workers > 0)
        progress = stack.enter_context(Progress(*COLUMNS, console=console, transient=True))
        task = progress.add_task(description, total=workers)
        deadline = time.monotonic() + timeout
        while True:
            done = count()
            progress.update(task, completed=min(done, workers))
            if done >= workers:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {done} of {workers} workers are up after {timeout:g} s")
            time.sleep(0.3)
