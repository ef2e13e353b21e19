"""Concurrency stress: every actor that changes a cluster's workers, at once, then stop.

Threads scale, update and read one cluster object; its healing controller
runs; an adaptive-scaling stand-in retires whole containers through the
lifecycle (as ``Adaptive`` does); a second cluster object built from the
state store (what another process has: its own provider object and ledger,
the same store and cloud) scales too. After every run the provider's live
workers equal the ledger, the store's rows and the expected number, and
after stop nothing lives.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
from typing import Any, Callable

import pytest

from dockerparallel import DockerCluster, DockerParallelError
from dockerparallel.state import StateStore
from dockerparallel.testing import FakeCloud, FakeCloudProvider

from ._helpers import make_cluster, worker_container

NAME = "stress"
RUNS = 50
PER_CONTAINER = 2


def _actor(cluster: DockerCluster, seed: int, errors: list[BaseException]) -> Callable[[], None]:
    rng = random.Random(seed)

    def act() -> None:
        for _ in range(6):
            try:
                choice = rng.random()
                if choice < 0.5:
                    cluster.set_worker_number(PER_CONTAINER * rng.randint(0, 5))
                elif choice < 0.75:
                    cluster.update()
                else:
                    cluster.get_worker_numbers()
            except DockerParallelError:
                pass  # a cluster stopped by another actor refuses nothing silently: it only records
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                errors.append(exc)

    return act


def _retirer(cluster: DockerCluster, errors: list[BaseException]) -> Callable[[], None]:
    """Adaptive scaling's scale-down: lower the expected number, and one container exits gracefully."""
    provider: Any = cluster.provider

    def act() -> None:
        try:
            live = provider.cloud.live(NAME, "worker")
            if not live:
                return
            victim = live[0]
            cluster.lifecycle.retire(max(0, cluster.expected_workers - victim.workers),
                                     lambda: provider.cloud.stop(victim.id), timeout=2.0)
        except DockerParallelError:
            pass
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    return act


def _settled_counts(cluster: DockerCluster) -> tuple[int, int, int, int]:
    """(live workers, ledger workers, store rows' workers, expected) once the cluster has reconciled."""
    provider: Any = cluster.provider
    cluster.update()
    cluster.update()
    store = StateStore()
    record = store.load_cluster(NAME)
    assert record is not None
    rows = sum(r.count for r in store.resources(NAME, "worker"))
    return provider.cloud.live_workers(NAME), provider.worker_ledger.workers(), rows, record.spec["expected"]


def _one_run(seed: int) -> None:
    cloud = FakeCloud()
    first = make_cluster(FakeCloudProvider(cloud), worker_container(PER_CONTAINER), name=NAME, worker_number=2,
                         auto_heal=True, heal_interval=0.005)
    first.start_cluster(timeout=5)
    other = DockerCluster.reconnect(NAME)
    errors: list[BaseException] = []
    actions = [_actor(first, seed, errors), _actor(first, seed + 1, errors), _actor(other, seed + 2, errors),
               _retirer(first, errors)]
    threads = [threading.Thread(target=a, daemon=True) for a in actions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(t.is_alive() for t in threads), "an actor hung"
    assert not errors, errors
    live, ledger, rows, expected = _settled_counts(first)
    assert live == ledger == rows == expected, f"seed {seed}: live {live}, ledger {ledger}, rows {rows}, " \
                                                f"expected {expected}"
    first.stop_cluster()
    assert cloud.live() == [], f"seed {seed}: left after stop: {cloud.live()}"
    assert StateStore().load_cluster(NAME) is None


@pytest.mark.parametrize("seed", range(RUNS))
def test_every_actor_at_once_leaves_agreement_and_stop_leaves_nothing(seed: int) -> None:
    _one_run(1000 * seed)


@pytest.mark.slow
def test_local_processes_with_a_second_process_scaling_through_the_cli(tmp_path: Any) -> None:
    """Once on real processes: this process scales and heals while the CLI scales from another process."""
    from dockerparallel.backends.dask import DaskWorkerContainer
    from dockerparallel.providers.local import LocalProcessProvider, labelled_processes

    store = StateStore()
    container = DaskWorkerContainer(host="127.0.0.1", max_workers_per_container=2,
                                    scheduler_port=(ports := _ports())[0], dashboard_port=ports[1])
    cluster = DockerCluster(LocalProcessProvider(store, grace_period=2.0), container, name=NAME, worker_number=2,
                            state=store, auto_heal=True, heal_interval=0.2)
    cluster.start_cluster(timeout=60)
    try:
        cli = subprocess.Popen([sys.executable, "-m", "dockerparallel", "scale", NAME, "6"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for number in (4, 8, 2):
            cluster.set_worker_number(number)
            cluster.get_worker_numbers()
        out, _ = cli.communicate(timeout=120)
        assert cli.returncode == 0, out.decode()
        cluster.update()
        live = sum(n for role, n in labelled_processes(NAME, store).values() if role == "worker")
        record = store.load_cluster(NAME)
        assert record is not None
        assert live == cluster.provider.worker_ledger.workers() == record.spec["expected"]  # type: ignore[attr-defined]
    finally:
        cluster.stop_cluster()
    assert labelled_processes(NAME, store) == {}
    assert store.load_cluster(NAME) is None


def _port() -> int:
    return _ports()[0]


def _ports() -> list[int]:
    from dockerparallel._spec import free_ports

    return free_ports(2)
