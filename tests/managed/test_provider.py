"""ManagedCloudProvider: scaling, shared handles, retried kills, partial launches, misbehaving providers."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from dockerparallel import (
    DockerCluster, DockerContainer, PartialLaunchError, ProviderCapabilities, ProviderError, ProviderThrottled,
    ScaleReport, WorkerStatus,
)
from dockerparallel.testing import FakeCloud, FakeCloudError, FakeCloudProvider

from .._helpers import (
    CLUSTER_NAME, assert_agree, assert_names, assert_no_leak, container_sizes, handle_counts,
    live_worker_counts, started_cluster,
)

RUN = "run_docker_worker_containers"
STATUS = "get_docker_worker_status"
KILL = "kill_docker_worker_containers"


def scale(cluster: DockerCluster, number: int) -> ScaleReport:
    """Call the provider's set_docker_worker_number the way the cluster does, returning its report."""
    provider = cluster.provider
    return provider.set_docker_worker_number(  # type: ignore[return-value]
        cluster, cluster.configured_worker_container(), cluster.worker_hardware, number)


class RecordingProvider(FakeCloudProvider):
    """Records the handles each status and kill call receives."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.received: list[tuple[str, list[str]]] = []

    def get_docker_worker_status(self, cluster: Any, worker_handles: list[str], verbose: int = 0) -> list[str]:
        self.received.append((STATUS, list(worker_handles)))
        return super().get_docker_worker_status(cluster, worker_handles, verbose)

    def kill_docker_worker_containers(self, cluster: Any, worker_handles: list[str], verbose: int = 0) -> list[bool]:
        self.received.append((KILL, list(worker_handles)))
        return super().kill_docker_worker_containers(cluster, worker_handles, verbose)


# -- scaling ----------------------------------------------------------------------------


def test_scale_0_10_5_0_with_four_workers_per_container(started: DockerCluster, provider: FakeCloudProvider) -> None:
    assert scale(started, 10) == ScaleReport(10, 0, started=10)
    assert container_sizes(provider.cloud) == [2, 4, 4]
    assert started.get_worker_numbers()[:2] == (0, 10)
    newer_four = [h for h, n in live_worker_counts(provider.cloud).items() if n == 4][-1]

    report = scale(started, 5)
    assert report == ScaleReport(5, 10, killed=4) and report.extra == 1
    assert container_sizes(provider.cloud) == [2, 4]
    assert newer_four not in provider.worker_ledger
    assert started.get_worker_numbers()[:2] == (0, 6)

    report = scale(started, 0)
    assert report == ScaleReport(0, 6, killed=6) and report.extra == 0
    assert provider.cloud.live(CLUSTER_NAME, "worker") == [] and len(provider.worker_ledger) == 0
    assert started.get_worker_numbers()[:2] == (0, 0)


def test_scale_to_the_same_number_does_nothing(started: DockerCluster, provider: FakeCloudProvider) -> None:
    scale(started, 3)
    assert scale(started, 3) == ScaleReport(3, 3)
    assert provider.calls[RUN] == 1 and provider.calls[KILL] == 0


def test_exact_scale_down_over_shared_handles(started: DockerCluster, provider: FakeCloudProvider) -> None:
    scale(started, 10)  # 4 + 4 + 2
    assert scale(started, 4) == ScaleReport(4, 10, killed=6)
    assert container_sizes(provider.cloud) == [4]


def test_scale_down_prefers_initializing_workers(provider: FakeCloudProvider) -> None:
    cluster = started_cluster(provider)
    scale(cluster, 4)
    old = provider.worker_ledger.handles()
    provider.boot_delay = 10.0
    scale(cluster, 8)
    assert cluster.get_worker_numbers()[:2] == (4, 4)
    scale(cluster, 4)
    assert provider.worker_ledger.handles() == old
    assert_agree(provider)


def test_workers_per_container_limits_packing(provider: FakeCloudProvider) -> None:
    provider.workers_per_container = 3
    started_cluster(provider, worker_number=7)
    assert container_sizes(provider.cloud) == [1, 3, 3]
    assert_agree(provider)


# -- shared handles ------------------------------------------------------------------------


def test_shared_handles_counted_and_sent_once(container: DockerContainer) -> None:
    provider = RecordingProvider()
    cluster = started_cluster(provider, container, worker_number=10)
    handles = provider.get_managed_worker_handles()
    assert sorted(handle_counts(handles).values()) == [2, 4, 4] and len(handles) == 10
    cluster.set_worker_number(0)
    assert provider.received, "no status or kill call was made"
    for method, received in provider.received:
        assert len(received) == len(set(received)), f"{method} received repeated handles {received}"


def test_add_managed_worker_handles(provider: FakeCloudProvider) -> None:
    provider.add_managed_worker_handles(["x", "x", "y"])
    assert provider.get_managed_worker_handles() == ["x", "x", "y"]


@pytest.mark.parametrize("handles", [[1], ["ok", None], "abc", [""]], ids=repr)
def test_add_managed_worker_handles_rejects(handles: Any, provider: FakeCloudProvider) -> None:
    with pytest.raises(TypeError, match="handles"):
        provider.add_managed_worker_handles(handles)
    assert len(provider.worker_ledger) == 0


def test_is_docker_worker_defaults_derive_from_one_status_call(cloud: FakeCloud) -> None:
    provider = RecordingProvider(cloud)
    cluster = started_cluster(provider)
    alive = cloud.start(CLUSTER_NAME, "worker", 1, boot_delay=0.0).id
    booting = cloud.start(CLUSTER_NAME, "worker", 1, boot_delay=10.0).id
    asked = [alive, booting, "gone", alive]
    provider.received.clear()
    assert provider.is_docker_worker_running(cluster, asked) == [True, False, False, True]
    assert provider.is_docker_worker_initializing(cluster, asked) == [False, True, False, False]
    assert provider.is_docker_worker_stopped(cluster, asked) == [False, False, True, False]
    assert provider.received == [(STATUS, [alive, booting, "gone"])] * 3


def test_status_enum_values_are_accepted(started: DockerCluster, provider: FakeCloudProvider,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    scale(started, 2)
    monkeypatch.setattr(provider, STATUS, lambda cluster, handles, verbose=0: [WorkerStatus.RUNNING] * len(handles))
    assert provider.get_docker_worker_numbers(started) == (0, 2)


# -- failed kills ---------------------------------------------------------------------------


def test_failed_kills_are_kept_pending_and_retried(started: DockerCluster, provider: FakeCloudProvider) -> None:
    started.set_worker_number(10)
    provider.kill_failure_rate = 1.0
    started.set_worker_number(2)  # kills 4 + 4: both fail
    pending = provider.worker_ledger.pending_kills()
    assert len(pending) == 2 and all(provider.worker_ledger.get(h).kill_pending for h in pending)  # type: ignore
    assert set(pending) <= set(live_worker_counts(provider.cloud))
    assert started.get_worker_numbers() == (0, 2, 2)
    assert provider.get_managed_worker_handles() == [h for h in provider.get_managed_worker_handles()
                                                     if h not in pending]
    provider.kill_failure_rate = 0.0
    assert started.get_worker_numbers() == (0, 2, 2)
    assert not set(pending) & set(live_worker_counts(provider.cloud))
    assert provider.worker_ledger.pending_kills() == [] and not set(pending) & set(provider.worker_ledger.handles())
    assert_agree(provider)


def test_kill_all_workers_reports_pending_kills(started: DockerCluster, provider: FakeCloudProvider) -> None:
    scale(started, 5)
    provider.kill_failure_rate = 1.0
    assert provider.kill_all_workers(started) is False
    provider.kill_failure_rate = 0.0
    assert provider.kill_all_workers(started) is True
    assert live_worker_counts(provider.cloud) == {} and len(provider.worker_ledger) == 0


def test_failed_kill_retried_by_update(started: DockerCluster, provider: FakeCloudProvider) -> None:
    started.set_worker_number(4)
    provider.kill_failure_rate = 1.0
    started.set_worker_number(0)
    assert len(live_worker_counts(provider.cloud)) == 1
    provider.kill_failure_rate = 0.0
    assert started.update() == (0, 0, 0)
    assert live_worker_counts(provider.cloud) == {} and len(provider.worker_ledger) == 0


# -- partial launches and faults ------------------------------------------------------------------


class UndeclaredLimit(FakeCloudProvider):
    """Starts at most ``max_containers_per_call`` containers per call but does not declare it."""

    def launch_capabilities(self, container: Any, hardware: Any) -> ProviderCapabilities:
        return ProviderCapabilities()


def test_partial_launch_recorded_then_topped_up_by_update() -> None:
    provider = UndeclaredLimit(max_containers_per_call=1)
    started = started_cluster(provider)
    with pytest.raises(PartialLaunchError) as excinfo:
        started.set_worker_number(10)
    error = excinfo.value
    assert (error.asked, error.got) == (10, 4)
    assert_names(error, provider, RUN)
    assert started.expected_workers == 10
    assert started.get_worker_numbers() == (0, 4, 10)
    assert_agree(provider)
    provider.max_containers_per_call = None
    assert started.update() == (0, 10, 10)
    assert_agree(provider)


@pytest.mark.parametrize(("knob", "error"), [("partial_launch_rate", PartialLaunchError),
                                             ("throttle_rate", ProviderThrottled)])
def test_launch_faults_are_recorded_then_healed(knob: str, error: type[Exception], started: DockerCluster,
                                                provider: FakeCloudProvider) -> None:
    setattr(provider, knob, 1.0)
    with pytest.raises(error) as excinfo:
        started.set_worker_number(12)
    assert type(excinfo.value) is error
    assert started.get_worker_numbers().running in (0, 4, 8)
    assert_agree(provider)
    provider.faults_off()
    assert started.update() == (0, 12, 12)
    assert_agree(provider)


@pytest.mark.parametrize("method", [RUN, STATUS, KILL])
def test_a_failing_primitive_raises_a_provider_error(method: str, started: DockerCluster,
                                                     provider: FakeCloudProvider,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    started.set_worker_number(3 if method == RUN else 5)
    before = live_worker_counts(provider.cloud)

    def fail(*args: Any, **kwargs: Any) -> None:
        raise FakeCloudError("injected")

    monkeypatch.setattr(provider, method, fail)
    with pytest.raises(ProviderError) as excinfo:
        started.set_worker_number(4)
    assert_names(excinfo.value, provider, method)
    assert isinstance(excinfo.value.__cause__, FakeCloudError)
    assert live_worker_counts(provider.cloud) == before
    assert_no_leak(provider)


def test_stopped_workers_are_forgotten_and_replaced(started: DockerCluster, provider: FakeCloudProvider) -> None:
    started.set_worker_number(8)
    provider.death_rate = 1.0
    assert started.get_worker_numbers() == (0, 0, 8)
    assert len(provider.worker_ledger) == 0
    provider.death_rate = 0.0
    assert started.update() == (0, 8, 8)
    assert_agree(provider)


# -- misbehaving providers ------------------------------------------------------------------------


class TooManyHandles(FakeCloudProvider):
    def run_docker_worker_containers(self, *args: Any, **kwargs: Any) -> list[str]:
        handles = super().run_docker_worker_containers(*args, **kwargs)
        return handles + handles[:1]


class TooFewHandles(FakeCloudProvider):
    def run_docker_worker_containers(self, *args: Any, **kwargs: Any) -> list[str]:
        return super().run_docker_worker_containers(*args, **kwargs)[:-1]


class NonStringHandle(FakeCloudProvider):
    def run_docker_worker_containers(self, *args: Any, **kwargs: Any) -> list[Any]:
        handles: list[Any] = super().run_docker_worker_containers(*args, **kwargs)
        return handles[:-1] + [handles[-1].encode()]


class SingleStringHandle(FakeCloudProvider):
    def run_docker_worker_containers(self, *args: Any, **kwargs: Any) -> Any:
        return super().run_docker_worker_containers(*args, **kwargs)[0]


class SetOfHandles(FakeCloudProvider):
    def run_docker_worker_containers(self, *args: Any, **kwargs: Any) -> Any:
        return set(super().run_docker_worker_containers(*args, **kwargs))


class UnknownStatus(FakeCloudProvider):
    def get_docker_worker_status(self, *args: Any, **kwargs: Any) -> list[str]:
        return ["RUNNING" for _ in super().get_docker_worker_status(*args, **kwargs)]


class ListStatus(FakeCloudProvider):
    def get_docker_worker_status(self, *args: Any, **kwargs: Any) -> list[Any]:
        return [[status] for status in super().get_docker_worker_status(*args, **kwargs)]


class ShortStatus(FakeCloudProvider):
    def get_docker_worker_status(self, *args: Any, **kwargs: Any) -> list[str]:
        return super().get_docker_worker_status(*args, **kwargs)[:-1]


class NonBoolKill(FakeCloudProvider):
    def kill_docker_worker_containers(self, *args: Any, **kwargs: Any) -> list[Any]:
        return [int(ok) for ok in super().kill_docker_worker_containers(*args, **kwargs)]


class LongKill(FakeCloudProvider):
    def kill_docker_worker_containers(self, *args: Any, **kwargs: Any) -> list[bool]:
        return super().kill_docker_worker_containers(*args, **kwargs) + [True]


class RaisesAfterLaunch(FakeCloudProvider):
    def run_docker_worker_containers(self, *args: Any, **kwargs: Any) -> list[str]:
        super().run_docker_worker_containers(*args, **kwargs)
        raise ConnectionError("connection lost after the containers started")


#: (double, method that misbehaves, worker number that triggers it, error type, returned handles recorded)
MISBEHAVING = [
    (TooManyHandles, RUN, 6, ProviderError, [5, 2]),
    (TooFewHandles, RUN, 6, PartialLaunchError, [4, 1]),
    (NonStringHandle, RUN, 6, ProviderError, [4, 2]),  # the bytes handle is decoded and recorded
    (SingleStringHandle, RUN, 3, ProviderError, [1]),
    (SetOfHandles, RUN, 6, ProviderError, [1, 1]),
    (UnknownStatus, STATUS, 2, ProviderError, [4, 2]),
    (ListStatus, STATUS, 2, ProviderError, [4, 2]),
    (ShortStatus, STATUS, 2, ProviderError, [4, 2]),
    (NonBoolKill, KILL, 2, ProviderError, [4, 2]),
    (LongKill, KILL, 2, ProviderError, [4, 2]),
]


def provoke(double: type[FakeCloudProvider], method: str) -> tuple[FakeCloudProvider, DockerCluster]:
    """A started cluster on ``double``; doubles of status and kill first get 6 workers (4 + 2)."""
    provider = double()
    cluster = started_cluster(provider)
    if method != RUN:
        scale(cluster, 6)  # no status call yet (nothing to ask about); no kill
    return provider, cluster


@pytest.mark.parametrize(("double", "method", "number", "error", "recorded"), MISBEHAVING,
                         ids=[row[0].__name__ for row in MISBEHAVING])
def test_misbehaving_provider(double: type[FakeCloudProvider], method: str, number: int,
                              error: type[ProviderError], recorded: list[int]) -> None:
    provider, cluster = provoke(double, method)
    with pytest.raises(error) as excinfo:
        scale(cluster, number)
    assert type(excinfo.value) is error
    assert_names(excinfo.value, provider, method)
    assert sorted(e.count for e in provider.worker_ledger) == sorted(recorded)
    assert_no_leak(provider)


def test_misbehaving_status_changes_nothing() -> None:
    provider, cluster = provoke(UnknownStatus, STATUS)
    before = live_worker_counts(provider.cloud)
    with pytest.raises(ProviderError, match="'RUNNING'"):
        scale(cluster, 10)
    assert live_worker_counts(provider.cloud) == before
    with pytest.raises(ProviderError, match=STATUS):
        cluster.get_worker_numbers()


def test_misbehaving_kill_keeps_the_handles_pending() -> None:
    provider, cluster = provoke(NonBoolKill, KILL)
    with pytest.raises(ProviderError, match="booleans"):
        scale(cluster, 2)
    assert len(provider.worker_ledger.pending_kills()) == 1
    assert provider.worker_ledger.workers() == 2


def test_provider_raising_after_launch_is_named_and_recovered_by_reconnect() -> None:
    provider, cluster = provoke(RaisesAfterLaunch, RUN)
    with pytest.raises(ProviderError) as excinfo:
        scale(cluster, 6)
    assert_names(excinfo.value, provider, RUN)
    assert isinstance(excinfo.value.__cause__, ConnectionError)
    # The layer never saw these handles; the cluster-name label lets reconnect() adopt them.
    assert len(live_worker_counts(provider.cloud)) == 2 and len(provider.worker_ledger) == 0
    cluster.reconnect()
    assert_agree(provider)
    cluster.stop_cluster()
    assert provider.cloud.live() == []


def test_an_inexact_scale_down_is_reported_once_per_situation(caplog: pytest.LogCaptureFixture) -> None:
    provider = FakeCloudProvider()
    cluster = started_cluster(provider, worker_number=4)  # one container of 4 workers
    with caplog.at_level(logging.DEBUG, logger="dockerparallel.managed"):
        for _ in range(3):
            cluster.set_worker_number(3)  # no container holds exactly 1 worker
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "keeping 1 extra" in r.message]
    assert len(warnings) == 1
    assert cluster.get_worker_numbers() == (0, 4, 3)
