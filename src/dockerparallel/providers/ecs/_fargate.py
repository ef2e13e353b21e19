"""The rules of ECS on Fargate, as pure functions: no AWS call, no boto3.

Sizes (the valid ``(cpu, memory)`` pairs), the mapping of a task
description to a worker status and to an address, the ``run_task``
overrides and request, the task definition request, names and tags, and the
checks of the provider's options.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping, NamedTuple, Sequence

from ...container import ENV_SERVER_PORT, split
from ...provider import WorkerStatus

if TYPE_CHECKING:
    from ...container import DockerContainer, DockerHardware

TAG_CLUSTER = "dockerparallel-cluster"
TAG_ROLE = "dockerparallel-role"
TAG_WORKERS = "dockerparallel-workers"
TAG_CREATED_BY = "dockerparallel-created-by"

#: Environment variables whose values are secret: the Dask TLS variables
#: (``dockerparallel.backends.dask.TLS_ENVIRONMENT``). A task gets them from
#: Secrets Manager through its task definition, never in the ``run_task`` overrides.
#: Name of the inline policy of a created execution role that lets ECS read the cluster's secrets.
SECRETS_POLICY_NAME = "dockerparallel-secrets"

#: Most tasks one ``run_task`` call may start, and most tasks one ``describe_tasks`` call may name.
RUN_TASK_MAX = 10
DESCRIBE_TASKS_MAX = 100
#: Most ``run_task`` batches one scale-up may run at once (the ``max_concurrent_calls`` option).
MAX_CONCURRENT_RUN_CALLS = 16
#: Most characters ECS accepts in a task's overrides (command and environment, as JSON).
OVERRIDES_MAX = 8192

FARGATE_MAX_CPU = 16384
FARGATE_MAX_MEMORY = 122880

EXECUTION_POLICY = "arn:{partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
ASSUME_ROLE_POLICY = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                   "Action": "sts:AssumeRole"}],
})
SECRETS_RESOURCE = "arn:{partition}:secretsmanager:{region}:{account}:secret:{prefix}*"
TASK_ARN = re.compile(r"^arn:aws[a-z-]*:ecs:[a-z0-9-]+:\d{12}:task/\S+$")
_INITIALIZING = frozenset({"PROVISIONING", "PENDING", "ACTIVATING"})


# -- sizes ----------------------------------------------------------------------------------------------------------


def _fargate_sizes() -> tuple[tuple[int, int], ...]:
    ranges = [
        (256, (512, 1024, 2048)),
        (512, range(1024, 4097, 1024)),
        (1024, range(2048, 8193, 1024)),
        (2048, range(4096, 16385, 1024)),
        (4096, range(8192, 30721, 1024)),
        (8192, range(16384, 61441, 4096)),
        (16384, range(32768, FARGATE_MAX_MEMORY + 1, 8192)),
    ]
    return tuple((cpu, memory) for cpu, memories in ranges for memory in memories)


#: Every valid Fargate ``(cpu, memory)`` pair (cpu in 1/1024 core, memory in MB), smallest first.
FARGATE_SIZES: tuple[tuple[int, int], ...] = _fargate_sizes()


def fargate_size(cpu: int, memory: int) -> tuple[int, int]:
    """Return the smallest valid Fargate size that holds ``cpu`` and ``memory``.

    Parameters
    ----------
    cpu : int
        CPU in 1/1024 core.
    memory : int
        Memory in MB.

    Returns
    -------
    tuple of int
        ``(cpu, memory)``: the request itself when Fargate offers it, else the
        pair with the least CPU, then the least memory, that is at least as large.

    Raises
    ------
    ValueError
        When the request exceeds the largest Fargate task (16 vCPU, 120 GB).
    """
    for size in FARGATE_SIZES:
        if size[0] >= cpu and size[1] >= memory:
            return size
    raise ValueError(
        f"no Fargate task holds cpu={cpu} memory={memory} MB; the largest is "
        f"cpu={FARGATE_MAX_CPU} (16 vCPU) memory={FARGATE_MAX_MEMORY} MB"
    )


def workers_per_task(container: DockerContainer, hardware: DockerHardware) -> int:
    """Return how many workers of ``hardware`` one Fargate task of ``container`` holds.

    At most ``container.max_workers_per_container``, and no more than the
    largest Fargate task's CPU and memory allow.

    Raises
    ------
    ValueError
        When even one worker does not fit in the largest Fargate task.
    """
    limit = min(
        container.max_workers_per_container,
        FARGATE_MAX_CPU // hardware.cpu,
        FARGATE_MAX_MEMORY // hardware.memory,
    )
    if limit < 1:
        raise ValueError(
            f"hardware: one worker asks for cpu={hardware.cpu} memory={hardware.memory} MB, more than "
            f"the largest Fargate task (cpu={FARGATE_MAX_CPU}, memory={FARGATE_MAX_MEMORY} MB)"
        )
    return limit


def counts(total: int, most: int) -> list[int]:
    """Split ``total`` into parts of at most ``most``: ``counts(25, 10) == [10, 10, 5]``."""
    return split(total, most)


def batches(items: Sequence[str], most: int) -> list[list[str]]:
    """``items`` in consecutive lists of at most ``most``."""
    return [list(items[start: start + most]) for start in range(0, len(items), most)]


# -- task descriptions ----------------------------------------------------------------------------------------------


def task_status(task: Mapping[str, Any] | None) -> str:
    """Map an ECS task description to ``"initializing"``, ``"running"`` or ``"stopped"``.

    PROVISIONING, PENDING and ACTIVATING are initializing; RUNNING is running;
    every later state, a task asked to stop, and a missing task are stopped.
    """
    if task is None or task.get("desiredStatus") == "STOPPED":
        return WorkerStatus.STOPPED.value
    last = task.get("lastStatus")
    if last in _INITIALIZING:
        return WorkerStatus.INITIALIZING.value
    if last == "RUNNING":
        return WorkerStatus.RUNNING.value
    return WorkerStatus.STOPPED.value


def task_address(task: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """Return ``(private IPv4 address, network interface id)`` of an ECS task.

    Read from the task's ElasticNetworkInterface attachment (awsvpc mode);
    when that is absent, from its containers' network interfaces (no
    interface id then). ``(None, None)`` when the task has no address yet.
    """
    for attachment in task.get("attachments") or []:
        if attachment.get("type") != "ElasticNetworkInterface":
            continue
        details = {d.get("name"): d.get("value") for d in attachment.get("details") or []}
        if details.get("privateIPv4Address"):
            return details["privateIPv4Address"], details.get("networkInterfaceId")
    for container in task.get("containers") or []:
        for interface in container.get("networkInterfaces") or []:
            if interface.get("privateIpv4Address"):
                return interface["privateIpv4Address"], None
    return None, None


def task_environment(task: Mapping[str, Any]) -> dict[str, str]:
    """The environment a task's overrides set."""
    overrides = (task.get("overrides") or {}).get("containerOverrides") or []
    return {e.get("name", ""): e.get("value", "") for o in overrides for e in o.get("environment") or []}


def task_workers(task: Mapping[str, Any]) -> int:
    """The workers a task holds, from its ``dockerparallel-workers`` tag (1 when missing or broken)."""
    value = tag_map(task.get("tags")).get(TAG_WORKERS, "")
    return max(int(value), 1) if value.isdigit() else 1


def port_in(environment: Mapping[str, str], default: int) -> int:
    """The server port a container's environment names (``DOCKERPARALLEL_SERVER_PORT``), else ``default``."""
    value = environment.get(ENV_SERVER_PORT, "")
    return int(value) if value.isdigit() and 0 < int(value) < 65536 else default


# -- names and tags -------------------------------------------------------------------------------------------------


def tag_map(tags: Iterable[Mapping[str, str]] | None) -> dict[str, str]:
    """Tags as a dict, from ECS (``key``/``value``) or EC2/IAM (``Key``/``Value``) lists."""
    return {t.get("key", t.get("Key", "")): t.get("value", t.get("Value", "")) for t in tags or []}


def ecs_tags(tags: Mapping[str, str]) -> list[dict[str, str]]:
    """Tags as ECS takes them (``key``/``value``)."""
    return [{"key": k, "value": v} for k, v in tags.items()]


def aws_tags(tags: Mapping[str, str]) -> list[dict[str, str]]:
    """Tags as EC2, IAM and Secrets Manager take them (``Key``/``Value``)."""
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def created_tags(owner: str) -> dict[str, str]:
    """The tag that marks a resource as created for the cluster named ``owner``."""
    return {TAG_CREATED_BY: owner}


def task_tags(cluster: str, role: str, workers: int) -> list[dict[str, str]]:
    """The tags of a task: its cluster, its role and the workers it holds."""
    return ecs_tags({TAG_CLUSTER: cluster, TAG_ROLE: role, TAG_WORKERS: str(workers)})


def aws_name(base: str, suffix: str, limit: int) -> str:
    """``base + suffix`` with characters AWS names refuse replaced, shortened with a hash to ``limit``."""
    clean = re.sub(r"[^A-Za-z0-9_-]", "-", base)
    if len(clean) + len(suffix) > limit:
        digest = hashlib.sha1(base.encode()).hexdigest()[:8]
        clean = f"{clean[: limit - len(suffix) - 9]}-{digest}"
    return clean + suffix


def default_log_group(owner: str) -> str:
    """The log group created for the cluster named ``owner`` (unless one is given): ``/dockerparallel/<name>``."""
    return f"/dockerparallel/{aws_name(owner, '', 200)}"


def family(owner: str, role: str) -> str:
    """The task definition family of ``role`` (server or worker) of the cluster named ``owner``."""
    return aws_name(owner, f"-{role}", 255)


# -- secrets --------------------------------------------------------------------------------------------------------


def secret_values(container: DockerContainer) -> dict[str, str]:
    """The secret variables of ``container`` (those it marks in ``secret_variables``)."""
    return container.secrets()


def secret_digest(owner: str, values: Mapping[str, str]) -> str:
    """16 hex digits of the SHA-256 of ``values`` (``""`` for none): names them without showing them."""
    if not values:
        return ""
    data = json.dumps([owner, sorted(values.items())], separators=(",", ":"))
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def secret_prefix(owner: str) -> str:
    """Where the secrets of the cluster named ``owner`` live in Secrets Manager."""
    return f"dockerparallel/{aws_name(owner, '', 200)}/"


def secret_name(owner: str, digest: str) -> str:
    """The name of the secret of the cluster named ``owner`` that holds the values of ``digest``."""
    return f"{secret_prefix(owner)}env-{digest}"


def container_secrets(secret_arn: str, names: Iterable[str]) -> list[dict[str, str]]:
    """A container definition's ``secrets``: each name read from its key of the JSON secret ``secret_arn``."""
    return [{"name": name, "valueFrom": f"{secret_arn}:{name}::"} for name in sorted(names)]


def secrets_policy(resource: str) -> str:
    """The inline policy (JSON) that lets an execution role read the secrets ``resource``."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": resource}]})


# -- requests -------------------------------------------------------------------------------------------------------


def overrides(container_name: str, container: DockerContainer, size: tuple[int, int],
              hidden: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The ``run_task`` overrides: command, size and the environment but for the ``hidden`` variables."""
    environment = sorted((k, v) for k, v in container.environment.items() if k not in hidden)
    override: dict[str, Any] = {
        "name": container_name,
        "environment": [{"name": k, "value": v} for k, v in environment],
    }
    if container.command:
        override["command"] = list(container.command)
    return {"cpu": str(size[0]), "memory": str(size[1]), "containerOverrides": [override]}


def overrides_length(value: Mapping[str, Any]) -> int:
    """The characters ``value`` takes as ECS counts them (compact JSON)."""
    return len(json.dumps(value, separators=(",", ":")))


def network_configuration(subnets: Sequence[str], groups: Sequence[str], public_ip: bool) -> dict[str, Any]:
    """The ``networkConfiguration`` of a task in awsvpc mode."""
    return {"awsvpcConfiguration": {"subnets": list(subnets), "securityGroups": list(groups),
                                    "assignPublicIp": "ENABLED" if public_ip else "DISABLED"}}


def ingress_permissions(group_id: str, ports: Iterable[int], cidr: str) -> list[dict[str, Any]]:
    """Inbound rules of a created security group: ``ports`` from ``cidr``, every TCP port within the group."""
    public = [{"IpProtocol": "tcp", "FromPort": port, "ToPort": port,
               "IpRanges": [{"CidrIp": cidr, "Description": "dask scheduler and dashboard"}]}
              for port in sorted(set(ports))]
    internal = {"IpProtocol": "tcp", "FromPort": 0, "ToPort": 65535,
                "UserIdGroupPairs": [{"GroupId": group_id, "Description": "tasks of the same cluster"}]}
    return [*public, internal]


def task_definition_request(owner: str, role: str, image: str, where: TaskDefinitionPlace,
                            secrets: list[dict[str, str]]) -> dict[str, Any]:
    """The ``register_task_definition`` arguments of ``role`` (server or worker) of the cluster ``owner``."""
    container: dict[str, Any] = {
        "name": role, "image": image, "essential": True,
        # A soft reservation far below any Fargate size: it changes nothing on
        # Fargate, and moto needs a container-level memory value to run a task.
        "memoryReservation": 128,
        "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": where.log_group, "awslogs-region": where.region, "awslogs-stream-prefix": role}},
    }
    if role == "server":
        container["portMappings"] = [{"containerPort": p, "protocol": "tcp"} for p in sorted(set(where.ports))]
    if secrets:
        container["secrets"] = secrets
    return {
        "family": family(owner, role), "containerDefinitions": [container],
        "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"], "cpu": "1024", "memory": "2048",
        "executionRoleArn": where.execution_role_arn, "tags": ecs_tags(created_tags(owner)),
    }


def definition_key(definition: Mapping[str, Any]) -> tuple[Any, ...]:
    """What must match for an existing task definition to be reused."""
    container = (definition.get("containerDefinitions") or [{}])[0]
    ports = tuple(sorted(p.get("containerPort", 0) for p in container.get("portMappings") or []))
    log_group = ((container.get("logConfiguration") or {}).get("options") or {}).get("awslogs-group")
    secrets = tuple(sorted((s.get("name"), s.get("valueFrom")) for s in container.get("secrets") or []))
    return (container.get("name"), container.get("image"), ports, log_group, secrets,
            definition.get("executionRoleArn"), definition.get("networkMode"))


# -- checks of options ----------------------------------------------------------------------------------------------


def check_ids(value: str | Sequence[str] | None, name: str, prefix: str) -> tuple[str, ...] | None:
    """``None``, or a non-empty tuple of AWS ids starting with ``prefix``; a single string is one id."""
    if value is None:
        return None
    ids = (value,) if isinstance(value, str) else value
    if not isinstance(ids, (list, tuple)) or not ids:
        raise TypeError(f"{name} must be an id or a non-empty list of ids, got {value!r}")
    for one in ids:
        if not isinstance(one, str) or not one.startswith(prefix):
            raise ValueError(f"{name} must hold ids starting with {prefix!r}, got {one!r}")
    return tuple(ids)


def check_text(value: str | None, name: str) -> str | None:
    """``value`` when it is ``None`` or a non-empty string; else ``TypeError`` naming ``name``."""
    if value is not None and (not isinstance(value, str) or not value):
        raise TypeError(f"{name} must be a non-empty string or None, got {value!r}")
    return value


def check_seconds(value: float, name: str) -> float:
    """``value`` as a float number of seconds >= 0; else ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
    return float(value)


# -- plain data -----------------------------------------------------------------------------------------------------


@dataclass
class FargateResources:
    """The AWS resources of one cluster, found or created by ``initialize_cloud_provider``.

    ``created`` names the kinds this cluster created (``"ecs_cluster"``,
    ``"execution_role"``, ``"log_group"``, ``"security_group"``,
    ``"task_definition:server"``, ``"task_definition:worker"``, and
    ``"secrets"`` when its containers have secret variables); a deep
    cleanup removes those and nothing else.
    """

    owner: str
    ecs_cluster: str
    vpc_id: str | None = None
    subnets: list[str] = field(default_factory=list)
    security_groups: list[str] = field(default_factory=list)
    execution_role_arn: str | None = None
    log_group: str | None = None
    task_definitions: dict[str, str] = field(default_factory=dict)
    created: set[str] = field(default_factory=set)


class TaskDefinitionPlace(NamedTuple):
    """Where a registered task definition points: logs, region, execution role, published ports."""

    log_group: str | None
    region: str
    execution_role_arn: str | None
    ports: tuple[int, ...]


@dataclass(frozen=True)
class Launch:
    """Everything one ``run_task`` call needs except its token and count."""

    ecs_cluster: str
    task_definition: str
    overrides: dict[str, Any]
    network: dict[str, Any]
    tags: list[dict[str, str]]

    def request(self, token: str, count: int, have: int) -> dict[str, Any]:
        """The ``run_task`` arguments for ``count`` more tasks, ``have`` of the token's having started."""
        return {
            "cluster": self.ecs_cluster, "taskDefinition": self.task_definition, "launchType": "FARGATE",
            "count": count, "startedBy": token, "clientToken": f"{token}-{have}",
            "overrides": self.overrides, "networkConfiguration": self.network, "tags": self.tags,
        }


class TaskDefinition(NamedTuple):
    """A task definition to run: its ARN, its container's name, the variables its ``secrets`` give."""

    arn: str
    container: str
    from_secrets: frozenset[str]
