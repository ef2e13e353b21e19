"""ECSFargateProvider: pure parts, then the whole lifecycle against a real moto server (conftest.py).

moto never runs containers: a Fargate task is RUNNING as soon as run_task
returns (the conftest keeps it there until stop_task), its ENI gets a private
address and no public one. What these tests check is everything the provider
says to AWS and how it reads the answers.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
import uuid
from collections import Counter
from typing import Any, Callable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockerparallel import DockerCluster, DockerContainer, DockerHardware, PartialLaunchError, ProviderError
from dockerparallel import ProviderThrottled
from dockerparallel.container import ENV_SERVER_PORT, ENV_WORKER_NUMBER
from dockerparallel.testing import check_provider

from .conftest import FAKE_SECRET, KEEP_RUNNING, REGION, loopback_session

boto3 = pytest.importorskip("boto3")
ecs_module = pytest.importorskip("dockerparallel.providers.ecs")
from botocore.exceptions import ClientError, ConnectTimeoutError, ReadTimeoutError  # noqa: E402

ECSFargateProvider = ecs_module.ECSFargateProvider
FARGATE_SIZES = ecs_module.FARGATE_SIZES
fargate_size = ecs_module.fargate_size
task_address = ecs_module.task_address
task_status = ecs_module.task_status
workers_per_task = ecs_module.workers_per_task

IMAGE = "ghcr.io/dask/dask:latest"
EVERYTHING_CREATED = {"ecs_cluster", "execution_role", "log_group", "security_group",
                      "task_definition:server", "task_definition:worker"}


def worker_container(per_task: int = 4) -> DockerContainer:
    return DockerContainer(IMAGE, name="worker", command=["dask", "worker"], max_workers_per_container=per_task)


def server_container() -> DockerContainer:
    return DockerContainer(IMAGE, name="server", command=["dask", "scheduler"],
                           environment={ENV_SERVER_PORT: "8786"})


def new_cluster(provider: Any, per_task: int = 4, name: str | None = None, **options: Any) -> DockerCluster:
    return DockerCluster(provider, worker_container(per_task), server_container=server_container(),
                         name=name or f"dptest-{uuid.uuid4().hex[:8]}", **options)


class ApiCalls:
    """Counts a provider's AWS calls by operation, seen through botocore's events."""

    def __init__(self, provider: Any, services: tuple[str, ...] = ("ecs", "ec2", "iam", "logs")) -> None:
        self.counts: Counter[str] = Counter()
        self.run_task_counts: list[int] = []
        for service in services:
            provider.client(service).meta.events.register("provide-client-params", self._seen)

    def _seen(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.counts[model.name] += 1
        if model.name == "RunTask":
            self.run_task_counts.append(params["count"])

    def creations(self) -> int:
        """How many calls created something."""
        return sum(n for op, n in self.counts.items() if op.startswith(("Create", "Register", "Attach")))

    def reset(self) -> None:
        """Forget the calls counted so far."""
        self.counts.clear()
        self.run_task_counts.clear()


def aws(url: str, service: str) -> Any:
    """A plain boto3 client on the moto server, for looking behind the provider's back."""
    return loopback_session().client(service, region_name=REGION, endpoint_url=url)


def live_tasks(url: str, cluster: DockerCluster, role: str = "worker") -> list[dict[str, Any]]:
    """The RUNNING tasks of ``role`` tagged with the cluster, as moto has them."""
    ecs = aws(url, "ecs")
    arns = ecs.list_tasks(cluster=cluster.name, desiredStatus="RUNNING")["taskArns"]
    if not arns:
        return []
    tasks = ecs.describe_tasks(cluster=cluster.name, tasks=arns, include=["TAGS"])["tasks"]
    return [t for t in tasks if {"key": "dockerparallel-role", "value": role} in t.get("tags", [])
            and t["lastStatus"] == "RUNNING"]


@pytest.fixture
def clusters(ecs_provider: Callable[..., Any]) -> Iterator[list[str]]:
    """Names of the clusters a test starts; each is deep-cleaned from a fresh provider afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        try:
            new_cluster(ecs_provider(), name=name).cleanup(deep=True)
        except ProviderError:
            pass


@pytest.fixture
def started(ecs_provider: Callable[..., Any], clusters: list[str]) -> Callable[..., DockerCluster]:
    """Factory of clusters whose server task runs on moto."""

    def start(per_task: int = 4, hardware: DockerHardware | None = None, **provider_options: Any) -> DockerCluster:
        cluster = new_cluster(ecs_provider(**provider_options), per_task, worker_hardware=hardware)
        clusters.append(cluster.name)
        cluster.start_cluster(timeout=10)
        return cluster

    return start


# -- pure parts ------------------------------------------------------------------------------------


@pytest.mark.parametrize("request_, size", [
    ((1024, 2048), (1024, 2048)),
    ((256, 512), (256, 512)),
    ((1000, 3000), (1024, 3072)),
    ((256, 3000), (512, 3072)),
    ((1024, 16384), (2048, 16384)),
    ((8192, 16500), (8192, 20480)),
    ((16384, 122880), (16384, 122880)),
])
def test_fargate_size_keeps_valid_pairs_and_upgrades_others(request_: tuple[int, int], size: tuple[int, int]) -> None:
    assert fargate_size(*request_) == size


def test_fargate_size_refuses_more_than_the_largest_task() -> None:
    with pytest.raises(ValueError, match="largest is cpu=16384"):
        fargate_size(16384, 122881)


@given(st.integers(1, 16384), st.integers(1, 122880))
def test_fargate_size_is_the_smallest_valid_pair_that_holds_the_request(cpu: int, memory: int) -> None:
    size = fargate_size(cpu, memory)
    assert size in FARGATE_SIZES and size[0] >= cpu and size[1] >= memory
    assert all(not (c >= cpu and m >= memory) for c, m in FARGATE_SIZES if (c, m) < size)


def test_workers_per_task_is_bounded_by_container_and_fargate() -> None:
    assert workers_per_task(worker_container(4), DockerHardware(1024, 2048)) == 4
    assert workers_per_task(worker_container(4), DockerHardware(8192, 16384)) == 2
    assert workers_per_task(worker_container(8), DockerHardware(1024, 61440)) == 2
    with pytest.raises(ValueError, match="hardware"):
        workers_per_task(worker_container(1), DockerHardware(16385, 2048))


def test_launch_capabilities_are_ten_full_tasks_per_call_and_the_concurrency_option() -> None:
    provider = ECSFargateProvider(region=REGION, max_concurrent_calls=6)
    assert provider.launch_capabilities(worker_container(4), DockerHardware(1024, 2048)) == \
        ecs_module.ProviderCapabilities(max_workers_per_call=40, max_concurrent_calls=6)
    assert provider.launch_capabilities(worker_container(4), DockerHardware(8192, 16384)).max_workers_per_call == 20
    assert ECSFargateProvider(region=REGION).launch_capabilities(
        worker_container(1), DockerHardware()).max_concurrent_calls == 4  # the default
    assert provider.spec_options()["max_concurrent_calls"] == 6
    with pytest.raises(ProviderError, match="launch_capabilities.*largest Fargate task"):
        provider.launch_capabilities(worker_container(1), DockerHardware(16385, 2048))


@pytest.mark.parametrize("value, error", [(0, ValueError), (17, ValueError), (2.5, ValueError),
                                          (True, TypeError), ("4", TypeError)])
def test_max_concurrent_calls_is_checked(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="max_concurrent_calls"):
        ECSFargateProvider(region=REGION, max_concurrent_calls=value)


@pytest.mark.parametrize("task, status", [
    (None, "stopped"),
    ({"lastStatus": "PROVISIONING", "desiredStatus": "RUNNING"}, "initializing"),
    ({"lastStatus": "PENDING", "desiredStatus": "RUNNING"}, "initializing"),
    ({"lastStatus": "ACTIVATING", "desiredStatus": "RUNNING"}, "initializing"),
    ({"lastStatus": "RUNNING", "desiredStatus": "RUNNING"}, "running"),
    ({"lastStatus": "RUNNING", "desiredStatus": "STOPPED"}, "stopped"),
    ({"lastStatus": "DEACTIVATING", "desiredStatus": "RUNNING"}, "stopped"),
    ({"lastStatus": "DEPROVISIONING", "desiredStatus": "STOPPED"}, "stopped"),
    ({"lastStatus": "STOPPED", "desiredStatus": "STOPPED"}, "stopped"),
])
def test_task_status_maps_every_ecs_state(task: dict[str, str] | None, status: str) -> None:
    assert task_status(task) == status


def test_the_container_marks_its_tls_variables_secret() -> None:
    from dockerparallel.backends.dask import TLS_ENVIRONMENT, DaskWorkerContainer, new_security

    container = DaskWorkerContainer(image=IMAGE).with_security(new_security())
    assert set(container.secret_variables) == set(TLS_ENVIRONMENT.values())
    assert set(container.server_container().secret_variables) == set(TLS_ENVIRONMENT.values())


def test_a_task_definition_with_other_secrets_is_not_reused() -> None:
    def definition(secret_arn: str) -> dict[str, Any]:
        return {"containerDefinitions": [{"name": "worker", "image": IMAGE, "secrets": [
            {"name": "DASK_DISTRIBUTED__COMM__TLS__WORKER__KEY", "valueFrom": f"{secret_arn}:KEY::"}]}]}

    key = ecs_module._definition_key
    assert key(definition("arn:a")) == key(definition("arn:a"))
    assert key(definition("arn:a")) != key(definition("arn:b"))
    assert key(definition("arn:a")) != key({"containerDefinitions": [{"name": "worker", "image": IMAGE}]})


def test_task_address_reads_the_eni_attachment_then_falls_back() -> None:
    eni = {"attachments": [{"type": "ElasticNetworkInterface", "details": [
        {"name": "networkInterfaceId", "value": "eni-1"}, {"name": "privateIPv4Address", "value": "10.0.0.5"}]}]}
    containers = {"attachments": [], "containers": [{"networkInterfaces": [{"privateIpv4Address": "10.0.0.6"}]}]}
    assert task_address(eni) == ("10.0.0.5", "eni-1")
    assert task_address(containers) == ("10.0.0.6", None)
    assert task_address({"lastStatus": "PROVISIONING"}) == (None, None)


@pytest.mark.parametrize("options, error, word", [
    ({"subnets": ["vpc-123"]}, ValueError, "subnets"),
    ({"subnets": []}, TypeError, "subnets"),
    ({"security_groups": [42]}, ValueError, "security_groups"),
    ({"vpc_id": "subnet-1"}, ValueError, "vpc_id"),
    ({"region": ""}, TypeError, "region"),
    ({"ingress_cidr": "everyone"}, ValueError, "ingress_cidr"),
    ({"scheduler_port": 70000}, ValueError, "scheduler_port"),
    ({"assign_public_ip": "yes"}, TypeError, "assign_public_ip"),
    ({"max_attempts": 0}, ValueError, "max_attempts"),
    ({"retry_delay": -1}, ValueError, "retry_delay"),
])
def test_bad_options_are_refused_by_name(options: dict[str, Any], error: type[Exception], word: str) -> None:
    with pytest.raises(error, match=word):
        ECSFargateProvider(**options)


def test_single_ids_are_accepted_as_strings() -> None:
    provider = ECSFargateProvider(subnets="subnet-1", security_groups="sg-1")
    assert provider.subnets == ("subnet-1",) and provider.security_groups == ("sg-1",)


def test_the_package_imports_without_boto3() -> None:
    code = ("import sys; sys.modules['boto3'] = None\n"
            "import dockerparallel, dockerparallel.providers.ecs as ecs\n"
            "from dockerparallel.providers import make_provider\n"
            "try:\n    make_provider('ecs')\nexcept ImportError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert "pip install 'dockerparallel[aws]'" in out.stdout


# -- credentials and secrets ---------------------------------------------------------------------------


@pytest.mark.moto
def test_missing_credentials_are_a_clear_error(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    provider = ECSFargateProvider(region=REGION, endpoint_url=aws_env, session=loopback_session())
    with pytest.raises(ProviderError, match="no AWS credentials found.*AWS_ACCESS_KEY_ID"):
        provider.initialize_cloud_provider(new_cluster(provider))


@pytest.mark.moto
def test_missing_region_is_a_clear_error(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    provider = ECSFargateProvider(endpoint_url=aws_env, session=loopback_session())
    with pytest.raises(ProviderError, match="no AWS region"):
        provider.client("ecs")


@pytest.mark.moto
def test_repr_shows_region_and_cluster_only(ecs_provider: Callable[..., Any]) -> None:
    provider = ecs_provider(ecs_cluster_name="shared")
    provider.client("ecs")
    assert repr(provider) == "<ECSFargateProvider region='us-east-1' ecs_cluster='shared'>"


# -- the lifecycle on moto ---------------------------------------------------------------------------------


def _check_initialize_twice(provider: Any, cluster: DockerCluster) -> Any:
    calls = ApiCalls(provider)
    provider.initialize_cloud_provider(cluster)
    first = provider.resources(cluster)
    assert first.created == EVERYTHING_CREATED
    assert calls.creations() == 7  # cluster, role (+ policy), log group, security group, 2 task definitions
    calls.reset()
    provider.initialize_cloud_provider(cluster)
    second = provider.resources(cluster)
    assert calls.creations() == 0, calls.counts
    assert second == first
    return second


def _check_worker_tasks(url: str, cluster: DockerCluster, handles: list[str]) -> None:
    per_task = Counter(handles)
    assert sorted(per_task.values()) == [1] + [4] * 6
    tasks = aws(url, "ecs").describe_tasks(cluster=cluster.name, tasks=list(per_task), include=["TAGS"])["tasks"]
    for task in tasks:
        workers = per_task[task["taskArn"]]
        assert task["startedBy"].startswith("dp-") and task["launchType"] == "FARGATE"
        assert (task["overrides"]["cpu"], task["overrides"]["memory"]) == (str(1024 * workers), str(2048 * workers))
        override = task["overrides"]["containerOverrides"][0]
        assert override["name"] == "worker" and override["command"] == ["dask", "worker"]
        assert {"name": ENV_WORKER_NUMBER, "value": str(workers)} in override["environment"]
        tags = {t["key"]: t["value"] for t in task["tags"]}
        assert tags == {"dockerparallel-cluster": cluster.name, "dockerparallel-role": "worker",
                        "dockerparallel-workers": str(workers)}


def _check_reconnect(fresh: Any, cluster: DockerCluster, address: Any) -> DockerCluster:
    twin = new_cluster(fresh, name=cluster.name)
    assert twin.cluster_exists()
    twin.reconnect()
    assert twin.is_server_running()
    assert twin.server_address() == address
    assert twin.get_worker_numbers()[:2] == (0, 8)
    assert not new_cluster(fresh, name="dptest-no-such-cluster").cluster_exists()
    return twin


def _check_everything_removed(url: str, resources: Any) -> None:
    ecs, ec2, iam, logs = (aws(url, s) for s in ("ecs", "ec2", "iam", "logs"))
    assert ecs.describe_clusters(clusters=[resources.ecs_cluster])["clusters"][0]["status"] == "INACTIVE"
    for arn in resources.task_definitions.values():
        assert ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]["status"] == "INACTIVE"
    assert not ec2.describe_security_groups(
        Filters=[{"Name": "group-id", "Values": resources.security_groups}])["SecurityGroups"]
    with pytest.raises(ClientError, match="NoSuchEntity"):
        iam.get_role(RoleName=resources.execution_role_arn.rsplit("/", 1)[-1])
    assert not logs.describe_log_groups(logGroupNamePrefix=resources.log_group)["logGroups"]
    assert ec2.describe_subnets(SubnetIds=resources.subnets)["Subnets"]  # found, not created: kept
    assert ec2.describe_vpcs(VpcIds=[resources.vpc_id])["Vpcs"]


@pytest.mark.moto
def test_full_lifecycle(ecs_provider: Callable[..., Any], clusters: list[str],
                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="dockerparallel")
    provider = ecs_provider()
    cluster = new_cluster(provider)
    clusters.append(cluster.name)
    url = provider.endpoint_url
    resources = _check_initialize_twice(provider, cluster)

    cluster.start_server()
    cluster.wait_for_server(timeout=10)
    address = cluster.server_address()
    (server_task,) = live_tasks(url, cluster, "server")
    assert (address.private_ip, address.private_port) == (task_address(server_task)[0], 8786)
    assert (address.public_ip, address.public_port) == (None, None)  # moto gives task ENIs no public IP

    calls = ApiCalls(provider)
    cluster.set_worker_number(25)
    assert calls.run_task_counts == [6, 1]  # 6 tasks of 4 workers, then 1 task of 1
    assert cluster.get_worker_numbers() == (0, 25, 25)
    _check_worker_tasks(url, cluster, provider.get_managed_worker_handles())

    calls.reset()
    cluster.set_worker_number(7)  # 18 is no sum of 4s and one 1: 17 go, 8 stay
    assert calls.counts["StopTask"] == 5 and calls.run_task_counts == []
    assert cluster.get_worker_numbers() == (0, 8, 7)
    assert len(live_tasks(url, cluster)) == 2

    twin = _check_reconnect(ecs_provider(delete_logs=True), cluster, address)
    calls.reset()
    cluster.set_worker_number(0)
    assert calls.counts["StopTask"] == 2
    assert cluster.get_worker_numbers() == (0, 0, 0) and not live_tasks(url, cluster)
    cluster.stop_server()
    assert cluster.server_status() == "stopped"

    twin.cleanup(deep=True)  # from the fresh provider: what was created is found by its tags
    _check_everything_removed(url, resources)
    assert not twin.cluster_exists()
    cluster.cleanup(deep=True)  # the first provider still holds the ids: a second cleanup is a no-op, not an error
    _check_everything_removed(url, resources)
    assert FAKE_SECRET not in caplog.text and FAKE_SECRET not in repr(provider) + repr(twin.provider)


@pytest.mark.moto
def test_reconnect_by_name_rebuilds_the_provider_from_its_options(started: Callable[..., DockerCluster]) -> None:
    cluster = started(ingress_cidr="203.0.113.0/24")
    cluster.set_worker_number(5)
    options = cluster.provider.spec_options()
    assert options["region"] == REGION and options["ingress_cidr"] == "203.0.113.0/24"
    assert FAKE_SECRET not in json.dumps(options)
    again = DockerCluster.reconnect(cluster.name)
    assert isinstance(again.provider, ECSFargateProvider) and again.provider.spec_options() == options
    assert again.is_server_running() and again.get_worker_numbers()[:2] == (0, 5)


@pytest.mark.moto
def test_a_first_scale_up_runs_concurrent_batches_and_registers_one_task_definition(
        started: Callable[..., DockerCluster], ecs_provider: Callable[..., Any], aws_env: str) -> None:
    cluster = started()
    other_image = DockerContainer(IMAGE + "-other", name="worker", command=["dask", "worker"],
                                  max_workers_per_container=4)
    twin = DockerCluster(ecs_provider(max_concurrent_calls=4), other_image, server_container=server_container(),
                         name=cluster.name)  # a fresh provider: its first launch finds and registers everything
    twin.reconnect()
    calls = ApiCalls(twin.provider)
    twin.set_worker_number(100)  # 25 tasks of 4: calls of 40, 40 and 20 workers, up to 4 at once
    assert sorted(calls.run_task_counts) == [5, 10, 10]
    assert calls.counts["RegisterTaskDefinition"] == 1  # the other image's; not one per concurrent call
    assert twin.get_worker_numbers() == (0, 100, 100)
    handles = twin.provider.get_managed_worker_handles()
    arns = [t["taskArn"] for t in live_tasks(aws_env, twin)]  # every worker task tagged with the cluster
    assert len(arns) == len(set(arns)) == 25 and set(arns) == set(handles)
    assert set(Counter(handles).values()) == {4}
    definitions = {t["taskDefinitionArn"] for t in live_tasks(aws_env, twin)}
    assert definitions == {twin.provider.resources(twin).task_definitions["worker"]}


@pytest.mark.moto
@pytest.mark.parametrize("concurrent, overlap", [(4, True), (1, False)])
def test_run_task_batches_overlap_only_when_allowed(started: Callable[..., DockerCluster], aws_env: str,
                                                     concurrent: int, overlap: bool) -> None:
    cluster = started(per_task=1, max_concurrent_calls=concurrent)
    lock = threading.Lock()
    in_flight = [0, 0]  # now, most

    def begin(**_: Any) -> None:
        with lock:
            in_flight[0] += 1
            in_flight[1] = max(in_flight)
        time.sleep(0.2)  # long enough for the other batches to start meanwhile

    def end(**_: Any) -> None:
        with lock:
            in_flight[0] -= 1

    events = cluster.provider.client("ecs").meta.events
    events.register("before-call.ecs.RunTask", begin)
    events.register("after-call.ecs.RunTask", end)
    cluster.set_worker_number(30)  # three batches of 10 tasks
    assert (in_flight[1] > 1) is overlap, in_flight
    assert len(live_tasks(aws_env, cluster)) == 30


@pytest.mark.moto
def test_conformance_ecs(ecs_provider: Callable[..., Any], aws_env: str) -> None:
    try:
        report = check_provider(lambda: ecs_provider(), worker_container(2),
                                server_container=server_container(), timeout=20, poll=0.05)
    finally:
        for arn in aws(aws_env, "ecs").list_clusters()["clusterArns"]:
            name = arn.rsplit("/", 1)[-1]
            if name.startswith("conformance-"):
                new_cluster(ecs_provider(), name=name).cleanup(deep=True)
    assert report.skipped == [] and report.passed_names == [
        "start cluster", "scale up to 5", "shared handles counted", "scale down to 3",
        "kill of unknown handles succeeds", "killed worker reports stopped", "update() heals",
        "reconnect from a fresh provider", "stop leaves nothing running"], str(report)


TLS_PREFIX = "DASK_DISTRIBUTED__COMM__TLS__"


def tls_cluster(provider: Any, name: str | None = None, **options: Any) -> DockerCluster:
    """A Dask cluster with the default security on ECS: TLS with per-cluster certificates."""
    from dockerparallel.backends.dask import DaskWorkerContainer

    return DockerCluster(provider, DaskWorkerContainer(max_workers_per_container=4),
                         name=name or f"dptest-{uuid.uuid4().hex[:8]}", **options)


def _check_overrides_hold_no_secret(url: str, cluster: DockerCluster) -> list[dict[str, Any]]:
    """Every live task of the cluster: no certificate in its overrides; returns them."""
    tasks = live_tasks(url, cluster, "server") + live_tasks(url, cluster, "worker")
    assert tasks
    for task in tasks:
        overrides = json.dumps(task["overrides"])
        assert "PRIVATE KEY" not in overrides and "CERTIFICATE" not in overrides and TLS_PREFIX not in overrides
        assert len(overrides) < 2048, len(overrides)  # the certificates took ~7.4 KB of the 8 KB ECS allows
        names = {e["name"] for e in task["overrides"]["containerOverrides"][0]["environment"]}
        assert "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION" in names  # plain variables still go there
    return tasks


def _check_secrets(url: str, cluster: DockerCluster, tasks: list[dict[str, Any]]) -> set[str]:
    """The task definitions give the TLS variables from secrets holding the cluster's PEMs; returns their ARNs."""
    from dockerparallel.backends.dask import TLS_ENVIRONMENT

    ecs, secretsmanager = aws(url, "ecs"), aws(url, "secretsmanager")
    arns = set()
    for definition_arn in {t["taskDefinitionArn"] for t in tasks}:
        container = ecs.describe_task_definition(taskDefinition=definition_arn)["taskDefinition"][
            "containerDefinitions"][0]
        assert not any(e["name"].startswith(TLS_PREFIX) for e in container.get("environment", []))
        given = {s["name"]: s["valueFrom"] for s in container["secrets"]}
        assert set(given) == set(TLS_ENVIRONMENT.values())
        for field, variable in TLS_ENVIRONMENT.items():
            arn, key = given[variable].removesuffix("::").rsplit(":", 1)
            assert key == variable and arn.startswith("arn:aws:secretsmanager:")
            value = json.loads(secretsmanager.get_secret_value(SecretId=arn)["SecretString"])[key]
            assert value == getattr(cluster.security, field)
            arns.add(arn)
    assert len(arns) == 1  # server and workers share the cluster's certificates: one secret
    for arn in arns:
        described = secretsmanager.describe_secret(SecretId=arn)
        assert described["Name"].startswith(f"dockerparallel/{cluster.name}/")
        assert {"Key": "dockerparallel-created-by", "Value": cluster.name} in described["Tags"]
    return arns


def _check_role_reads(url: str, cluster: DockerCluster, secret_arns: set[str]) -> None:
    """The created execution role's inline policy allows secretsmanager:GetSecretValue on the secrets."""
    role_name = cluster.provider.resources(cluster).execution_role_arn.rsplit("/", 1)[-1]
    iam = aws(url, "iam")
    assert ecs_module.SECRETS_POLICY_NAME in iam.list_role_policies(RoleName=role_name)["PolicyNames"]
    document = iam.get_role_policy(RoleName=role_name, PolicyName=ecs_module.SECRETS_POLICY_NAME)["PolicyDocument"]
    if isinstance(document, str):
        document = json.loads(urllib.parse.unquote(document))
    allowed = [s["Resource"] for s in document["Statement"]
               if s["Effect"] == "Allow" and s["Action"] == "secretsmanager:GetSecretValue"]
    for arn in secret_arns:
        assert any(fnmatch.fnmatchcase(arn, pattern) for pattern in allowed), (arn, allowed)
    assert not any(fnmatch.fnmatchcase(arn.replace(cluster.name, "other"), p) for p in allowed for arn in secret_arns)


def _secrets_of(url: str, cluster: DockerCluster) -> list[str]:
    found = aws(url, "secretsmanager").list_secrets(Filters=[{"Key": "name", "Values": [
        f"dockerparallel/{cluster.name}/"]}])["SecretList"]
    return [s["ARN"] for s in found]


@pytest.mark.moto
def test_a_dask_cluster_with_tls_runs_on_fargate(ecs_provider: Callable[..., Any], clusters: list[str],
                                                 aws_env: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="dockerparallel")
    cluster = tls_cluster(ecs_provider(), worker_number=6)
    clusters.append(cluster.name)
    cluster.start_cluster(timeout=10)
    assert cluster.get_worker_numbers() == (0, 6, 6)
    assert cluster.scheduler_address == f"tls://{cluster.server_address().private_ip}:8786"
    worker = live_tasks(aws_env, cluster)[0]["overrides"]["containerOverrides"][0]
    assert worker["command"][:3] == ["dask", "worker", cluster.scheduler_address]
    assert "secrets" in cluster.provider.resources(cluster).created
    secret_arns = _check_secrets(aws_env, cluster, _check_overrides_hold_no_secret(aws_env, cluster))
    _check_role_reads(aws_env, cluster, secret_arns)
    assert "PRIVATE KEY" not in caplog.text and "CERTIFICATE" not in caplog.text  # never in a log


@pytest.mark.moto
def test_tls_secrets_survive_a_reconnect_and_go_with_a_deep_cleanup(
        ecs_provider: Callable[..., Any], clusters: list[str], aws_env: str) -> None:
    cluster = tls_cluster(ecs_provider(), worker_number=4)
    clusters.append(cluster.name)
    cluster.start_cluster(timeout=10)
    (secret_arn,) = _secrets_of(aws_env, cluster)
    twin = tls_cluster(ecs_provider(), name=cluster.name, security=cluster.security)
    calls = ApiCalls(twin.provider, ("ecs", "ec2", "iam", "logs", "secretsmanager"))
    twin.reconnect()
    twin.set_worker_number(10)  # 1 task more of 4, 1 of 2: the same task definition, the same secret
    assert twin.get_worker_numbers() == (0, 10, 10)
    assert calls.creations() == 0 and calls.counts["PutSecretValue"] == 0, calls.counts
    tasks = _check_overrides_hold_no_secret(aws_env, twin)
    assert len({t["taskDefinitionArn"] for t in tasks}) == 2  # one server, one worker definition
    assert _check_secrets(aws_env, twin, tasks) == {secret_arn}

    other = tls_cluster(ecs_provider(), name=cluster.name)  # other certificates under the same name
    calls = ApiCalls(other.provider, ("ecs", "secretsmanager"))
    other.provider.initialize_cloud_provider(other)
    assert (calls.counts["CreateSecret"], calls.counts["RegisterTaskDefinition"]) == (1, 2)  # not reused
    assert len(_secrets_of(aws_env, cluster)) == 2

    twin.cleanup(deep=True)
    assert _secrets_of(aws_env, cluster) == []
    with pytest.raises(ClientError, match="ResourceNotFoundException"):
        aws(aws_env, "secretsmanager").describe_secret(SecretId=secret_arn)
    calls = ApiCalls(cluster.provider, ("secretsmanager",))
    cluster.cleanup(deep=True)  # again, from the first provider: nothing left, no error
    assert calls.counts["ListSecrets"] == 1 and calls.counts["DeleteSecret"] == 0


@pytest.mark.moto
def test_secrets_of_others_and_their_errors_are_left_alone(ecs_provider: Callable[..., Any], clusters: list[str],
                                                           aws_env: str) -> None:
    secretsmanager = aws(aws_env, "secretsmanager")
    cluster = tls_cluster(ecs_provider())
    clusters.append(cluster.name)
    mine = secretsmanager.create_secret(Name=f"dockerparallel/{cluster.name}/mine", SecretString="{}")["ARN"]
    provider = cluster.provider

    def refuse(params: dict[str, Any], **_: Any) -> None:  # AWS quoting the request back, as some errors do
        raise ClientError({"Error": {"Code": "ValidationException", "Message": params["SecretString"]}},
                          "CreateSecret")

    provider.client("secretsmanager").meta.events.register("provide-client-params.secretsmanager.CreateSecret",
                                                           refuse)
    with pytest.raises(ProviderError, match="ValidationException") as excinfo:
        provider.initialize_cloud_provider(cluster)
    shown = "".join(traceback.format_exception(excinfo.value)) + repr(excinfo.value)
    assert "PRIVATE KEY" not in shown and "CERTIFICATE" not in shown
    cluster.cleanup(deep=True)
    assert secretsmanager.describe_secret(SecretId=mine)["ARN"] == mine  # not tagged as created: kept
    secretsmanager.delete_secret(SecretId=mine, ForceDeleteWithoutRecovery=True)


@pytest.mark.moto
def test_a_given_task_definition_without_secrets_gets_the_tls_variables_in_overrides(
        ecs_provider: Callable[..., Any], clusters: list[str], aws_env: str,
        caplog: pytest.LogCaptureFixture) -> None:
    family = f"mine-{uuid.uuid4().hex[:6]}"
    arn = aws(aws_env, "ecs").register_task_definition(
        family=family, networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="1024", memory="2048",
        containerDefinitions=[{"name": "mine", "image": IMAGE, "memoryReservation": 128}],
    )["taskDefinition"]["taskDefinitionArn"]
    cluster = tls_cluster(ecs_provider(worker_task_definition=family), worker_number=1)
    clusters.append(cluster.name)
    cluster.start_cluster(timeout=10)
    (task,) = live_tasks(aws_env, cluster)
    assert task["taskDefinitionArn"] == arn
    names = {e["name"] for e in task["overrides"]["containerOverrides"][0]["environment"]}
    from dockerparallel.backends.dask import TLS_ENVIRONMENT

    assert {n for n in names if n.startswith(TLS_PREFIX)} == set(TLS_ENVIRONMENT.values())
    assert f"the worker task definition {family} was given and its secrets lack" in caplog.text
    (server,) = live_tasks(aws_env, cluster, "server")
    assert TLS_PREFIX not in json.dumps(server["overrides"])  # the server's definition is registered here
    aws(aws_env, "ecs").deregister_task_definition(taskDefinition=arn)


@pytest.mark.moto
def test_given_resources_are_used_and_kept(ecs_provider: Callable[..., Any], aws_env: str,
                                           clusters: list[str]) -> None:
    ec2, iam = aws(aws_env, "ec2"), aws(aws_env, "iam")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnet = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"][0]["SubnetId"]
    group = ec2.create_security_group(GroupName=f"mine-{uuid.uuid4().hex[:6]}", Description="mine",
                                      VpcId=vpc)["GroupId"]
    role = iam.create_role(RoleName=f"mine-{uuid.uuid4().hex[:6]}",
                           AssumeRolePolicyDocument=ecs_module._ASSUME_ROLE_POLICY)["Role"]["Arn"]
    provider = ecs_provider(subnets=[subnet], security_groups=[group], execution_role_arn=role)
    cluster = new_cluster(provider)
    clusters.append(cluster.name)
    cluster.start_cluster(timeout=10)
    resources = provider.resources(cluster)
    assert (resources.subnets, resources.security_groups, resources.execution_role_arn) == ([subnet], [group], role)
    assert resources.created == EVERYTHING_CREATED - {"security_group", "execution_role"}
    cluster.set_worker_number(3)
    task = live_tasks(aws_env, cluster)[0]
    assert task["attachments"][0]["details"][0] == {"name": "subnetId", "value": subnet}
    cluster.stop_cluster()
    cluster.cleanup(deep=True)
    assert ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"]
    assert iam.get_role(RoleName=role.rsplit("/", 1)[-1])["Role"]["Arn"] == role


@pytest.mark.moto
def test_invalid_hardware_is_upgraded_with_a_message(started: Callable[..., DockerCluster], aws_env: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    cluster = started(per_task=2, hardware=DockerHardware(cpu=1000, memory=1500))
    cluster.set_worker_number(2)
    assert "cpu=2000 memory=3000 MB is not a Fargate task size; using the nearest valid size " \
           "cpu=2048 memory=4096 MB" in caplog.text
    task = live_tasks(aws_env, cluster)[0]
    assert (task["overrides"]["cpu"], task["overrides"]["memory"]) == ("2048", "4096")


# -- faults ---------------------------------------------------------------------------------------------------


def _fail_once(provider: Any, event: str, error: Exception) -> list[int]:
    """Make the first call that reaches ``event`` raise ``error``; returns a list that grows per failure."""
    failed: list[int] = []

    def fail(**_: Any) -> None:
        if not failed:
            failed.append(1)
            raise error

    provider.client("ecs").meta.events.register(event, fail)
    return failed


@pytest.mark.moto
def test_a_run_task_that_times_out_after_starting_tasks_is_not_repeated(
        started: Callable[..., DockerCluster], aws_env: str) -> None:
    cluster = started()
    provider = cluster.provider
    calls = ApiCalls(provider)
    failed = _fail_once(provider, "after-call.ecs.RunTask", ReadTimeoutError(endpoint_url=aws_env))
    cluster.set_worker_number(8)
    assert failed == [1]
    assert calls.run_task_counts == [2]  # the tasks of the failed try were found by token and adopted
    assert calls.counts["ListTasks"] == 1
    assert cluster.get_worker_numbers() == (0, 8, 8)
    assert sorted(t["taskArn"] for t in live_tasks(aws_env, cluster)) == \
        sorted(set(provider.get_managed_worker_handles()))


@pytest.mark.moto
def test_a_run_task_that_fails_before_reaching_aws_is_tried_again(
        started: Callable[..., DockerCluster], aws_env: str) -> None:
    cluster = started()
    calls = ApiCalls(cluster.provider)
    _fail_once(cluster.provider, "before-call.ecs.RunTask", ConnectTimeoutError(endpoint_url=aws_env))
    cluster.set_worker_number(8)
    assert calls.run_task_counts == [2, 2]
    assert cluster.get_worker_numbers() == (0, 8, 8)
    assert len(live_tasks(aws_env, cluster)) == 2


@pytest.mark.moto
def test_throttling_that_does_not_end_raises_provider_throttled(
        started: Callable[..., DockerCluster], aws_env: str) -> None:
    cluster = started(max_attempts=3)
    calls = ApiCalls(cluster.provider)

    def throttle(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "RunTask")

    cluster.provider.client("ecs").meta.events.register("before-call.ecs.RunTask", throttle)
    with pytest.raises(ProviderThrottled, match="run_task 3 time"):
        cluster.set_worker_number(4)
    assert len(calls.run_task_counts) == 3
    assert cluster.get_worker_numbers() == (0, 0, 4) and not live_tasks(aws_env, cluster)


def _refuse_run_task_from(provider: Any, number: int) -> list[int]:
    """Make the ``number``-th ``run_task`` call and every later one fail for good; returns each call's count."""
    seen: list[int] = []
    lock = threading.Lock()

    def refuse(params: dict[str, Any], **_: Any) -> None:
        with lock:
            seen.append(params["count"])
            if len(seen) >= number:
                raise ClientError({"Error": {"Code": "InvalidParameterException", "Message": "no"}}, "RunTask")

    provider.client("ecs").meta.events.register("provide-client-params.ecs.RunTask", refuse)
    return seen


@pytest.mark.moto
def test_a_call_that_fails_for_good_keeps_the_tasks_already_started(
        started: Callable[..., DockerCluster], aws_env: str) -> None:
    cluster = started(per_task=2)
    seen = _refuse_run_task_from(cluster.provider, 2)
    with pytest.raises(PartialLaunchError, match="started 18 of 19"):
        cluster.set_worker_number(19)  # one call (up to 20 workers): 9 tasks of 2, then a task of 1
    assert seen == [9, 1]  # the task of 1 was refused: the 9 tasks already started are returned, not lost
    assert cluster.get_worker_numbers() == (0, 18, 19)
    assert sorted(t["taskArn"] for t in live_tasks(aws_env, cluster)) == \
        sorted(set(cluster.provider.get_managed_worker_handles()))


@pytest.mark.moto
def test_a_failed_batch_keeps_the_batches_already_started(started: Callable[..., DockerCluster],
                                                          aws_env: str) -> None:
    cluster = started(per_task=1, max_concurrent_calls=1)  # one batch at a time: which ones start is known
    calls = ApiCalls(cluster.provider)
    seen = _refuse_run_task_from(cluster.provider, 3)
    with pytest.raises(ProviderError, match="InvalidParameterException"):
        cluster.set_worker_number(45)  # batches of 10, 10, 10, 10, 5: the third fails, the rest are called off
    assert seen == [10, 10, 10, 10, 5][:len(seen)] and len(seen) >= 3 and calls.run_task_counts[:2] == [10, 10]
    assert cluster.get_worker_numbers() == (0, 20, 45)
    assert sorted(t["taskArn"] for t in live_tasks(aws_env, cluster)) == \
        sorted(set(cluster.provider.get_managed_worker_handles()))


@pytest.mark.moto
def test_overrides_longer_than_ecs_allows_start_nothing(started: Callable[..., DockerCluster], aws_env: str) -> None:
    cluster = started()
    big = worker_container().with_environment(BIG="x" * 8192)
    with pytest.raises(ProviderError, match="ECS allows 8192"):
        cluster.provider.run_docker_worker_containers(cluster, big, DockerHardware(), 1)
    assert not live_tasks(aws_env, cluster)


@pytest.mark.moto
def test_unknown_and_stopped_tasks_are_killed_and_stopped(started: Callable[..., DockerCluster],
                                                          aws_env: str) -> None:
    cluster = started()
    provider = cluster.provider
    cluster.set_worker_number(4)
    (live,) = set(provider.get_managed_worker_handles())
    unknown = live.rsplit("/", 1)[0] + "/00000000-0000-0000-0000-000000000000"
    calls = ApiCalls(provider)
    assert provider.kill_docker_worker_containers(cluster, [unknown, "not-an-arn", live]) == [True] * 3
    assert calls.counts["StopTask"] == 1
    assert provider.get_docker_worker_status(cluster, [unknown, "not-an-arn", live]) == ["stopped"] * 3
    (task,) = aws(aws_env, "ecs").describe_tasks(cluster=cluster.name, tasks=[live])["tasks"]
    assert (task["lastStatus"], task["desiredStatus"]) == ("STOPPED", "STOPPED")  # what moto reports after stop_task
    assert provider.kill_docker_worker_containers(cluster, [live]) == [True]
    assert calls.counts["StopTask"] == 1


@pytest.mark.moto
def test_tasks_moto_moves_past_running_are_stopped_and_replaced(
        started: Callable[..., DockerCluster], moto_transition: Callable[[dict[str, Any]], None]) -> None:
    cluster = started()
    cluster.set_worker_number(4)
    first = set(cluster.provider.get_managed_worker_handles())
    moto_transition({"progression": "manual", "times": 1})  # each describe moves a task one state on
    assert cluster.provider.get_docker_worker_status(cluster, sorted(first)) == ["stopped"]  # DEACTIVATING
    moto_transition(KEEP_RUNNING)
    cluster.update()
    assert set(cluster.provider.get_managed_worker_handles()).isdisjoint(first)
    assert cluster.get_worker_numbers() == (0, 4, 4)

