"""Fixed regression tests for bugs that only the random tests used to catch, or that nothing caught."""

from __future__ import annotations

from typing import Any

import pytest

from dockerparallel import DockerCluster
from dockerparallel.testing import FakeCloud, FakeCloudProvider

from .._helpers import handle_counts, live_worker_counts, started_cluster, worker_container

#: Workers per container in the minimal sequence found by the stateful test.
PER_CONTAINER = 3


class KillRecorder(FakeCloudProvider):
    """Records the handles every call of the kill primitive receives."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kill_calls: list[list[str]] = []

    def kill_docker_worker_containers(self, cluster: Any, worker_handles: list[str], verbose: int = 0) -> list[bool]:
        self.kill_calls.append(list(worker_handles))
        return super().kill_docker_worker_containers(cluster, worker_handles, verbose)

    def killed(self) -> list[str]:
        """Every handle the kill primitive received, in order, repeats included."""
        return [h for call in self.kill_calls for h in call]


@pytest.fixture
def recorder(cloud: FakeCloud) -> KillRecorder:
    return KillRecorder(cloud)


@pytest.fixture
def cluster3(recorder: KillRecorder) -> DockerCluster:
    """A started cluster packing three workers per container."""
    return started_cluster(recorder, worker_container(PER_CONTAINER))


# -- scale-down planning must skip kill-pending entries --------------------------------------------


def test_scale_down_over_a_failed_kill_plans_only_active_workers(cluster3: DockerCluster,
                                                                 recorder: KillRecorder) -> None:
    """Scale to 6, kills start failing, scale to 1, scale to 0: no worker may stay active.

    The minimal sequence found by the stateful test: planning the second
    scale-down over every ledger entry picks the container whose kill is
    already pending again, and leaves the other one's 3 workers running.
    """
    ledger = recorder.worker_ledger
    cluster3.set_worker_number(6)
    first, second = ledger.handles()  # two containers of 3 workers, the second newer
    assert handle_counts(recorder.get_managed_worker_handles()) == {first: 3, second: 3}

    recorder.kill_failure_rate = 1.0
    cluster3.set_worker_number(1)  # removes 3 (no container holds 5): the newer one, whose kill fails
    assert ledger.pending_kills() == [second] and ledger.workers() == 3

    cluster3.set_worker_number(0)
    assert ledger.workers() == 0, f"{ledger.workers()} workers left active after scaling to 0"
    assert sorted(ledger.pending_kills()) == sorted([first, second])
    assert [first] in recorder.kill_calls  # the scale-down chose the active container

    recorder.faults_off()
    recorder.refresh_workers(cluster3)  # the pending kills are retried and succeed
    assert len(ledger) == 0 and live_worker_counts(recorder.cloud) == {}


# -- kill_worker_handles kills each handle once --------------------------------------------------------


def test_kill_worker_handles_kills_a_repeated_handle_once(cluster3: DockerCluster, recorder: KillRecorder) -> None:
    cluster3.set_worker_number(6)
    victim, other = recorder.worker_ledger.handles()
    recorder.kill_calls.clear()

    recorder.kill_worker_handles(cluster3, [victim, victim])
    assert recorder.kill_calls == [[victim]]
    assert victim not in recorder.worker_ledger and live_worker_counts(recorder.cloud) == {other: 3}


def test_kill_worker_handles_of_shared_handles_kills_each_container_once(cluster3: DockerCluster,
                                                                        recorder: KillRecorder) -> None:
    """The expanded handles (one per worker, as the managed layer lists them) kill each container once."""
    cluster3.set_worker_number(6)
    expanded = recorder.get_managed_worker_handles()
    assert len(expanded) == 6 and len(set(expanded)) == 2
    recorder.kill_calls.clear()

    recorder.kill_worker_handles(cluster3, iter(expanded))
    assert sorted(recorder.killed()) == sorted(set(expanded))
    assert len(recorder.worker_ledger) == 0 and live_worker_counts(recorder.cloud) == {}
