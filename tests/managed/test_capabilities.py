"""Provider capabilities: large scale-ups split into run calls that fit, run concurrently where allowed.

The concurrent cases order the run calls with barriers and events, not with
latencies: calls meant to overlap wait for one another inside the fake, so
the tests do not depend on how fast threads are scheduled.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

import pytest

from dockerparallel import DockerCluster, PartialLaunchError, ProviderCapabilities, ProviderError
from dockerparallel.managed import ManagedCloudProvider
from dockerparallel.testing import FakeCloudError, FakeCloudProvider

from .._helpers import assert_agree, assert_names, started_cluster

RUN = "run_docker_worker_containers"
#: How long a call waits at a barrier or for an event before the test gives up: a guard against
#: a hang when the code under test is wrong, never a delay that a passing run waits out.
GATE_TIMEOUT = 10.0


def test_capabilities_are_declared_on_the_class_and_exported() -> None:
    assert ManagedCloudProvider.capabilities == ProviderCapabilities(None, 1)
    assert ProviderCapabilities(8.0, 2) == ProviderCapabilities(8, 2)


@pytest.mark.parametrize(("options", "error"), [
    ({"max_workers_per_call": 0}, ValueError), ({"max_concurrent_calls": 0}, ValueError),
    ({"max_concurrent_calls": 65}, ValueError), ({"max_workers_per_call": True}, TypeError),
    ({"max_concurrent_calls": 1.5}, ValueError),
])
def test_bad_capabilities_are_rejected(options: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error, match=next(iter(options))):
        ProviderCapabilities(**options)


@pytest.mark.parametrize(("per_call", "number", "sizes"), [
    (None, 7, [7]), (4, 10, [4, 4, 2]), (4, 8, [4, 4]), (4, 0, []), (10, 3, [3]),
])
def test_batch_sizes(per_call: int | None, number: int, sizes: list[int]) -> None:
    assert ProviderCapabilities(per_call).batch_sizes(number) == sizes


def test_fake_declares_its_knobs(started: DockerCluster, provider: FakeCloudProvider) -> None:
    container, hardware = started.worker_container, started.worker_hardware
    assert provider.launch_capabilities(container, hardware) == ProviderCapabilities(None, 1)
    provider.max_containers_per_call, provider.max_concurrent_calls = 3, 4
    assert provider.launch_capabilities(container, hardware) == ProviderCapabilities(12, 4)
    provider.workers_per_container = 2
    assert provider.launch_capabilities(container, hardware) == ProviderCapabilities(6, 4)


class FirstCallsMeet(FakeCloudProvider):
    """Its first ``max_concurrent_calls`` run calls wait for one another inside the fake (a barrier):
    they are all in flight at once, or the barrier breaks and the launch fails."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.first_calls = threading.Barrier(self.max_concurrent_calls, timeout=GATE_TIMEOUT)
        self.arrived = 0

    def _enter(self, method: str) -> None:
        super()._enter(method)
        if method == RUN:
            with self._lock:
                self.arrived += 1
                first = self.arrived <= self.first_calls.parties
            if first:
                self.first_calls.wait()


def test_large_scale_up_runs_in_concurrent_batches() -> None:
    provider = FirstCallsMeet(max_containers_per_call=2, max_concurrent_calls=3)
    cluster = started_cluster(provider)
    threads: list[str] = []
    provider.worker_ledger.on_change = lambda event, entries: threads.append(threading.current_thread().name)
    cluster.set_worker_number(42)
    assert sorted(provider.run_sizes) == [2] + [8] * 5
    assert provider.peak_concurrent_runs == 3  # the first three met in the fake; a fourth would be throttled
    assert set(threads) == {threading.current_thread().name}, "the ledger is written in the calling thread only"
    assert cluster.get_worker_numbers() == (0, 42, 42)
    assert_agree(provider)


class FailsOneBatch(FakeCloudProvider):
    """Its ``fail_at``-th run call fails: it raises ``error`` after starting its containers,
    or (``error=None``) starts one worker fewer than asked."""

    fail_at = 2
    error: BaseException | None = FakeCloudError("no capacity")
    seen = 0

    def run_docker_worker_containers(self, cluster: Any, container: Any, hardware: Any, worker_number: int,
                                     verbose: int = 0) -> list[str]:
        with self._lock:
            self.seen += 1
            number = self.seen
        failing = number == self.fail_at
        self.arrive(number, failing)
        short = failing and self.error is None
        handles = super().run_docker_worker_containers(cluster, container, hardware, worker_number - short)
        if failing and self.error is not None:
            raise self.error
        return handles

    def arrive(self, number: int, failing: bool) -> None:
        """Called as run call ``number`` (1, 2, ...) begins, before the fake counts it."""


def failing_cluster(concurrent: int, error: BaseException | None) -> tuple[FailsOneBatch, DockerCluster]:
    provider = FailsOneBatch(max_containers_per_call=1, max_concurrent_calls=concurrent, latency=0.02)
    provider.error = error
    return provider, started_cluster(provider)


class CancelCount:
    """Counts the futures cancelled (``Future.cancel`` that succeeds) while it is installed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.cancelled = 0
        self.changed = threading.Condition()
        original = Future.cancel

        def cancel(future: Future[Any]) -> bool:
            done = original(future)
            if done:
                with self.changed:
                    self.cancelled += 1
                    self.changed.notify_all()
            return done

        monkeypatch.setattr(Future, "cancel", cancel)


class OrderedFailure(FailsOneBatch):
    """One failing call in ``batches``, in a known order whatever the thread timing.

    The first round (``max_concurrent_calls`` calls) is in flight at once (a
    barrier). A later call, the failing one aside, waits until no queued
    call can start any more: every one of the ``batches`` calls has started or
    been cancelled. So each launcher thread starts at most one call after the
    first round, and a launcher that cancels the queued calls after the
    failure starts at most ``first round + max_concurrent_calls`` of them.
    """

    def __init__(self, cancels: CancelCount, batches: int, **options: Any) -> None:
        super().__init__(max_containers_per_call=1, **options)
        self.cancels, self.batches = cancels, batches
        self.first_round = threading.Barrier(self.max_concurrent_calls, timeout=GATE_TIMEOUT)
        self.gave_up = False  # a later call waited GATE_TIMEOUT in vain: the queued calls were not cancelled

    def arrive(self, number: int, failing: bool) -> None:
        with self.cancels.changed:
            self.cancels.changed.notify_all()  # one more call started: a waiting call may go on
        if number <= self.max_concurrent_calls:
            self.first_round.wait()
        elif not failing and not self.gave_up:
            with self.cancels.changed:
                settled = self.cancels.changed.wait_for(
                    lambda: self.seen + self.cancels.cancelled >= self.batches, GATE_TIMEOUT)
            self.gave_up = self.gave_up or not settled


#: Run calls of one container (4 workers) each in the failure tests: many more than can run at once.
BATCHES = 16


def ordered_failure(monkeypatch: pytest.MonkeyPatch, concurrent: int,
                    error: BaseException) -> tuple[OrderedFailure, DockerCluster]:
    provider = OrderedFailure(CancelCount(monkeypatch), BATCHES, max_concurrent_calls=concurrent)
    provider.error = error
    return provider, started_cluster(provider)


@pytest.mark.parametrize("concurrent", [1, 4])
def test_a_failed_batch_raises_after_every_other_is_recorded(concurrent: int,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    provider, cluster = ordered_failure(monkeypatch, concurrent, FakeCloudError("no capacity"))
    with pytest.raises(ProviderError) as excinfo:
        cluster.set_worker_number(4 * BATCHES)
    assert_names(excinfo.value, provider, RUN)
    assert isinstance(excinfo.value.__cause__, FakeCloudError)
    live = provider.cloud.live(cluster.name, "worker")
    assert len(live) == len(provider.worker_ledger) + 1  # only the failed call's own container is unknown
    first_round = max(concurrent, provider.fail_at)
    assert len(provider.run_sizes) <= first_round + concurrent < BATCHES, \
        f"calls queued after the failure are cancelled: {len(provider.run_sizes)} of {BATCHES} started"
    assert not provider.gave_up
    provider.error = None
    provider.fail_at = 0
    cluster.reconnect()
    assert cluster.update() == (0, 4 * BATCHES, 4 * BATCHES)
    assert_agree(provider)


@pytest.mark.parametrize("concurrent", [1, 4])
def test_short_batches_raise_one_partial_launch_error(concurrent: int) -> None:
    provider, cluster = failing_cluster(concurrent, None)
    with pytest.raises(PartialLaunchError) as excinfo:
        cluster.set_worker_number(16)
    error = excinfo.value
    assert error.asked == 16 and error.got == provider.worker_ledger.workers() < 16
    assert_agree(provider)
    provider.fail_at = 0
    assert cluster.update() == (0, 16, 16)
    assert_agree(provider)


def test_an_interrupted_launch_still_records_the_running_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    provider, cluster = ordered_failure(monkeypatch, 4, KeyboardInterrupt())
    provider.fail_at = 1
    with pytest.raises(KeyboardInterrupt):
        cluster.set_worker_number(4 * BATCHES)
    unknown = {b.id for b in provider.cloud.live(cluster.name, "worker")} - set(provider.worker_ledger.handles())
    assert len(unknown) == 1, "only the interrupted call's own container is unknown"
    assert provider.worker_ledger.workers() == 4 * (len(provider.run_sizes) - 1), "every other call is recorded"
    assert not provider.gave_up


class BadCapabilities(FakeCloudProvider):
    def launch_capabilities(self, container: Any, hardware: Any) -> Any:
        return {"max_workers_per_call": 4}


def test_wrong_capabilities_are_named() -> None:
    provider = BadCapabilities()
    cluster = started_cluster(provider)
    with pytest.raises(ProviderError) as excinfo:
        cluster.set_worker_number(4)
    assert_names(excinfo.value, provider, "launch_capabilities")


def test_over_concurrency_is_throttled_by_the_fake(started: DockerCluster, provider: FakeCloudProvider,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    assert provider.max_concurrent_calls == 1
    inside, release = threading.Event(), threading.Event()
    enter = provider._enter

    def held_enter(method: str) -> None:  # the first call holds its slot until the second one has come
        enter(method)
        inside.set()
        assert release.wait(GATE_TIMEOUT), "the second call never came"

    monkeypatch.setattr(provider, "_enter", held_enter)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            provider.run_docker_worker_containers(started, started.worker_container, started.worker_hardware, 1)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    first = threading.Thread(target=run)
    first.start()
    try:
        assert inside.wait(GATE_TIMEOUT), "the first call never started"
        run()  # a second call while the first is in flight
    finally:
        release.set()
        first.join()
    assert [type(e).__name__ for e in errors] == ["ProviderThrottled"]
    assert provider.peak_concurrent_runs == 2
