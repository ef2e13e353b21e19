"""Benchmark of starting a cluster: one boot, not two.

Run: ``python benchmarks/bench_start.py [--repeat N]``. Exits 1 if a goal line says FAIL.

Fake cloud. Every container (server and workers) boots in B = 1 s. Time
from ``start_cluster()`` until every worker runs, for 8 and 64 workers (4
per container), with the early start (workers start once the server's
address is known, as ``start_cluster`` does) and, in the same run, the
sequential start it replaced (start the server, wait until it runs, then
start the workers: ``start_cluster()`` with no workers, then
``set_worker_number(n)``). Goal: early start <= 1.15 x B.

Real processes. The local provider, 4 workers at 2 per process: time from
``start_cluster()`` until the scheduler sees 4 workers, against
``distributed.LocalCluster(n_workers=4, processes=True)`` in the same run
(until its scheduler sees 4 workers), both with their defaults. The two
sides alternate for ``--repeat`` rounds (a warm-up round first, not
counted); each round's figures are printed, then the medians and their
ratio. Goal: median <= 1.1 x LocalCluster's. (Docker: ``bench_docker.py``
measures 16 workers connected against a ``docker run`` loop; its clusters
start early too.)

Chart (``--charts DIR``, default ``docs/assets/charts``; ``--no-charts``):
early against sequential start on the fake cloud, and the local processes
against LocalCluster; drawn only when matplotlib imports (``benchmarks/_charts.py``).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import _charts
from _goals import exit_status, verdict

# dockerparallel is imported inside the functions: LocalCluster's worker processes are spawned and
# import this module again (as __mp_main__), and should not pay for more than a user's script would.
if TYPE_CHECKING:
    from dockerparallel.state import StateStore

BOOT = 1.0
FAKE_GOAL = 1.15
LOCAL_GOAL = 1.1


def fake_start(workers: int, early: bool, store: StateStore) -> float:
    """Seconds until ``workers`` run on a fake cloud whose containers boot in BOOT seconds."""
    from dockerparallel import DockerCluster, DockerContainer
    from dockerparallel.testing import FakeCloud, FakeCloudProvider

    provider = FakeCloudProvider(FakeCloud(), boot_delay=BOOT)
    container = DockerContainer("img", name="worker", command=["w"], max_workers_per_container=4)
    cluster = DockerCluster(provider, container, server_container=container, state=store,
                            name=f"bench-start-{workers}-{'early' if early else 'sequential'}",
                            worker_number=workers if early else 0)
    started = time.perf_counter()
    cluster.start_cluster(timeout=30)
    if not early:
        cluster.set_worker_number(workers)
    while cluster.get_worker_numbers().running < workers:
        time.sleep(0.005)
    elapsed = time.perf_counter() - started
    cluster.stop_cluster()
    return elapsed


def local_start(store: StateStore) -> float:
    """Seconds from building a local-process cluster until its scheduler sees 4 workers (2 per process).

    The container has its defaults (on Linux: workers forked by their nanny,
    no worker dashboards; the scheduler's dashboard on).
    """
    from dockerparallel import DockerCluster
    from dockerparallel._spec import free_ports
    from dockerparallel.backends.dask import DaskWorkerContainer
    from dockerparallel.providers.local import LocalProcessProvider

    ports = free_ports(2)
    started = time.perf_counter()  # from the call, as for LocalCluster: building the cluster object counts too
    container = DaskWorkerContainer(host="127.0.0.1", scheduler_port=ports[0], dashboard_port=ports[1],
                                    max_workers_per_container=2)
    cluster = DockerCluster(LocalProcessProvider(store, grace_period=1.0), container, worker_number=4, state=store)
    cluster.start_cluster(timeout=60)
    cluster.wait_for_workers(4, timeout=60)
    elapsed = time.perf_counter() - started
    cluster.stop_cluster()
    return elapsed


def local_cluster_start() -> float:
    """Seconds until ``distributed.LocalCluster(n_workers=4, processes=True)`` has 4 workers."""
    from distributed import LocalCluster

    started = time.perf_counter()
    with LocalCluster(n_workers=4, threads_per_worker=1, processes=True, dashboard_address=":0",
                      host="127.0.0.1") as cluster:
        cluster.wait_for_workers(4, timeout=60)
        elapsed = time.perf_counter() - started
    return elapsed


def local_rounds(store: StateStore, rounds: int) -> tuple[list[float], list[float]]:
    """Seconds of :func:`local_start` and :func:`local_cluster_start`, alternating, ``rounds`` times each.

    A first round warms both up (the imports of the benchmark process) and is
    not counted; the order within a round alternates too, so neither side
    always runs right after the other's processes exit.
    """
    local_start(store), local_cluster_start()
    ours: list[float] = []
    theirs: list[float] = []
    for index in range(rounds):
        if index % 2:
            theirs.append(local_cluster_start())
            ours.append(local_start(store))
        else:
            ours.append(local_start(store))
            theirs.append(local_cluster_start())
        print(f"  round {index + 1}: dockerparallel {ours[-1]:.3f} s, LocalCluster {theirs[-1]:.3f} s", flush=True)
    return ours, theirs


def main() -> int:
    from dockerparallel.state import StateStore

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="rounds of the local comparison (default 7)")
    _charts.add_option(parser)
    args = parser.parse_args()
    chart: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory() as folder:
        store = StateStore(Path(folder) / "state.sqlite3")
        for workers in (8, 64):
            early, sequential = fake_start(workers, True, store), fake_start(workers, False, store)
            chart.append((f"{workers} workers", early, sequential))
            ratio = early / BOOT
            print(f"fake cloud, boot B = {BOOT:g} s, {workers} workers: early start {early:.3f} s ({ratio:.2f} x B); "
                  f"sequential {sequential:.3f} s ({sequential / BOOT:.2f} x B); goal early <= {FAKE_GOAL} x B "
                  f"{verdict(ratio <= FAKE_GOAL, f'fake {workers} workers')}")
        rounds = local_rounds(store, max(1, args.repeat))
    ours, theirs = (statistics.median(times) for times in rounds)
    ratio = ours / theirs
    print(f"local processes, 4 workers (2 per process), scheduler sees 4: dockerparallel {ours:.3f} s; "
          f"LocalCluster(n_workers=4, processes=True) {theirs:.3f} s; ratio {ratio:.2f} (medians of "
          f"{len(rounds[0])} alternating rounds; goal <= {LOCAL_GOAL}) {verdict(ratio <= LOCAL_GOAL, 'local start')}")
    _charts.draw("start", args.charts, _charts.start_chart, chart, boot=BOOT, local=(ours, theirs))
    return exit_status()


if __name__ == "__main__":
    raise SystemExit(main())
