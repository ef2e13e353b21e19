"""DockerProvider.get_docker_logs: what real Dask containers printed, the server first, live or exited.

The engine tests need a Docker Engine and the test image (see docker_fixtures.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from dockerparallel import DockerCluster
from dockerparallel.providers._docker_engines import log_entries
from dockerparallel.providers.docker import DockerProvider

from .docker_fixtures import (  # noqa: F401 - fixtures are used by name
    cluster_name,
    dask_worker_container,
    docker_client,
    docker_cluster,
    labelled,
    wait_for,
)

#: The startup lines of the Dask scheduler and of a Dask worker.
SCHEDULER_LINE = "Scheduler at"
WORKER_LINE = "Start worker at"


def test_entries_are_the_newest_server_first_then_workers_oldest_first() -> None:
    def box(cid: str, role: str, created: int) -> dict[str, Any]:
        return {"Id": cid, "Created": created, "Labels": {"dockerparallel.role": role}}

    boxes = [(1, box("w2", "worker", 30)), (0, box("s-old", "server", 5)), (0, box("w1", "worker", 20)),
             (0, box("s-new", "server", 10)), (1, box("other", "unknown", 1))]
    entries = log_entries(boxes, lambda index, cid: f"{index}/{cid}")
    assert entries == [("server", 0, "s-new"), ("server 0/s-old", 0, "s-old"),
                       ("worker 0/w1", 0, "w1"), ("worker 1/w2", 1, "w2")]


@pytest.mark.docker
def test_logs_of_the_server_and_every_worker_container_live_or_exited(
    docker_client: Any, docker_cluster: DockerCluster,  # noqa: F811
) -> None:
    provider = docker_cluster.provider
    assert isinstance(provider, DockerProvider)
    docker_cluster.set_worker_number(4)  # two containers of two workers
    handles = sorted(set(provider.get_managed_worker_handles()))
    assert len(handles) == 2

    def started() -> bool:
        logs = provider.get_docker_logs(docker_cluster)
        return all(logs.get(f"worker {handle}", "").count(WORKER_LINE) == 2 for handle in handles)

    wait_for(started, 90, "both workers of each container to print their startup line")
    logs = provider.get_docker_logs(docker_cluster)
    assert list(logs)[0] == "server" and sorted(list(logs)[1:]) == [f"worker {handle}" for handle in handles]
    assert SCHEDULER_LINE in logs["server"]

    docker_client.api.kill(handles[0])  # exited, not removed: its log stays readable
    wait_for(lambda: any(box["State"] == "exited" for box in labelled(docker_client, docker_cluster.name, "worker")),
             30, "the killed container to exit")
    after = provider.get_docker_logs(docker_cluster)
    assert list(after) == list(logs) and WORKER_LINE in after[f"worker {handles[0]}"]
    assert after[f"worker {handles[0]}"].startswith(logs[f"worker {handles[0]}"][:200])

    fresh = DockerProvider(**provider.spec_options())  # another process reads them from the labels alone
    assert list(fresh.get_docker_logs(docker_cluster)) == list(logs)


@pytest.mark.docker
def test_a_cluster_without_containers_has_no_logs(docker_client: Any, cluster_name: str) -> None:  # noqa: F811
    from .docker_fixtures import dask_container

    cluster = DockerCluster(DockerProvider(pull=False), dask_container(), name=cluster_name)
    assert cluster.provider.get_docker_logs(cluster) == {}
