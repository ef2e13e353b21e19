"""The rules of ECS on Fargate (``providers/ecs/_fargate.py``) and the provider's options, without AWS.

Pure functions only: no moto server, no network, no boto3 call.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockerparallel import DockerContainer, DockerHardware
from dockerparallel.container import ENV_SERVER_PORT
from dockerparallel.providers.ecs import _fargate as rules
from dockerparallel.providers.ecs._options import FargateOptions

IMAGE = "ghcr.io/dask/dask:latest"
TLS_KEY = "DASK_DISTRIBUTED__COMM__TLS__WORKER__KEY"


# -- sizes ----------------------------------------------------------------------------------------------------------


def test_every_fargate_size_is_a_documented_pair_smallest_first() -> None:
    sizes = rules.FARGATE_SIZES
    assert sizes[0] == (256, 512) and sizes[-1] == (rules.FARGATE_MAX_CPU, rules.FARGATE_MAX_MEMORY)
    assert list(sizes) == sorted(sizes) and len(set(sizes)) == len(sizes)
    assert {cpu for cpu, _ in sizes} == {256, 512, 1024, 2048, 4096, 8192, 16384}
    assert (1024, 2048) in sizes and (1024, 1536) not in sizes and (8192, 18432) not in sizes


@given(st.integers(1, rules.FARGATE_MAX_CPU), st.integers(1, rules.FARGATE_MAX_MEMORY))
def test_a_valid_size_is_kept_and_any_other_rounded_up(cpu: int, memory: int) -> None:
    size = rules.fargate_size(cpu, memory)
    assert size[0] >= cpu and size[1] >= memory
    if (cpu, memory) in rules.FARGATE_SIZES:
        assert size == (cpu, memory)


def test_workers_per_task_and_the_split_of_a_launch() -> None:
    container = DockerContainer(IMAGE, max_workers_per_container=8)
    assert rules.workers_per_task(container, DockerHardware(2048, 4096)) == 8
    assert rules.workers_per_task(container, DockerHardware(4096, 4096)) == 4  # 16 vCPU at most
    assert rules.counts(25, 10) == [10, 10, 5] and rules.counts(0, 10) == [] and rules.counts(10, 10) == [10]
    assert rules.batches(["a", "b", "c"], 2) == [["a", "b"], ["c"]] and rules.batches([], 2) == []


# -- task descriptions ----------------------------------------------------------------------------------------------


def _task(last: str, desired: str = "RUNNING", **more: Any) -> dict[str, Any]:
    return {"lastStatus": last, "desiredStatus": desired, **more}


@pytest.mark.parametrize("task, status", [
    (None, "stopped"), (_task("PROVISIONING"), "initializing"), (_task("PENDING"), "initializing"),
    (_task("ACTIVATING"), "initializing"), (_task("RUNNING"), "running"), (_task("PENDING", "STOPPED"), "stopped"),
    (_task("DEACTIVATING"), "stopped"), (_task("STOPPED", "STOPPED"), "stopped"), (_task("SOMETHING NEW"), "stopped"),
])
def test_task_status(task: dict[str, Any] | None, status: str) -> None:
    assert rules.task_status(task) == status


def test_task_address_prefers_the_eni_attachment_then_the_containers() -> None:
    eni = {"type": "ElasticNetworkInterface", "details": [
        {"name": "networkInterfaceId", "value": "eni-1"}, {"name": "privateIPv4Address", "value": "10.0.0.5"}]}
    other = {"type": "Something", "details": [{"name": "privateIPv4Address", "value": "10.9.9.9"}]}
    containers = [{"networkInterfaces": [{"privateIpv4Address": "10.0.0.7"}]}]
    assert rules.task_address({"attachments": [other, eni], "containers": containers}) == ("10.0.0.5", "eni-1")
    assert rules.task_address({"attachments": [other], "containers": containers}) == ("10.0.0.7", None)
    assert rules.task_address({"attachments": [{"type": "ElasticNetworkInterface", "details": []}]}) == (None, None)
    assert rules.task_address({}) == (None, None)


def test_what_a_task_says_of_itself() -> None:
    task = {"overrides": {"containerOverrides": [{"environment": [{"name": ENV_SERVER_PORT, "value": "9000"}]}]},
            "tags": [{"key": rules.TAG_WORKERS, "value": "3"}]}
    assert rules.task_environment(task) == {ENV_SERVER_PORT: "9000"} and rules.task_environment({}) == {}
    assert rules.task_workers(task) == 3
    assert rules.task_workers({"tags": [{"key": rules.TAG_WORKERS, "value": "x"}]}) == 1
    assert rules.task_workers({"tags": [{"key": rules.TAG_WORKERS, "value": "0"}]}) == 1
    assert rules.port_in({ENV_SERVER_PORT: "9000"}, 8786) == 9000
    assert [rules.port_in({ENV_SERVER_PORT: v}, 8786) for v in ("", "0", "70000", "-1", "abc")] == [8786] * 5


# -- names and tags -------------------------------------------------------------------------------------------------


def test_tags_in_both_aws_spellings() -> None:
    tags = {"a": "1", "b": "2"}
    assert rules.tag_map(rules.ecs_tags(tags)) == tags == rules.tag_map(rules.aws_tags(tags))
    assert rules.tag_map(None) == {}
    assert rules.task_tags("c", "worker", 4) == [{"key": rules.TAG_CLUSTER, "value": "c"},
                                                 {"key": rules.TAG_ROLE, "value": "worker"},
                                                 {"key": rules.TAG_WORKERS, "value": "4"}]
    assert rules.created_tags("c") == {rules.TAG_CREATED_BY: "c"}


@given(st.text(min_size=1, max_size=300), st.sampled_from(["", "-server", "-ecs-exec"]), st.integers(32, 255))
def test_aws_names_are_clean_bounded_and_distinct(base: str, suffix: str, limit: int) -> None:
    name = rules.aws_name(base, suffix, limit)
    assert len(name) <= limit and name.endswith(suffix)
    assert all(c.isascii() and (c.isalnum() or c in "_-") for c in name)
    assert rules.aws_name(base, suffix, limit) == name


def test_long_names_keep_a_hash_of_the_whole_name() -> None:
    first, second = "x" * 300 + "a", "x" * 300 + "b"
    assert rules.aws_name(first, "", 64) != rules.aws_name(second, "", 64)
    assert rules.aws_name("my.cluster", "-server", 255) == "my-cluster-server" == rules.family("my.cluster", "server")


# -- secrets --------------------------------------------------------------------------------------------------------


def test_secrets_are_named_by_a_digest_that_shows_no_value() -> None:
    from dockerparallel import DockerContainer

    container = DockerContainer("img", environment={"PLAIN": "1"}).with_secrets(
        **{TLS_KEY: "-----BEGIN PRIVATE KEY-----abc"})
    values = rules.secret_values(container)
    assert values == {TLS_KEY: "-----BEGIN PRIVATE KEY-----abc"}
    digest = rules.secret_digest("c", values)
    assert len(digest) == 16 and "abc" not in digest and rules.secret_digest("c", {}) == ""
    assert digest != rules.secret_digest("d", values) and digest != rules.secret_digest("c", {TLS_KEY: "other"})
    assert rules.secret_name("c", digest) == f"dockerparallel/c/env-{digest}"
    assert rules.secret_name("c", digest).startswith(rules.secret_prefix("c"))
    assert rules.container_secrets("arn:s", [TLS_KEY]) == [{"name": TLS_KEY, "valueFrom": f"arn:s:{TLS_KEY}::"}]
    policy = json.loads(rules.secrets_policy("arn:aws:secretsmanager:r:1:secret:dockerparallel/c/*"))
    assert policy["Statement"] == [{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                                    "Resource": "arn:aws:secretsmanager:r:1:secret:dockerparallel/c/*"}]


# -- requests -------------------------------------------------------------------------------------------------------


def test_overrides_hide_secret_variables_and_count_like_ecs() -> None:
    container = DockerContainer(IMAGE, command=["dask", "worker"], environment={"B": "2", "A": "1", TLS_KEY: "k"})
    value = rules.overrides("worker", container, (512, 1024), frozenset({TLS_KEY}))
    assert value == {"cpu": "512", "memory": "1024", "containerOverrides": [{
        "name": "worker", "environment": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
        "command": ["dask", "worker"]}]}
    assert rules.overrides_length(value) == len(json.dumps(value, separators=(",", ":")))
    assert "command" not in rules.overrides("w", DockerContainer(IMAGE), (256, 512))["containerOverrides"][0]


def test_network_and_ingress_rules() -> None:
    assert rules.network_configuration(["subnet-1"], ["sg-1"], False) == {"awsvpcConfiguration": {
        "subnets": ["subnet-1"], "securityGroups": ["sg-1"], "assignPublicIp": "DISABLED"}}
    permissions = rules.ingress_permissions("sg-1", [8787, 8786, 8786], "10.0.0.0/8")
    assert [(p["FromPort"], p["ToPort"]) for p in permissions] == [(8786, 8786), (8787, 8787), (0, 65535)]
    assert permissions[0]["IpRanges"][0]["CidrIp"] == "10.0.0.0/8"
    assert permissions[-1]["UserIdGroupPairs"][0]["GroupId"] == "sg-1"


def test_a_registered_task_definition_matches_its_request_and_only_that() -> None:
    place = rules.TaskDefinitionPlace("/dockerparallel/c", "us-east-1", "arn:aws:iam::1:role/r", (8787, 8786))
    secrets = rules.container_secrets("arn:s", [TLS_KEY])
    server = rules.task_definition_request("c", "server", IMAGE, place, secrets)
    worker = rules.task_definition_request("c", "worker", IMAGE, place, [])
    container = server["containerDefinitions"][0]
    assert [p["containerPort"] for p in container["portMappings"]] == [8786, 8787]
    assert container["secrets"] == secrets and "secrets" not in worker["containerDefinitions"][0]
    assert "portMappings" not in worker["containerDefinitions"][0]
    assert server["family"] == "c-server" and rules.tag_map(server["tags"]) == {rules.TAG_CREATED_BY: "c"}
    described = {**server, "taskDefinitionArn": "arn:td", "revision": 3, "status": "ACTIVE"}
    assert rules.definition_key(described) == rules.definition_key(server) != rules.definition_key(worker)
    other = rules.task_definition_request("c", "server", IMAGE + "-other", place, secrets)
    assert rules.definition_key(other) != rules.definition_key(server)


def test_a_launch_asks_for_the_missing_tasks_under_one_token() -> None:
    launch = rules.Launch("ecs-c", "arn:td", {"cpu": "256"}, {"awsvpcConfiguration": {}}, [])
    request = launch.request("dp-1", 3, 7)
    assert (request["count"], request["startedBy"], request["clientToken"]) == (3, "dp-1", "dp-1-7")
    assert (request["cluster"], request["taskDefinition"], request["launchType"]) == ("ecs-c", "arn:td", "FARGATE")


# -- options --------------------------------------------------------------------------------------------------------


def test_options_are_checked_and_grouped_and_rebuild_themselves() -> None:
    options = FargateOptions.check(region="eu-west-1", subnets="subnet-1", security_groups=["sg-1", "sg-2"],
                                   vpc_id="vpc-1", log_group="/logs", worker_task_definition="td:3",
                                   retry_delay=1, max_concurrent_calls=2)
    assert options.network.subnets == ("subnet-1",) and options.network.security_groups == ("sg-1", "sg-2")
    assert options.given.log_group == "/logs" and options.given.worker_task_definition == "td:3"
    assert options.api.retry_delay == 1.0 and options.max_concurrent_calls == 2
    spec = options.spec("eu-west-1")
    assert json.loads(json.dumps(spec)) == spec and FargateOptions.check(**spec) == options


@pytest.mark.parametrize("keywords, error, word", [
    ({"subnets": "bogus"}, ValueError, "subnets"), ({"vpc_id": "vpc"}, ValueError, "vpc_id"),
    ({"security_groups": []}, TypeError, "security_groups"), ({"region": 5}, TypeError, "region"),
    ({"log_group": ""}, TypeError, "log_group"), ({"assign_public_ip": "yes"}, TypeError, "assign_public_ip"),
    ({"ingress_cidr": "everyone"}, ValueError, "ingress_cidr"), ({"scheduler_port": 0}, ValueError, "scheduler_port"),
    ({"retry_delay": -1}, ValueError, "retry_delay"), ({"max_attempts": 0}, ValueError, "max_attempts"),
    ({"max_concurrent_calls": 17}, ValueError, "max_concurrent_calls"),
])
def test_a_bad_option_names_itself(keywords: dict[str, Any], error: type[Exception], word: str) -> None:
    with pytest.raises(error, match=word):
        FargateOptions.check(**keywords)
