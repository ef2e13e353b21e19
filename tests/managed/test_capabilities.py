"""Provider capabilities: large scale-ups split into run calls that fit, run concurrently where allowed."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from dockerparallel import DockerCluster, PartialLaunchError, ProviderCapabilities, ProviderError
from dockerparallel.managed import ManagedCloudProvider
from dockerparallel.testing import FakeCloudError, FakeCloudProvider

from .._helpers import assert_agree, assert_names, started_cluster

RUN = "run_docker_worker_containers"


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


def test_large_scale_up_runs_in_concurrent_batches() -> None:
    provider = FakeCloudProvider(max_containers_per_call=2, max_concurrent_calls=3, latency=0.05)
    cluster = started_cluster(provider)
    threads: list[str] = []
    provider.worker_ledger.on_change = lambda event, entries: threads.append(threading.current_thread().name)
    cluster.set_worker_number(42)
    assert sorted(provider.run_sizes) == [2] + [8] * 5
    assert 2 <= provider.peak_concurrent_runs <= 3
    assert set(threads) == {threading.current_thread().name}, "the ledger is written in the calling thread only"
    assert cluster.get_worker_numbers() == (0, 42, 42)
    assert_agree(provider)


class FailsOneBatch(FakeCloudProvider):
    """Its ``fail_at``-th run call fails: it raises ``error`` after starting its containers,
    or (``error=None``) starts one worker fewer than asked."""

    fail_at = 2
    error: BaseException | None = FakeCloudError("no capacity")

    def run_docker_worker_containers(self, cluster: Any, container: Any, hardware: Any, worker_number: int,
                                     verbose: int = 0) -> list[str]:
        with self._lock:
            self.seen = getattr(self, "seen", 0) + 1
            failing = self.seen == self.fail_at
        short = failing and self.error is None
        handles = super().run_docker_worker_containers(cluster, container, hardware, worker_number - short)
        if failing and self.error is not None:
            raise self.error
        return handles


def failing_cluster(concurrent: int, error: BaseException | None) -> tuple[FailsOneBatch, DockerCluster]:
    provider = FailsOneBatch(max_containers_per_call=1, max_concurrent_calls=concurrent, latency=0.02)
    provider.error = error
    return provider, started_cluster(provider)


@pytest.mark.parametrize("concurrent", [1, 4])
def test_a_failed_batch_raises_after_every_other_is_recorded(concurrent: int) -> None:
    provider, cluster = failing_cluster(concurrent, FakeCloudError("no capacity"))
    with pytest.raises(ProviderError) as excinfo:
        cluster.set_worker_number(16)
    assert_names(excinfo.value, provider, RUN)
    assert isinstance(excinfo.value.__cause__, FakeCloudError)
    live = provider.cloud.live(cluster.name, "worker")
    assert len(live) == len(provider.worker_ledger) + 1  # only the failed call's own container is unknown
    assert len(provider.run_sizes) <= min(4, concurrent + 2), "calls queued after the failure are cancelled"
    provider.error = None
    provider.fail_at = 0
    cluster.reconnect()
    assert cluster.update() == (0, 16, 16)
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


def test_an_interrupted_launch_still_records_the_running_batches() -> None:
    provider, cluster = failing_cluster(4, KeyboardInterrupt())
    provider.fail_at = 1
    with pytest.raises(KeyboardInterrupt):
        cluster.set_worker_number(16)
    unknown = {b.id for b in provider.cloud.live(cluster.name, "worker")} - set(provider.worker_ledger.handles())
    assert len(unknown) == 1, "only the interrupted call's own container is unknown"


class BadCapabilities(FakeCloudProvider):
    def launch_capabilities(self, container: Any, hardware: Any) -> Any:
        return {"max_workers_per_call": 4}


def test_wrong_capabilities_are_named() -> None:
    provider = BadCapabilities()
    cluster = started_cluster(provider)
    with pytest.raises(ProviderError) as excinfo:
        cluster.set_worker_number(4)
    assert_names(excinfo.value, provider, "launch_capabilities")


def test_over_concurrency_is_throttled_by_the_fake(started: DockerCluster, provider: FakeCloudProvider) -> None:
    provider.latency = 0.1
    errors: list[BaseException] = []

    def run() -> None:
        try:
            provider.run_docker_worker_containers(started, started.worker_container, started.worker_hardware, 1)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [type(e).__name__ for e in errors] == ["ProviderThrottled"]
    assert provider.peak_concurrent_runs == 2
