"""``dockerparallel demo``: a real cluster on local processes computing pi while it scales."""

from __future__ import annotations

import random
import tempfile
import time
import uuid
from pathlib import Path

import psutil

from rich.console import Console
from rich.progress import Progress

from ._progress import COLUMNS, wait_with_progress
from ._spec import ClusterSpec
from .cluster import DockerCluster
from .state import StateStore

SAMPLES_PER_TASK = 200_000


def estimate_hits(seed: int, samples: int = SAMPLES_PER_TASK) -> int:
    """Points of ``samples`` random ones in the unit square that fall inside the quarter circle."""
    rng = random.Random(seed)
    return sum(1 for _ in range(samples) if rng.random() ** 2 + rng.random() ** 2 <= 1.0)


def _compute(cluster: DockerCluster, console: Console, workers: int, tasks: int) -> float:
    """Run the Monte Carlo tasks; scale up a third of the way, down two thirds of the way."""
    from distributed import as_completed

    steps = {tasks // 3: workers + 2, (2 * tasks) // 3: max(1, workers // 2)}
    hits = 0
    with cluster.get_client() as client, Progress(*COLUMNS, console=console) as progress:
        bar = progress.add_task("computing pi", total=tasks)
        futures = client.map(estimate_hits, range(tasks), pure=False)
        for done, future in enumerate(as_completed(futures), start=1):
            hits += future.result()
            progress.update(bar, completed=done)
            if done in steps:
                cluster.scale(steps[done])
                progress.console.print(f"scaled to {steps[done]} workers while computing")
    return 4.0 * hits / (tasks * SAMPLES_PER_TASK)


def run(console: Console, err_console: Console, workers: int = 4, tasks: int = 64) -> float:
    """Start a local cluster, compute pi on it while scaling, stop it; return the estimate."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dockerparallel-demo-") as tmp:
        store = StateStore(Path(tmp) / "state.sqlite3")
        spec = ClusterSpec.for_provider(f"demo-{uuid.uuid4().hex[:6]}", "local", workers_per_container=2,
                                        expected=workers, memory=1024)
        cluster = spec.build(store)
        try:
            with err_console.status("starting the scheduler"):
                cluster.start_cluster(timeout=120)
            wait_with_progress(cluster, workers, 120, err_console, connected=True)
            console.print(f"cluster {spec.name}: {workers} workers at {cluster.scheduler_address}")
            pi = _compute(cluster, console, workers, tasks)
        finally:
            with err_console.status("stopping the cluster"):
                cluster.stop_cluster()
                cluster.cleanup(deep=True)
    left = [p.pid for p in psutil.Process().children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE]
    console.print(f"pi ~ {pi:.5f} from {tasks * SAMPLES_PER_TASK:,} samples "
                  f"({time.monotonic() - started:.1f} s); cluster stopped, {len(left)} process(es) left")
    if left:
        raise RuntimeError(f"processes left after the demo: {left}")
    return pi
