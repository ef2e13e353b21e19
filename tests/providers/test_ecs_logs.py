"""ECSFargateProvider.get_docker_logs and the log group that ``down`` keeps, on a real moto server (conftest.py).

moto runs no container, so nothing writes to CloudWatch Logs by itself: each
test writes the events into the streams the awslogs driver would use
(``<role>/<role>/<task id>`` in ``/dockerparallel/<name>``) and checks what
the provider reads back.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any, Callable, Iterator

import pytest

from dockerparallel import DockerCluster, DockerContainer, ProviderError
from dockerparallel.container import ENV_SERVER_PORT

from .conftest import FAKE_SECRET, REGION, loopback_session

pytest.importorskip("boto3")
ecs_module = pytest.importorskip("dockerparallel.providers.ecs")
ECSFargateProvider = ecs_module.ECSFargateProvider

IMAGE = "ghcr.io/dask/dask:latest"
#: More events than one get_log_events page holds (10,000): the reader must page.
MANY = 10_050


def new_cluster(provider: Any, worker_number: int = 0, name: str | None = None) -> DockerCluster:
    worker = DockerContainer(IMAGE, name="worker", command=["dask", "worker"], max_workers_per_container=2)
    server = DockerContainer(IMAGE, name="server", command=["dask", "scheduler"], environment={ENV_SERVER_PORT: "8786"})
    return DockerCluster(provider, worker, server_container=server, worker_number=worker_number,
                         name=name or f"dplogs-{uuid.uuid4().hex[:8]}")


def logs_client(url: str) -> Any:
    """A plain CloudWatch Logs client on the moto server, to write what a task would have printed."""
    return loopback_session().client("logs", region_name=REGION, endpoint_url=url)


def write(url: str, group: str, stream: str, lines: list[str]) -> None:
    """Create ``stream`` in ``group`` and put ``lines`` into it, in order, at most 10,000 events a call."""
    client = logs_client(url)
    client.create_log_stream(logGroupName=group, logStreamName=stream)
    now = int(time.time() * 1000) - len(lines)  # AWS (and moto) refuse events older than 14 days
    for start in range(0, len(lines), 10_000):
        events = [{"timestamp": now + start + i, "message": line}
                  for i, line in enumerate(lines[start:start + 10_000])]
        client.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)


def group_exists(url: str, group: str) -> bool:
    found = logs_client(url).describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    return any(g["logGroupName"] == group for g in found)


def ecs(cluster: DockerCluster) -> Any:
    """The cluster's provider, an ECSFargateProvider (typed loosely for its ECS attributes)."""
    return cluster.provider


def server_arn(cluster: DockerCluster) -> str:
    """The ARN of the cluster's server task, as moto lists it."""
    client = loopback_session().client("ecs", region_name=REGION, endpoint_url=ecs(cluster).endpoint_url)
    arns = client.list_tasks(cluster=cluster.name, desiredStatus="RUNNING")["taskArns"]
    tasks = client.describe_tasks(cluster=cluster.name, tasks=arns, include=["TAGS"])["tasks"]
    (server,) = [t["taskArn"] for t in tasks if {"key": "dockerparallel-role", "value": "server"} in t["tags"]]
    return str(server)


def task_id(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def text(*lines: str) -> str:
    return "".join(line + "\n" for line in lines)


@pytest.fixture
def clusters(ecs_provider: Callable[..., Any]) -> Iterator[list[str]]:
    """Names of the clusters a test starts; each is deep-cleaned, its logs included, afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        try:
            new_cluster(ecs_provider(delete_logs=True), name=name).cleanup(deep=True)
        except ProviderError:
            logging.getLogger(__name__).debug("cleanup of %s failed", name, exc_info=True)


@pytest.fixture
def started(ecs_provider: Callable[..., Any], clusters: list[str]) -> Callable[..., DockerCluster]:
    """Factory of clusters whose server task (and workers) run on moto."""

    def start(worker_number: int = 0, **provider_options: Any) -> DockerCluster:
        cluster = new_cluster(ecs_provider(**provider_options), worker_number)
        clusters.append(cluster.name)
        cluster.start_cluster(timeout=10)
        return cluster

    return start


def _write_task_logs(cluster: DockerCluster) -> tuple[str, list[str]]:
    """Write a log for the server task and each worker task; return their ARNs (workers oldest first)."""
    url, group, server = ecs(cluster).endpoint_url, f"/dockerparallel/{cluster.name}", server_arn(cluster)
    workers = list(dict.fromkeys(ecs(cluster).get_managed_worker_handles()))
    write(url, group, f"server/server/{task_id(server)}", ["Scheduler at: tls://10.0.0.1:8786", "ready"])
    write(url, group, f"worker/worker/{task_id(workers[0])}", [f"line {i}" for i in range(MANY)])
    for arn in workers[1:]:
        write(url, group, f"worker/worker/{task_id(arn)}", [f"Start worker {arn}"])
    return server, workers


@pytest.mark.moto
def test_logs_of_every_task_server_first_and_kept_by_down(started: Callable[..., DockerCluster],
                                                          ecs_provider: Callable[..., Any],
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="dockerparallel")
    cluster = started(worker_number=3)  # 2 tasks: one of 2 workers, one of 1
    provider = ecs(cluster)
    url, group = provider.endpoint_url, f"/dockerparallel/{cluster.name}"
    server, workers = _write_task_logs(cluster)
    write(url, group, "worker/worker/forgotten0", ["a task ECS forgot"])  # listed from the log group
    logs = provider.get_docker_logs(cluster)
    assert list(logs) == ["server", *(f"worker {arn}" for arn in workers), "worker worker/worker/forgotten0"]
    assert logs["server"] == text("Scheduler at: tls://10.0.0.1:8786", "ready")
    assert logs[f"worker {workers[0]}"] == text(*(f"line {i}" for i in range(MANY)))  # every page, in order
    assert logs[f"worker {workers[1]}"] == text(f"Start worker {workers[1]}")

    cluster.scale(2)  # kills the task of 1 worker: stopped, its log still read
    assert set(provider.get_managed_worker_handles()) == {workers[0]}
    assert provider.get_docker_logs(cluster) == logs

    cluster.stop_cluster()
    cluster.cleanup(deep=True)
    assert group_exists(url, group)  # down keeps the log group ...
    fresh = ecs_provider()
    after = fresh.get_docker_logs(new_cluster(fresh, name=cluster.name))  # ... and a fresh provider reads it
    assert list(after)[0] == "server" and after["server"] == logs["server"]
    assert sorted(after.values()) == sorted(logs.values())

    remover = ecs_provider(delete_logs=True)
    new_cluster(remover, name=cluster.name).cleanup(deep=True)
    assert not group_exists(url, group)
    assert remover.get_docker_logs(new_cluster(remover, name=cluster.name)) == {}
    assert FAKE_SECRET not in caplog.text


@pytest.mark.moto
def test_a_task_without_a_stream_yet_has_no_entry(started: Callable[..., DockerCluster]) -> None:
    cluster = started(worker_number=2)
    (worker,) = set(ecs(cluster).get_managed_worker_handles())
    url, group = ecs(cluster).endpoint_url, f"/dockerparallel/{cluster.name}"
    assert ecs(cluster).get_docker_logs(cluster) == {}
    write(url, group, f"worker/worker/{task_id(worker)}", ["Start worker"])
    assert ecs(cluster).get_docker_logs(cluster) == {f"worker {worker}": text("Start worker")}


@pytest.mark.moto
def test_a_given_log_group_is_read_only_for_the_cluster_s_tasks(started: Callable[..., DockerCluster],
                                                                aws_env: str) -> None:
    shared = f"/shared/{uuid.uuid4().hex[:8]}"
    logs_client(aws_env).create_log_group(logGroupName=shared)
    cluster = started(worker_number=1, log_group=shared)
    server = server_arn(cluster)
    (worker,) = set(ecs(cluster).get_managed_worker_handles())
    write(aws_env, shared, f"server/server/{task_id(server)}", ["scheduler"])
    write(aws_env, shared, f"worker/worker/{task_id(worker)}", ["worker"])
    write(aws_env, shared, "worker/worker/another-cluster", ["not this cluster's"])
    expected = {"server": text("scheduler"), f"worker {worker}": text("worker")}
    assert cluster.provider.get_docker_logs(cluster) == expected
    cluster.stop_cluster()
    cluster.cleanup(deep=True)
    assert group_exists(aws_env, shared)  # given: never removed
    logs_client(aws_env).delete_log_group(logGroupName=shared)


def test_delete_logs_is_an_option_and_a_settable_attribute(aws_env: str) -> None:
    with pytest.raises(TypeError, match="delete_logs"):
        ECSFargateProvider(region=REGION, delete_logs="yes")
    provider = ECSFargateProvider(region=REGION, delete_logs=True)
    options = provider.spec_options()
    assert options["delete_logs"] is True
    assert ECSFargateProvider.from_spec_options(options, None).spec_options() == options
    provider.delete_logs = False
    assert provider.spec_options()["delete_logs"] is False
    assert ECSFargateProvider(region=REGION).delete_logs is False
