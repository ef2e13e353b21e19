"""One owner for a cluster's workers: races, other processes and false readings must not leak a worker.

Each test names the way the library once broke its promise that no code path
drops a live worker; each failed on the code before the lifecycle owned the
workers.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import dockerparallel
from dockerparallel import DockerCluster, DockerParallelError, ProviderError
from dockerparallel.state import StateStore
from dockerparallel.testing import FakeCloud, FakeCloudProvider

from ._helpers import make_cluster, worker_container

NAME = "owned"


def _started(provider: FakeCloudProvider, **options: Any) -> DockerCluster:
    cluster = make_cluster(provider, name=NAME, **options)
    cluster.start_cluster(timeout=5)
    return cluster


def _live_workers(cloud: FakeCloud) -> int:
    return cloud.live_workers(NAME)


class GatedStatus(FakeCloudProvider):
    """Once ``hold`` is set, the next server status call waits for ``gate``; ``entered`` says it does."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hold = threading.Event()
        self.gate = threading.Event()
        self.entered = threading.Event()

    def get_server_status(self, *args: Any, **kwargs: Any) -> str:
        if self.hold.is_set() and not self.entered.is_set():
            self.entered.set()
            self.gate.wait(30)
        return super().get_server_status(*args, **kwargs)


def test_stop_does_not_deadlock_with_the_controller_and_nothing_starts_after_it() -> None:
    provider = GatedStatus(FakeCloud())
    cluster = _started(provider, auto_heal=True, heal_interval=0.05, worker_number=2)
    provider.hold.set()
    assert provider.entered.wait(10), "the controller never checked the server"
    stopper = threading.Thread(target=cluster.stop_cluster, daemon=True)
    stopper.start()
    time.sleep(0.3)  # stop is under way while the controller's cycle is in the provider
    provider.gate.set()
    stopper.join(20)
    assert not stopper.is_alive(), "stop_cluster() deadlocked with the controller"
    runs = provider.calls["run_docker_worker_containers"]
    time.sleep(0.3)  # several controller intervals
    assert provider.calls["run_docker_worker_containers"] == runs, "a worker was started after stop"
    assert provider.cloud.live(NAME) == []
    assert StateStore().load_cluster(NAME) is None


def _quiet(func: Any, *args: Any) -> None:
    try:
        func(*args)
    except DockerParallelError:
        pass


def test_workers_another_process_started_are_stopped() -> None:
    cloud = FakeCloud()
    first = _started(FakeCloudProvider(cloud), worker_number=2)
    other = DockerCluster.reconnect(NAME)  # another process: its own objects, the same store and cloud
    assert other.provider is not first.provider
    other.set_worker_number(4)
    assert _live_workers(cloud) == 4
    assert first.get_worker_numbers().running + first.get_worker_numbers().initializing == 4
    first.stop_cluster()
    assert cloud.live(NAME) == []
    assert StateStore().load_cluster(NAME) is None


def test_two_processes_scaling_to_the_same_number_agree() -> None:
    cloud = FakeCloud()
    first = _started(FakeCloudProvider(cloud), worker_number=2)
    other = DockerCluster.reconnect(NAME)
    first.set_worker_number(6)
    other.set_worker_number(6)
    assert _live_workers(cloud) == 6
    numbers = other.get_worker_numbers()
    assert numbers.initializing + numbers.running == 6
    first.stop_cluster()
    assert cloud.live() == []


class LiesOnce(FakeCloudProvider):
    """Reports every worker "stopped" once (an API hiccup), then tells the truth."""

    lied = False

    def get_docker_worker_status(self, cluster: Any, handles: list[str], verbose: int = 0) -> list[str]:
        truth = super().get_docker_worker_status(cluster, handles, verbose)
        if not self.lied and handles:
            self.lied = True
            return ["stopped"] * len(handles)
        return truth


def test_one_false_stopped_reading_does_not_lose_a_live_worker() -> None:
    provider = LiesOnce(FakeCloud())
    cluster = _started(provider, worker_number=4)
    cluster.get_worker_numbers()  # the lie
    cluster.stop_cluster()
    assert provider.cloud.live(NAME) == [], "a worker read as stopped once was forgotten alive"


def test_a_second_cluster_of_a_live_name_is_refused_and_the_first_is_untouched() -> None:
    cloud = FakeCloud()
    first = _started(FakeCloudProvider(cloud), worker_number=2)
    second = make_cluster(FakeCloudProvider(cloud), name=NAME)
    assert second.cluster_exists()  # building it and asking is allowed
    with pytest.raises(DockerParallelError) as excinfo:
        second.start_cluster(timeout=5)
    assert type(excinfo.value).__name__ == "ClusterExistsError"
    assert "reconnect" in str(excinfo.value) and NAME in str(excinfo.value)
    assert first.is_server_running() and _live_workers(cloud) == 2
    first.stop_cluster()
    assert cloud.live() == []


def test_the_python_api_refuses_a_live_name_without_a_state_store() -> None:
    cloud = FakeCloud()
    first = _started(FakeCloudProvider(cloud), state=False)
    with pytest.raises(DockerParallelError, match="reconnect"):
        make_cluster(FakeCloudProvider(cloud), name=NAME, state=False).start_cluster(timeout=5)
    first.stop_cluster()


class StatusAlwaysFails(FakeCloudProvider):
    broken = False

    def get_docker_worker_status(self, cluster: Any, handles: list[str], verbose: int = 0) -> list[str]:
        if self.broken:
            raise RuntimeError("status API down")
        return super().get_docker_worker_status(cluster, handles, verbose)


def test_stop_stops_everything_when_status_calls_fail() -> None:
    provider = StatusAlwaysFails(FakeCloud())
    cluster = _started(provider, worker_number=5)
    provider.broken = True
    cluster.stop_cluster()
    assert provider.cloud.live() == []


class HangingRun(FakeCloudProvider):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.release = threading.Event()

    def run_docker_worker_containers(self, *args: Any, **kwargs: Any) -> list[str]:
        self.release.wait(60)
        return super().run_docker_worker_containers(*args, **kwargs)


def test_a_hung_provider_call_has_a_deadline_and_its_late_result_is_killed() -> None:
    provider = HangingRun(FakeCloud())
    cluster = _started(provider, call_timeout=0.3)
    with pytest.raises(ProviderError) as excinfo:
        cluster.set_worker_number(3)
    assert type(excinfo.value).__name__ == "ProviderTimeout"
    assert "HangingRun.run_docker_worker_containers" in str(excinfo.value)
    assert cluster.get_worker_numbers()[:2] == (0, 0)  # the object is still usable
    cluster.stop_cluster()
    provider.release.set()  # the late run starts its containers now, after stop
    deadline = time.monotonic() + 10
    while provider.calls["kill_docker_worker_containers"] < 1 or provider.cloud.live(NAME):
        assert time.monotonic() < deadline, f"late workers left running: {provider.cloud.live(NAME)}"
        time.sleep(0.02)


def test_a_late_run_result_is_recorded_while_the_cluster_runs() -> None:
    provider = HangingRun(FakeCloud())
    cluster = _started(provider, call_timeout=0.3)
    with pytest.raises(ProviderError):
        cluster.set_worker_number(4)
    provider.release.set()
    deadline = time.monotonic() + 10
    while len(provider.worker_ledger) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert sum(e.count for e in provider.worker_ledger) == 4
    cluster.stop_cluster()
    assert provider.cloud.live() == []


def test_kills_that_keep_failing_make_stop_raise_with_the_survivors() -> None:
    provider = FakeCloudProvider(FakeCloud())
    cluster = _started(provider, worker_number=4)
    provider.kill_failure_rate = 1.0
    with pytest.raises(DockerParallelError) as excinfo:
        cluster.stop_cluster()
    assert type(excinfo.value).__name__ == "StopError"
    assert "survived" in str(excinfo.value) and "dockerparallel down" in str(excinfo.value)
    assert StateStore().load_cluster(NAME) is not None, "the record must stay so that a later stop can retry"
    provider.kill_failure_rate = 0.0
    cluster.stop_cluster()
    assert provider.cloud.live() == [] and StateStore().load_cluster(NAME) is None


def test_with_block_surfaces_a_failed_stop() -> None:
    provider = FakeCloudProvider(FakeCloud())
    with pytest.raises(DockerParallelError, match="survived"):
        with make_cluster(provider, name=NAME, worker_number=2):
            provider.kill_failure_rate = 1.0
    provider.kill_failure_rate = 0.0
    make_cluster(provider, name=NAME).stop_cluster()


class RepeatsAHandle(FakeCloudProvider):
    def run_docker_worker_containers(self, cluster: Any, container: Any, hardware: Any, number: int,
                                     verbose: int = 0) -> list[str]:
        handles = super().run_docker_worker_containers(cluster, container, hardware, number, verbose)
        known = self.worker_ledger.handles()
        return handles[:-1] + known[:1] if known else handles


def test_a_run_result_repeating_a_known_handle_is_an_error() -> None:
    provider = RepeatsAHandle(FakeCloud())
    cluster = _started(provider, worker_number=1)
    with pytest.raises(ProviderError, match="already in the ledger"):
        cluster.set_worker_number(3)
    cluster.stop_cluster()
    assert provider.cloud.live() == []


class BytesHandles(FakeCloudProvider):
    def run_docker_worker_containers(self, *args: Any, **kwargs: Any) -> list[Any]:
        return [h.encode() for h in super().run_docker_worker_containers(*args, **kwargs)]


def test_bytes_handles_are_recorded_and_stopped() -> None:
    provider = BytesHandles(FakeCloud())
    cluster = _started(provider)
    with pytest.raises(ProviderError, match="BytesHandles.run_docker_worker_containers"):
        cluster.set_worker_number(6)
    cluster.stop_cluster()
    assert provider.cloud.live() == []


def test_scale_after_stop_leaves_no_ghost_record() -> None:
    cluster = _started(FakeCloudProvider(FakeCloud()), worker_number=2)
    cluster.stop_cluster()
    cluster.set_worker_number(5)
    assert StateStore().load_cluster(NAME) is None
    assert cluster.expected_workers == 5  # kept for the next start, as in the R original


def test_new_exceptions_are_exported() -> None:
    for name in ("ClusterExistsError", "ProviderTimeout", "StopError", "ClusterView"):
        assert name in dockerparallel.__all__
    assert worker_container().max_workers_per_container == 4


def test_recording_a_provider_class_no_other_process_can_import_warns(caplog: pytest.LogCaptureFixture) -> None:
    class ScriptProvider(FakeCloudProvider):  # like a class defined in a script run as __main__
        pass

    cluster = make_cluster(ScriptProvider(FakeCloud()), name=NAME)
    with caplog.at_level("WARNING", logger="dockerparallel"):
        cluster.start_cluster(timeout=5)
    assert any("cannot rebuild" in r.getMessage() and "ScriptProvider" in r.getMessage() for r in caplog.records)
    cluster.stop_cluster()
