"""The desired-state controller: slow start, throttling, stuck workers, backoff, the background loop."""

from __future__ import annotations

from typing import Any

import pytest

from dockerparallel import DockerCluster
from dockerparallel.controller import SLOW_START_AFTER, Controller
from dockerparallel.testing import FakeCloud, FakeCloudError, FakeCloudProvider

from ._helpers import CLUSTER_NAME, ManualClock, assert_agree, started_cluster

RUN = "run_docker_worker_containers"
BASE, MAX = 1.0, 8.0


@pytest.fixture
def controller(started: DockerCluster, clock: ManualClock) -> Controller:
    return Controller(started, init_timeout=10.0, backoff_base=BASE, backoff_max=MAX, seed=3, clock=clock)


def fail_cycles(controller: Controller, clock: ManualClock, cycles: int) -> None:
    """Let ``cycles`` reconcile cycles fail, each after the previous backoff."""
    for _ in range(cycles):
        assert controller.reconcile() is False
        clock.advance(MAX)


def test_slow_start_after_repeated_failures(started: DockerCluster, provider: FakeCloudProvider,
                                            controller: Controller, clock: ManualClock) -> None:
    started.record_worker_number(30)
    provider.failure_rate = 1.0
    fail_cycles(controller, clock, SLOW_START_AFTER)
    assert controller.stats.failures == SLOW_START_AFTER
    provider.faults_off()
    provider.run_sizes.clear()
    assert controller.reconcile() is True  # slow start within one cycle: the count is reached at once
    assert provider.run_sizes == [1, 2, 4, 8, 15]
    assert_agree(provider)
    started.record_worker_number(40)  # a success ends slow start
    assert controller.reconcile() is True and provider.run_sizes[-1] == 10


def test_one_failure_does_not_slow_start(started: DockerCluster, provider: FakeCloudProvider,
                                         controller: Controller, clock: ManualClock) -> None:
    started.record_worker_number(12)
    provider.failure_rate = 1.0
    fail_cycles(controller, clock, SLOW_START_AFTER - 1)
    provider.faults_off()
    provider.run_sizes.clear()
    assert controller.reconcile() is True and provider.run_sizes == [12]


def test_slow_start_stops_at_the_first_failed_batch(started: DockerCluster, provider: FakeCloudProvider,
                                                    controller: Controller, clock: ManualClock,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    started.record_worker_number(30)
    provider.failure_rate = 1.0
    fail_cycles(controller, clock, SLOW_START_AFTER)
    provider.faults_off()
    provider.run_sizes.clear()
    run = provider.run_docker_worker_containers

    def fail_from_four(cluster: Any, container: Any, hardware: Any, number: int, verbose: int = 0) -> list[str]:
        if number >= 4:
            raise FakeCloudError("no capacity")
        return run(cluster, container, hardware, number, verbose)

    monkeypatch.setattr(provider, RUN, fail_from_four)
    assert controller.reconcile() is False
    assert provider.run_sizes == [1, 2] and provider.worker_ledger.workers() == 3
    assert controller.stats.failures == SLOW_START_AFTER + 1


def test_throttling_is_retried_not_fatal(started: DockerCluster, provider: FakeCloudProvider,
                                         controller: Controller, clock: ManualClock) -> None:
    started.record_worker_number(8)
    provider.throttle_rate = 1.0
    for _ in range(5):
        assert controller.reconcile() is False  # never raises
        clock.advance(MAX)
    assert controller.stats.throttled == 5 and controller.stats.failures == 0
    provider.faults_off()
    provider.run_sizes.clear()
    assert controller.reconcile() is True
    assert provider.run_sizes == [8], "throttling alone does not slow-start"


def test_stuck_workers_are_killed_and_replaced_after_init_timeout(
        started: DockerCluster, provider: FakeCloudProvider, controller: Controller, clock: ManualClock) -> None:
    provider.boot_delay = 9.0  # slow, but within the 10 s timeout
    provider.stuck_rate = 1.0
    started.record_worker_number(8)
    assert controller.reconcile() is True
    stuck = set(provider.worker_ledger.handles())
    provider.stuck_rate = 0.0
    clock.advance(6.0)
    assert controller.reconcile() is True and controller.stats.stuck_killed == 0
    clock.advance(5.0)  # 11 s since the launch
    assert controller.reconcile() is True
    assert controller.stats.stuck_killed == 2
    assert not stuck & set(provider.worker_ledger.handles())
    assert all(provider.cloud.state(h) == "stopped" for h in stuck)
    for _ in range(4):  # the replacements boot in 9 s: slow is not stuck
        clock.advance(3.0)
        controller.reconcile()
    assert started.get_worker_numbers() == (0, 8, 8) and controller.stats.stuck_killed == 2
    assert_agree(provider)


@pytest.mark.parametrize("knob", ["failure_rate", "throttle_rate"])
def test_backoff_is_exponential_with_jitter_bounded_by_backoff_max(
        knob: str, started: DockerCluster, provider: FakeCloudProvider, controller: Controller,
        clock: ManualClock) -> None:
    started.record_worker_number(4)
    setattr(provider, knob, 1.0)
    tick, waits = 0.01, []
    assert controller.reconcile() is False
    for _ in range(8):
        calls, waited = provider.calls[RUN], 0.0
        while provider.calls[RUN] == calls:  # nothing is tried before the backoff ends
            clock.advance(tick)
            waited += tick
            controller.reconcile()
        waits.append(waited)
    steps = [min(MAX, BASE * 2**k) for k in range(len(waits))]
    for wait, step in zip(waits, steps):
        assert step / 2 - tick <= wait <= step + tick, (waits, steps)
    assert max(waits) <= MAX + tick
    assert len({round(w / s, 2) for w, s in zip(waits, steps)}) > 1, "no jitter"


def test_bad_backoff_is_rejected(started: DockerCluster) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Controller(started, backoff_base=2.0, backoff_max=1.0)


def test_background_loop_replaces_dead_workers() -> None:
    provider = FakeCloudProvider(FakeCloud(), seed=1)
    cluster = started_cluster(provider, worker_number=8, auto_heal=True, heal_interval=0.02)
    try:
        provider.cloud.kill_random(2, provider.rng, CLUSTER_NAME)
        cluster.wait_for_workers(8, timeout=10)
        assert provider.cloud.live_workers(CLUSTER_NAME) == 8
    finally:
        cluster.stop_cluster()
    assert cluster.controller is not None and cluster.controller.stats.cycles > 0
    assert provider.cloud.live(CLUSTER_NAME) == []
