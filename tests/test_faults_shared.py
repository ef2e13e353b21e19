"""Fault injection with two processes on one state file.

Two cluster objects of one cluster — the one that started it and one rebuilt
from the state file, as another process has them (own provider object and
ledger; the same store and cloud) — take turns at random operations while the
fake cloud injects failures, throttling, partial launches, failed kills and
deaths, and either "process" crashes now and then (its objects are dropped
and rebuilt with ``DockerCluster.reconnect``). After every operation no live
worker is unknown to both ledgers and the store; once the faults stop the
expected number is reached; after stop nothing lives.
"""

from __future__ import annotations

import random
from typing import Any

from dockerparallel import DockerCluster, DockerParallelError
from dockerparallel.controller import Controller
from dockerparallel.state import StateStore
from dockerparallel.testing import FakeCloud, FakeCloudProvider

from ._helpers import make_cluster

NAME = "shared-faults"
SEED = 20_261_203
OPERATIONS = 300
FAULTS = {"failure_rate": 0.15, "throttle_rate": 0.1, "partial_launch_rate": 0.15, "kill_failure_rate": 0.2,
          "death_rate": 0.05}


def _faulty(cluster: DockerCluster, seed: int) -> None:
    provider: Any = cluster.provider
    provider.rng = random.Random(seed)
    for knob, rate in FAULTS.items():
        setattr(provider, knob, rate)


def _known(clusters: list[DockerCluster]) -> set[str]:
    known = {r.handle for r in StateStore().resources(NAME, "worker")}
    for cluster in clusters:
        known |= set(cluster.provider.worker_ledger.handles())  # type: ignore[attr-defined]
    return known


def _operate(rng: random.Random, cluster: DockerCluster, counts: dict[str, int]) -> None:
    choice = rng.choice(["scale", "scale", "update", "reconcile", "numbers"])
    counts[choice] = counts.get(choice, 0) + 1
    try:
        if choice == "scale":
            cluster.set_worker_number(rng.randint(0, 12))
        elif choice == "update":
            cluster.update()
        elif choice == "reconcile":
            Controller(cluster, backoff_base=0.001, backoff_max=0.001).reconcile()
        else:
            cluster.get_worker_numbers()
    except DockerParallelError:
        counts["errors"] = counts.get("errors", 0) + 1


def test_two_processes_under_faults_never_leak(summary_lines: list[str]) -> None:
    rng = random.Random(SEED)
    cloud = FakeCloud()
    first = make_cluster(FakeCloudProvider(cloud), name=NAME, worker_number=4)
    first.start_cluster(timeout=5)
    clusters = [first, DockerCluster.reconnect(NAME)]
    for index, cluster in enumerate(clusters):
        _faulty(cluster, SEED + index)
    counts: dict[str, int] = {}
    for _ in range(OPERATIONS):
        who = rng.randrange(2)
        if rng.random() < 0.05:  # this process crashes between calls: a new one reconnects
            counts["crash"] = counts.get("crash", 0) + 1
            clusters[who] = _reconnect_until_it_works()
            _faulty(clusters[who], rng.randrange(10**6))
        _operate(rng, clusters[who], counts)
        leaked = {c.id for c in cloud.live(NAME, "worker")} - _known(clusters)
        assert not leaked, f"workers nobody knows: {leaked}"
    for cluster in clusters:
        cluster.provider.faults_off()  # type: ignore[attr-defined]
    clusters[0].update()
    clusters[0].update()
    record = StateStore().load_cluster(NAME)
    assert record is not None
    assert cloud.live_workers(NAME) >= record.spec["expected"]
    clusters[1].stop_cluster()
    assert cloud.live() == [] and StateStore().load_cluster(NAME) is None
    summary_lines.append(f"two processes on one state file under faults (seed {SEED}): {OPERATIONS} operations "
                         f"{dict(sorted(counts.items()))}; no leak, nothing left after stop")


def _reconnect_until_it_works() -> DockerCluster:
    for _ in range(20):
        try:
            return DockerCluster.reconnect(NAME)
        except DockerParallelError:
            continue
    raise AssertionError("reconnect kept failing")
