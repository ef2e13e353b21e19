"""Workers start as soon as the server's address is known: a cluster is ready after one boot, not two."""

from __future__ import annotations

import time
from typing import Any

import pytest

from dockerparallel import ClusterStateError
from dockerparallel.testing import FakeCloud, FakeCloudProvider

from ._helpers import make_cluster

BOOT = 1.0


class Watching(FakeCloudProvider):
    """Records the server's status at each run call."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.server_at_run: list[str] = []

    def run_docker_worker_containers(self, cluster: Any, *args: Any, **kwargs: Any) -> list[str]:
        self.server_at_run.append(super().get_server_status(cluster))
        return super().run_docker_worker_containers(cluster, *args, **kwargs)


def test_workers_start_while_the_server_boots() -> None:
    provider = Watching(FakeCloud(), boot_delay=BOOT)
    cluster = make_cluster(provider, name="early", worker_number=8)
    started = time.monotonic()
    cluster.start_cluster(timeout=10)
    assert provider.server_at_run[0] == "initializing"
    while cluster.get_worker_numbers().running < 8:
        time.sleep(0.01)
    elapsed = time.monotonic() - started
    assert elapsed < 1.5 * BOOT, f"all workers ran after {elapsed:.2f} s: two boots, not one"
    cluster.stop_cluster()


class ServerDies(FakeCloudProvider):
    """The server container stops while it boots."""

    def get_server_status(self, cluster: Any, verbose: int = 0) -> str:
        status = super().get_server_status(cluster, verbose)
        if status == "initializing" and self.calls["run_docker_worker_containers"]:
            self.stop_docker_server(cluster)
            return "stopped"
        return status


def test_a_server_that_fails_takes_its_early_workers_down() -> None:
    provider = ServerDies(FakeCloud(), boot_delay=5.0)
    cluster = make_cluster(provider, name="early-fail", worker_number=6)
    with pytest.raises(ClusterStateError, match="stopped while starting"):
        cluster.start_cluster(timeout=10)
    assert provider.calls["run_docker_worker_containers"] >= 1  # they did start early
    assert provider.cloud.live() == [], "early workers of a failed server were left running"
