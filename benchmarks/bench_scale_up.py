"""Benchmark of a large scale-up on an O(1) provider: 0 -> 40,000 and 0 -> 100,000 workers, 4 per container.

Run: ``python benchmarks/bench_scale_up.py``. Exits 1 if a goal line says FAIL.

The provider answers at once (its run call builds the handle list and
nothing else), so what is measured is the library: checking the run
result, recording the handles in the ledger, the scale decision. Wall time
of ``set_worker_number(n)`` on a running cluster without a state store,
best of 5.

Baseline, measured in the same run: the same result recorded the way the
library did it before, handle by handle (each handle checked, then added to
the ledger one at a time). Reference: the R original on the same workload,
measured on this kind of machine when the goal was set (0.026 s for 40,000
and 0.075 s for 100,000 workers); R is not run here. Goal: at most R's time.
"""

from __future__ import annotations

import time
from typing import Any

from _goals import exit_status, verdict

from dockerparallel import DockerCluster, DockerContainer, ManagedCloudProvider, ServerAddress
from dockerparallel.managed import WorkerLedger

R_SECONDS = {40_000: 0.026, 100_000: 0.075}
PER_CONTAINER = 4
REPEATS = 5


class Instant(ManagedCloudProvider):
    """A provider whose every call returns at once."""

    tls_by_default = False

    def __init__(self) -> None:
        self.started = 0
        self.up = False

    def run_docker_server(self, cluster: Any, container: Any, hardware: Any, verbose: int = 0) -> None:
        self.up = True

    def stop_docker_server(self, cluster: Any, verbose: int = 0) -> None:
        self.up = False

    def get_server_status(self, cluster: Any, verbose: int = 0) -> str:
        return "running" if self.up else "stopped"

    def get_docker_server_ip(self, cluster: Any, verbose: int = 0) -> ServerAddress:
        return ServerAddress(None, None, "127.0.0.1", 8786)

    def run_docker_worker_containers(self, cluster: Any, container: Any, hardware: Any, worker_number: int,
                                     verbose: int = 0) -> list[str]:
        handles: list[str] = []
        for start in range(0, worker_number, PER_CONTAINER):
            self.started += 1
            handles += [f"c{self.started}"] * min(PER_CONTAINER, worker_number - start)
        return handles

    def get_docker_worker_status(self, cluster: Any, worker_handles: list[str], verbose: int = 0) -> list[str]:
        return ["running"] * len(worker_handles)

    def kill_docker_worker_containers(self, cluster: Any, worker_handles: list[str], verbose: int = 0) -> list[bool]:
        return [True] * len(worker_handles)


def scale_up(workers: int) -> float:
    """Best wall time of ``set_worker_number(workers)`` from 0."""
    container = DockerContainer("img", command=["w"], max_workers_per_container=PER_CONTAINER)
    best = float("inf")
    for _ in range(REPEATS):
        cluster = DockerCluster(Instant(), container, server_container=container, state=False, name="bench-up")
        cluster.start_cluster(timeout=5)
        started = time.perf_counter()
        cluster.set_worker_number(workers)
        best = min(best, time.perf_counter() - started)
        assert cluster.provider.worker_ledger.workers() == workers  # type: ignore[attr-defined]
        cluster.stop_cluster()
    return best


def per_handle_baseline(workers: int) -> float:
    """Best time to check and record the same run result handle by handle."""
    handles = Instant().run_docker_worker_containers(None, None, None, workers)
    best = float("inf")
    for _ in range(REPEATS):
        ledger = WorkerLedger()
        started = time.perf_counter()
        checked = [h for h in handles if isinstance(h, str) and h]
        known = {h for h in checked if h in ledger}
        for handle in checked:
            ledger.add([handle])
        assert not known and len(checked) == workers
        best = min(best, time.perf_counter() - started)
    return best


def main() -> int:
    for workers, r_seconds in R_SECONDS.items():
        ours, baseline = scale_up(workers), per_handle_baseline(workers)
        print(f"0->{workers:,} workers ({PER_CONTAINER} per container, O(1) provider): ours {ours * 1000:.1f} ms; "
              f"per-handle recording (measured) {baseline * 1000:.1f} ms, {baseline / ours:.1f}x slower; "
              f"R original {r_seconds * 1000:.0f} ms (reference); goal <= R "
              f"{verdict(ours <= r_seconds, f'0->{workers} within R time')}")
    return exit_status()


if __name__ == "__main__":
    raise SystemExit(main())
