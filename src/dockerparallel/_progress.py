"""Progress display for long waits (used by the CLI and the demo)."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .cluster import DockerCluster

COLUMNS = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())


def wait_with_progress(cluster: DockerCluster, workers: int, timeout: float, console: Console | None = None) -> None:
    """Wait until ``workers`` workers run, with a progress bar."""
    with Progress(*COLUMNS, console=console, transient=True) as progress:
        task = progress.add_task("workers running", total=workers)
        deadline = time.monotonic() + timeout
        while True:
            running = cluster.get_worker_numbers().running
            progress.update(task, completed=min(running, workers))
            if running >= workers:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {running} of {workers} workers run after {timeout:g} s")
            time.sleep(0.3)
