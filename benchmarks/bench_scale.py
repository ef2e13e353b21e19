"""Benchmark of scaling on FakeCloudProvider: a 0 -> 1000 scale-up, and one reconcile cycle over 10,000 handles.

Run: ``python benchmarks/bench_scale.py``. Exits 1 if a goal line says FAIL.

Scale-up. A fake cloud on the real clock whose every call sleeps 20 ms
(``latency``), that starts at most 10 containers per run call and boots each
container in 0.5 s; one worker per container, so 1000 containers. The fake
declares those limits (``launch_capabilities``), so the managed layer splits
the launch into 100 run calls of 10 workers and runs up to
``max_concurrent_calls`` of them at once. Wall time is measured from
``set_worker_number(1000)`` until ``get_worker_numbers().running == 1000``,
polling every 5 ms (each poll is one status call of 20 ms). Each
concurrency runs twice: with a state store in a temporary directory (the
default: every handle is recorded as it arrives) and without one
(``state=False``), which shows what recording the handles costs.

The limit is what no client can beat on this cloud: the last run call cannot
end before ``ceil(calls / concurrency) * 20 ms``, where ``calls`` =
``ceil(1000 / 10)`` is the fewest run calls allowed, and its containers then
need the 0.5 s boot. Goal: wall time <= 1.2 x limit, at each concurrency.

Reconcile. 10,000 running one-worker containers at zero latency; one
:meth:`Controller.reconcile` cycle (server check, status refresh of the 10,000
handles, stuck-worker bookkeeping, scale decision, intent record in the
state store) is timed with ``time.process_time`` (CPU), best of 7. Goal:
< 20 ms CPU. (The cluster is filled without a store, which is attached
afterwards: recording 10,000 handles one by one would take seconds.)
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

from dockerparallel import DockerCluster, DockerContainer
from dockerparallel.controller import Controller
from dockerparallel.state import StateStore
from dockerparallel.testing import FakeCloud, FakeCloudProvider

from _goals import exit_status, verdict  # benchmarks/ is on sys.path when a benchmark runs as a script

WORKERS = 1_000
LATENCY = 0.020
CONTAINERS_PER_CALL = 10
BOOT = 0.5
CONCURRENCY = (1, 10)
POLL = 0.005
RATIO_GOAL = 1.2

HANDLES = 10_000
REPEATS = 7
CPU_GOAL_MS = 20.0

RUN, STATUS = "run_docker_worker_containers", "get_docker_worker_status"


def new_cluster(provider: FakeCloudProvider, store: StateStore | None, name: str) -> DockerCluster:
    """A started cluster of one-worker containers (the server boots at once)."""
    container = DockerContainer("img", name="worker", command=["w"], max_workers_per_container=1)
    cluster = DockerCluster(provider, container, server_container=container, name=name,
                            state=store if store is not None else False)
    cluster.start_cluster(timeout=5)
    return cluster


def scale_up(concurrency: int, store: StateStore | None) -> bool:
    """Time 0 -> WORKERS at ``concurrency`` run calls at once; print one line; return whether it passed."""
    provider = FakeCloudProvider(FakeCloud(), latency=LATENCY, max_containers_per_call=CONTAINERS_PER_CALL,
                                 max_concurrent_calls=concurrency)
    cluster = new_cluster(provider, store, f"bench-scale-{concurrency}")
    provider.boot_delay = BOOT
    provider.calls.clear()
    start = time.perf_counter()
    cluster.set_worker_number(WORKERS)
    while cluster.get_worker_numbers().running < WORKERS:
        time.sleep(POLL)
    wall = time.perf_counter() - start
    calls = math.ceil(WORKERS / CONTAINERS_PER_CALL)
    limit = BOOT + math.ceil(calls / concurrency) * LATENCY
    ratio = wall / limit
    goal = f"0->{WORKERS} at concurrency {concurrency}, {'state store' if store else 'no store'}"
    print(f"0->{WORKERS} at concurrency {concurrency:>2}, {'state store' if store else 'no store   '}: "
          f"wall {wall:.3f} s; provider calls "
          f"{sum(provider.calls.values())} (run {provider.calls[RUN]}, status {provider.calls[STATUS]}); "
          f"limit {limit:.3f} s = boot {BOOT} s + ceil({calls} calls / {concurrency}) x {LATENCY * 1000:.0f} ms; "
          f"ratio {ratio:.2f} (goal <= {RATIO_GOAL}) "
          f"{verdict(ratio <= RATIO_GOAL, goal)}")
    provider.latency = 0.0
    cluster.stop_cluster()
    return ratio <= RATIO_GOAL


def reconcile_cpu(store: StateStore) -> bool:
    """Best CPU time of one reconcile cycle over HANDLES handles; print one line; return whether it passed."""
    provider = FakeCloudProvider(FakeCloud())
    cluster = new_cluster(provider, None, "bench-reconcile")
    cluster.set_worker_number(HANDLES)
    cluster.store = store  # each cycle records its intent, as with the default store
    controller = Controller(cluster)
    assert controller.reconcile(), "the cluster should be complete"
    best = math.inf
    for _ in range(REPEATS):
        start = time.process_time()
        controller.reconcile()
        best = min(best, time.process_time() - start)
    millis = best * 1000
    print(f"reconcile cycle over {len(provider.worker_ledger)} handles at zero latency: "
          f"{millis:.1f} ms CPU (best of {REPEATS}; goal < {CPU_GOAL_MS:g} ms) "
          f"{verdict(millis < CPU_GOAL_MS, 'reconcile cycle CPU time')}")
    cluster.stop_cluster()
    return millis < CPU_GOAL_MS


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        store = StateStore(Path(folder) / "state.sqlite3")
        results = [scale_up(concurrency, where) for concurrency in CONCURRENCY for where in (store, None)]
        results.append(reconcile_cpu(store))
    print(f"overall: {'PASS' if all(results) else 'FAIL'}")
    return exit_status()


if __name__ == "__main__":
    raise SystemExit(main())
