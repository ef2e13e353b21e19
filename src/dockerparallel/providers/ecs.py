"""`ECSFargateProvider`: the server and the workers as AWS ECS tasks on Fargate.

:meth:`ECSFargateProvider.initialize_cloud_provider` finds or creates what a
cluster needs (an ECS cluster, a task execution role, a log group, a
security group, the server and worker task definitions) and reads the
network (the default VPC's subnets unless you name yours). Everything it
creates carries the tag ``dockerparallel-created-by=<cluster name>``, so a
deep cleanup — even from another process — removes exactly that and nothing
it did not create. Ids you pass to the constructor are used as they are and
never created or removed.

Every task carries the tags ``dockerparallel-cluster``, ``dockerparallel-role``
and ``dockerparallel-workers``, so another process can find a running
cluster by its name. ``run_task`` is retried with backoff on throttling and
time-outs; each call carries a fresh ``startedBy`` token (and a matching
``clientToken``), and before a retry the tasks the failed try started are
looked up by that token and adopted instead of started twice. A large
scale-up runs as up to ``max_concurrent_calls`` batches of at most 10 tasks
at once (see :meth:`ECSFargateProvider.launch_capabilities`); everything a
launch touches is thread-safe.

Secret environment variables (:data:`SECRET_VARIABLES`: the cluster's TLS
certificates and private keys) never travel in the ``run_task`` overrides,
where anyone allowed ``ecs:DescribeTasks`` could read them: they are stored
once per cluster in one AWS Secrets Manager secret
(``dockerparallel/<cluster name>/env-<digest>``, a JSON object tagged like
the other created resources) that the task definitions reference in their
containers' ``secrets``. The created execution role gets an inline policy
that lets ECS read the cluster's secrets; a deep cleanup deletes them.

boto3 is an optional dependency: ``pip install 'dockerparallel[aws]'``.
Region and credentials come from boto3's usual chain (environment variables,
``~/.aws`` profiles, instance roles); nothing secret is stored, shown or
logged by this module.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import logging
import random
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, NamedTuple, Sequence

from .._errors import ProviderError, ProviderThrottled
from .._validation import check_count
from ..container import ENV_SERVER_PORT
from ..managed import ManagedCloudProvider, ProviderCapabilities
from ..provider import ClusterView, ServerAddress, WorkerStatus

try:  # the optional extra "aws"
    import boto3
    from botocore.config import Config
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
        ProfileNotFound,
        ReadTimeoutError,
    )
except ImportError as _exc:  # pragma: no cover - only without the extra
    boto3 = None
    _BOTO3_MISSING: ImportError | None = _exc
else:
    _BOTO3_MISSING = None

if TYPE_CHECKING:
    from ..container import DockerContainer, DockerHardware

logger = logging.getLogger("dockerparallel.providers.ecs")

TAG_CLUSTER = "dockerparallel-cluster"
TAG_ROLE = "dockerparallel-role"
TAG_WORKERS = "dockerparallel-workers"
TAG_CREATED_BY = "dockerparallel-created-by"

#: Environment variables whose values are secret: the Dask TLS variables
#: (``dockerparallel.backends.dask.TLS_ENVIRONMENT``). A task gets them from
#: Secrets Manager through its task definition, never in the ``run_task`` overrides.
SECRET_VARIABLES = frozenset({
    "DASK_DISTRIBUTED__COMM__TLS__CA_FILE",
    "DASK_DISTRIBUTED__COMM__TLS__SCHEDULER__CERT",
    "DASK_DISTRIBUTED__COMM__TLS__SCHEDULER__KEY",
    "DASK_DISTRIBUTED__COMM__TLS__WORKER__CERT",
    "DASK_DISTRIBUTED__COMM__TLS__WORKER__KEY",
})
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

_EXECUTION_POLICY = "arn:{partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
_ASSUME_ROLE_POLICY = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                   "Action": "sts:AssumeRole"}],
})
_SECRETS_RESOURCE = "arn:{partition}:secretsmanager:{region}:{account}:secret:{prefix}*"
_INITIALIZING = frozenset({"PROVISIONING", "PENDING", "ACTIVATING"})
_TASK_ARN = re.compile(r"^arn:aws[a-z-]*:ecs:[a-z0-9-]+:\d{12}:task/\S+$")
_THROTTLE_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded",
    "TooManyRequestsException", "RequestThrottled", "RequestThrottledException", "SlowDown",
})
_TRANSIENT_CODES = frozenset({
    "ServerException", "InternalError", "InternalFailure", "ServiceUnavailable",
    "RequestTimeout", "RequestTimeoutException",
})
_CREDENTIAL_CODES = frozenset({
    "UnrecognizedClientException", "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException",
    "AuthFailure", "InvalidSignatureException", "SignatureDoesNotMatch", "MissingAuthenticationToken",
})
_CREDENTIALS_HELP = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run 'aws configure' "
    "(see docs/fargate.md)"
)
_MAX_DELAY = 20.0


# -- Fargate sizes ---------------------------------------------------------------------


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


# -- plain helpers ---------------------------------------------------------------------------


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


def _tag_map(tags: Iterable[Mapping[str, str]] | None) -> dict[str, str]:
    """Tags as a dict, from ECS (``key``/``value``) or EC2/IAM (``Key``/``Value``) lists."""
    return {t.get("key", t.get("Key", "")): t.get("value", t.get("Value", "")) for t in tags or []}


def _ecs_tags(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in tags.items()]


def _aws_tags(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _aws_name(base: str, suffix: str, limit: int) -> str:
    """``base + suffix`` with characters AWS names refuse replaced, shortened with a hash to ``limit``."""
    clean = re.sub(r"[^A-Za-z0-9_-]", "-", base)
    if len(clean) + len(suffix) > limit:
        digest = hashlib.sha1(base.encode()).hexdigest()[:8]
        clean = f"{clean[: limit - len(suffix) - 9]}-{digest}"
    return clean + suffix


def _counts(total: int, most: int) -> list[int]:
    """Split ``total`` into parts of at most ``most``: ``_counts(25, 10) == [10, 10, 5]``."""
    return [min(most, total - start) for start in range(0, total, most)]


def _batches(items: Sequence[str], most: int) -> list[list[str]]:
    return [list(items[start: start + most]) for start in range(0, len(items), most)]


def _error_code(exc: BaseException) -> str:
    if _BOTO3_MISSING is None and isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def _already_gone(exc: BaseException) -> bool:
    """Whether ``exc`` says the resource does not exist (any AWS service's wording)."""
    code = _error_code(exc)
    return "NotFound" in code or code in ("NoSuchEntity", "ResourceNotFoundException") or (
        bool(code) and "does not exist" in str(exc))


def _error_kind(exc: BaseException) -> str | None:
    """``"credentials"``, ``"throttle"``, ``"transient"`` or ``None`` (not worth a retry)."""
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return "credentials"
    if isinstance(exc, (ReadTimeoutError, ConnectTimeoutError, EndpointConnectionError, ConnectionClosedError)):
        return "transient"
    if not isinstance(exc, ClientError):
        return None
    code = _error_code(exc)
    if code in _CREDENTIAL_CODES:
        return "credentials"
    if code in _THROTTLE_CODES:
        return "throttle"
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    if code in _TRANSIENT_CODES or status >= 500:
        return "transient"
    return None


def _say(verbose: int, message: str, *args: Any) -> None:
    logger.log(logging.INFO if verbose else logging.DEBUG, message, *args)


def _check_ids(value: str | Sequence[str] | None, name: str, prefix: str) -> tuple[str, ...] | None:
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


def _check_text(value: str | None, name: str) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise TypeError(f"{name} must be a non-empty string or None, got {value!r}")
    return value


# -- plain data --------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class _Launch:
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


class _TaskDefinition(NamedTuple):
    """A task definition to run: its ARN, its container's name, the variables its ``secrets`` give."""

    arn: str
    container: str
    from_secrets: frozenset[str]


def _secret_values(environment: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``environment`` that are secret (:data:`SECRET_VARIABLES`)."""
    return {k: v for k, v in environment.items() if k in SECRET_VARIABLES}


def _secret_digest(owner: str, values: Mapping[str, str]) -> str:
    """16 hex digits of the SHA-256 of ``values`` (``""`` for none): names them without showing them."""
    if not values:
        return ""
    data = json.dumps([owner, sorted(values.items())], separators=(",", ":"))
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def _secret_prefix(owner: str) -> str:
    """Where the secrets of the cluster named ``owner`` live in Secrets Manager."""
    return f"dockerparallel/{_aws_name(owner, '', 200)}/"


def _secret_name(owner: str, digest: str) -> str:
    return f"{_secret_prefix(owner)}env-{digest}"


def _container_secrets(secret_arn: str, names: Iterable[str]) -> list[dict[str, str]]:
    """A container definition's ``secrets``: each name read from its key of the JSON secret ``secret_arn``."""
    return [{"name": name, "valueFrom": f"{secret_arn}:{name}::"} for name in sorted(names)]


def _overrides(container_name: str, container: DockerContainer, size: tuple[int, int],
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


def _definition_key(definition: Mapping[str, Any]) -> tuple[Any, ...]:
    """What must match for an existing task definition to be reused."""
    container = (definition.get("containerDefinitions") or [{}])[0]
    ports = tuple(sorted(p.get("containerPort", 0) for p in container.get("portMappings") or []))
    log_group = ((container.get("logConfiguration") or {}).get("options") or {}).get("awslogs-group")
    secrets = tuple(sorted((s.get("name"), s.get("valueFrom")) for s in container.get("secrets") or []))
    return (container.get("name"), container.get("image"), ports, log_group, secrets,
            definition.get("executionRoleArn"), definition.get("networkMode"))


def _task_environment(task: Mapping[str, Any]) -> dict[str, str]:
    overrides = (task.get("overrides") or {}).get("containerOverrides") or []
    return {e.get("name", ""): e.get("value", "") for o in overrides for e in o.get("environment") or []}


def _port_in(environment: Mapping[str, str], default: int) -> int:
    """The server port a container's environment names (``DOCKERPARALLEL_SERVER_PORT``), else ``default``."""
    value = environment.get(ENV_SERVER_PORT, "")
    return int(value) if value.isdigit() and 0 < int(value) < 65536 else default


# -- the provider ----------------------------------------------------------------------------------


class ECSFargateProvider(ManagedCloudProvider):
    """Runs the server and the workers as ECS tasks on AWS Fargate.

    Parameters
    ----------
    region : str, optional
        AWS region (default: boto3's chain: ``AWS_DEFAULT_REGION``, the profile).
    profile : str, optional
        AWS profile to take credentials and region from.
    subnets : str or list of str, optional
        Subnet ids for the tasks (default: the default-for-zone subnets of
        ``vpc_id`` or of the default VPC).
    security_groups : str or list of str, optional
        Security group ids (default: one created per cluster that opens the
        scheduler and dashboard ports to ``ingress_cidr`` and every TCP port
        between the cluster's own tasks).
    vpc_id : str, optional
        VPC to take subnets from and create the security group in.
    ecs_cluster_name : str, optional
        An existing ECS cluster to use (default: one named after the cluster).
    execution_role_arn : str, optional
        An existing task execution role (default: one created per cluster
        with ``AmazonECSTaskExecutionRolePolicy``).
    log_group : str, optional
        An existing CloudWatch log group (default: ``/dockerparallel/<name>``, created).
    server_task_definition, worker_task_definition : str, optional
        Existing task definitions (family, ``family:revision`` or ARN) to run
        instead of registering them; their image is used, not the container's.
    assign_public_ip : bool
        Give tasks a public IP (needed to pull public images from a public
        subnet without a NAT gateway, and for a client outside the VPC).
    ingress_cidr : str
        Who may reach the scheduler and dashboard ports of a created security group.
    scheduler_port, dashboard_port : int
        Ports the server listens on (the scheduler port is read from the server
        container's ``DOCKERPARALLEL_SERVER_PORT`` when it is set).
    endpoint_url : str, optional
        One endpoint for every AWS service (tests point it at a moto server).
    session : boto3.Session, optional
        The session to create clients from (default: a new one).
    max_attempts : int
        Tries of each AWS call on throttling and time-outs.
    retry_delay : float
        Seconds before the first retry; doubled at each further one (with jitter).
    cleanup_timeout : float
        Seconds a deep cleanup waits for AWS to let go of a resource still in use.
    max_concurrent_calls : int
        How many ``run_task`` batches (of at most 10 tasks each) a scale-up
        runs at once, 1 to 16.
    """

    def __init__(
        self, *, region: str | None = None, profile: str | None = None,
        subnets: str | Sequence[str] | None = None, security_groups: str | Sequence[str] | None = None,
        vpc_id: str | None = None, ecs_cluster_name: str | None = None, execution_role_arn: str | None = None,
        log_group: str | None = None, server_task_definition: str | None = None,
        worker_task_definition: str | None = None, assign_public_ip: bool = True, ingress_cidr: str = "0.0.0.0/0",
        scheduler_port: int = 8786, dashboard_port: int = 8787, endpoint_url: str | None = None,
        session: Any = None, max_attempts: int = 5, retry_delay: float = 0.5, cleanup_timeout: float = 300.0,
        max_concurrent_calls: int = 4,
    ) -> None:
        if _BOTO3_MISSING is not None:
            raise ImportError("ECSFargateProvider needs boto3: pip install 'dockerparallel[aws]'") from _BOTO3_MISSING
        self.region = _check_text(region, "region")
        self.profile = _check_text(profile, "profile")
        self.subnets = _check_ids(subnets, "subnets", "subnet-")
        self.security_groups = _check_ids(security_groups, "security_groups", "sg-")
        vpc_ids = _check_ids(_check_text(vpc_id, "vpc_id"), "vpc_id", "vpc-")
        self.vpc_id = vpc_ids[0] if vpc_ids else None
        self.ecs_cluster_name = _check_text(ecs_cluster_name, "ecs_cluster_name")
        self.execution_role_arn = _check_text(execution_role_arn, "execution_role_arn")
        self.log_group = _check_text(log_group, "log_group")
        self.task_definition_overrides = {
            "server": _check_text(server_task_definition, "server_task_definition"),
            "worker": _check_text(worker_task_definition, "worker_task_definition"),
        }
        self._check_network_options(assign_public_ip, ingress_cidr, scheduler_port, dashboard_port)
        self.endpoint_url = _check_text(endpoint_url, "endpoint_url")
        self.max_attempts = check_count(max_attempts, "max_attempts", minimum=1, maximum=20)
        self.retry_delay = self._check_seconds(retry_delay, "retry_delay")
        self.cleanup_timeout = self._check_seconds(cleanup_timeout, "cleanup_timeout")
        self.max_concurrent_calls = check_count(max_concurrent_calls, "max_concurrent_calls", minimum=1,
                                                maximum=MAX_CONCURRENT_RUN_CALLS)
        self._session_arg = session
        self._init_state()

    def _check_network_options(self, assign_public_ip: bool, ingress_cidr: str, scheduler_port: int,
                               dashboard_port: int) -> None:
        if not isinstance(assign_public_ip, bool):
            raise TypeError(f"assign_public_ip must be a bool, got {assign_public_ip!r}")
        try:
            ipaddress.IPv4Network(ingress_cidr)
        except (TypeError, ValueError):
            raise ValueError(f"ingress_cidr must be an IPv4 network (a.b.c.d/n), got {ingress_cidr!r}") from None
        self.assign_public_ip = assign_public_ip
        self.ingress_cidr = ingress_cidr
        self.scheduler_port = check_count(scheduler_port, "scheduler_port", minimum=1, maximum=65535)
        self.dashboard_port = check_count(dashboard_port, "dashboard_port", minimum=1, maximum=65535)

    @staticmethod
    def _check_seconds(value: float, name: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
            raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
        return float(value)

    def _init_state(self) -> None:
        # Locks, always taken in this order: state, then client; warn on its own.
        self._state_lock = threading.RLock()  # resources, task definitions, secrets (re-entered by their steps)
        self._client_lock = threading.RLock()  # the boto3 session and the clients made from it
        self._warn_lock = threading.Lock()  # the warned-once sets
        self._clients: dict[str, Any] = {}
        self._boto_session: Any = None
        self._resources: FargateResources | None = None
        self._task_definition_cache: dict[tuple[str, str, str], _TaskDefinition] = {}
        self._secret_arns: dict[str, str] = {}  # secret name -> ARN
        self._secrets_allowed: set[str] = set()  # execution roles told (or seen) to read the secrets
        self._warned_definitions: set[str] = set()
        self._server_arn: str | None = None
        self._server_port = self.scheduler_port
        self._warned_sizes: set[tuple[int, int]] = set()

    def __repr__(self) -> str:
        region = self.region or (self._boto_session.region_name if self._boto_session else None)
        cluster = self._resources.ecs_cluster if self._resources else self.ecs_cluster_name
        return f"<ECSFargateProvider region={region!r} ecs_cluster={cluster!r}>"

    def spec_options(self) -> dict[str, Any]:
        """Return the constructor options that rebuild this provider in another process.

        Plain JSON values, no secret: credentials come from the environment of
        the process that rebuilds it. The region is recorded as resolved, so
        that the other process looks in the same region.
        """
        options: dict[str, Any] = {
            "region": self.region or (self._boto_session.region_name if self._boto_session else None),
            "profile": self.profile, "vpc_id": self.vpc_id, "ecs_cluster_name": self.ecs_cluster_name,
            "subnets": list(self.subnets) if self.subnets else None,
            "security_groups": list(self.security_groups) if self.security_groups else None,
            "execution_role_arn": self.execution_role_arn, "log_group": self.log_group,
            "server_task_definition": self.task_definition_overrides["server"],
            "worker_task_definition": self.task_definition_overrides["worker"],
            "endpoint_url": self.endpoint_url,
        }
        options = {k: v for k, v in options.items() if v is not None}
        options.update(assign_public_ip=self.assign_public_ip, ingress_cidr=self.ingress_cidr,
                       scheduler_port=self.scheduler_port, dashboard_port=self.dashboard_port,
                       max_attempts=self.max_attempts, retry_delay=self.retry_delay,
                       cleanup_timeout=self.cleanup_timeout, max_concurrent_calls=self.max_concurrent_calls)
        return options

    # -- AWS clients and calls -----------------------------------------------------------------------

    def client(self, service: str) -> Any:
        """Return the boto3 client of ``service`` (``"ecs"``, ``"ec2"``, ``"iam"``, ``"logs"``, ``"secretsmanager"``).

        Clients are created once, from one session, with ``endpoint_url`` when
        set, and with botocore's own retries off: every call is retried here,
        where a retried ``run_task`` can look for the tasks of the failed try.
        Thread-safe: a boto3 session is not, so the session is only used under
        a lock; the clients made from it are, and are shared.

        Raises
        ------
        ProviderError
            When no region or no credentials are configured.
        """
        with self._client_lock:
            if service not in self._clients:
                self._clients[service] = self._make_client(service)
            return self._clients[service]

    def _session(self) -> Any:
        """The boto3 session (created on first use); call it, and use what it returns, under ``_client_lock``."""
        with self._client_lock:
            if self._boto_session is None:
                try:
                    self._boto_session = self._session_arg or boto3.Session(
                        region_name=self.region, profile_name=self.profile
                    )
                except ProfileNotFound as exc:
                    raise ProviderError(self, "client", f"the AWS profile {self.profile!r} does not exist") from exc
            return self._boto_session

    def _region(self) -> str:
        if self.region:
            return self.region
        with self._client_lock:
            region = self._session().region_name
        if not region:
            raise ProviderError(
                self, "client", "no AWS region: pass region=, set AWS_DEFAULT_REGION or set one in your AWS profile"
            )
        return str(region)

    def _make_client(self, service: str) -> Any:
        """A new client of ``service``; called by :meth:`client` under ``_client_lock``."""
        session, region = self._session(), self._region()
        if session.get_credentials() is None:
            raise ProviderError(self, "client", f"no AWS credentials found: {_CREDENTIALS_HELP}")
        config = Config(
            region_name=region, retries={"mode": "standard", "total_max_attempts": 1},
            connect_timeout=10, read_timeout=60, user_agent_extra="dockerparallel",
        )
        logger.debug("creating the %s client (region %s%s)", service, region,
                     f", endpoint {self.endpoint_url}" if self.endpoint_url else "")
        return session.client(service, region_name=region, endpoint_url=self.endpoint_url, config=config)

    def _partition(self) -> str:
        try:
            with self._client_lock:
                return str(self._session().get_partition_for_region(self._region()))
        except Exception:  # an unknown region: the commercial partition
            return "aws"

    def _call(self, service: str, operation: str, *, retry: bool = True, **kwargs: Any) -> Any:
        """Call ``operation`` of ``service``, retrying throttling and time-outs with backoff."""
        attempts = self.max_attempts if retry else 1
        for attempt in range(1, attempts + 1):
            try:
                return getattr(self.client(service), operation)(**kwargs)
            except Exception as exc:
                error = self._retry_or_error(service, operation, exc, attempt, attempts)
                if error is exc:
                    raise
                if error is not None:
                    raise error from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _retry_or_error(self, service: str, operation: str, exc: BaseException, attempt: int,
                        attempts: int) -> BaseException | None:
        """Sleep and return ``None`` when the call should be tried again; else return what to raise."""
        kind = _error_kind(exc)
        if kind == "credentials":
            return ProviderError(self, f"{service}.{operation}",
                                 f"AWS credentials missing or refused ({_error_code(exc) or type(exc).__name__}): "
                                 f"{_CREDENTIALS_HELP}")
        if kind is None:
            return exc
        if attempt >= attempts:
            if kind == "throttle":
                return ProviderThrottled(f"{type(self).__name__}: AWS throttled {service}.{operation} "
                                         f"{attempts} time(s) in a row; try again later")
            return ProviderError(self, f"{service}.{operation}", f"failed {attempts} time(s): {exc}")
        delay = min(self.retry_delay * 2 ** (attempt - 1), _MAX_DELAY) * random.uniform(0.5, 1.0)
        logger.debug("%s.%s failed (%s); try %d of %d in %.2f s", service, operation,
                     _error_code(exc) or type(exc).__name__, attempt + 1, attempts, delay)
        time.sleep(delay)
        return None

    def _wait_while(self, codes: frozenset[str], action: Callable[[], Any], what: str) -> None:
        """Run ``action``; while it fails with one of ``codes`` (resource still in use), wait and retry."""
        deadline = time.monotonic() + self.cleanup_timeout
        delay = max(self.retry_delay, 0.01)
        while True:
            try:
                action()
                return
            except ClientError as exc:
                if _error_code(exc) not in codes or time.monotonic() + delay > deadline:
                    raise
                logger.debug("%s is still in use (%s); trying again in %.1f s", what, _error_code(exc), delay)
                time.sleep(delay)
                delay = min(delay * 2, _MAX_DELAY)

    # -- initialization ----------------------------------------------------------------------------------

    def initialize_cloud_provider(self, cluster: ClusterView, verbose: int = 0) -> None:
        """Find or create what ``cluster`` needs on AWS and remember it.

        The ECS cluster, the task execution role, the log group, the network
        (subnets and security group), the secret that holds the containers'
        secret variables (when they have some) and the server and worker task
        definitions. Idempotent: a second call finds and reuses everything.

        Parameters
        ----------
        cluster : ClusterView
            The cluster; its name identifies the resources.
        verbose : int
            Log the outcome at INFO level when non-zero (each step is logged at DEBUG).
        """
        with self._state_lock:  # a launch may get here from several threads (see resources())
            self._server_port = _port_in(cluster.server_container.environment, self.scheduler_port)
            resources = self._resolve_resources(cluster.name, create=True)
            self._resources = resources
            self._task_definition_cache.clear()
            self._secret_arns.clear()
            for role, container in (("server", cluster.server_container), ("worker", cluster.worker_container)):
                self._task_definition(cluster, role, container)
        _say(verbose, "AWS resources of cluster %r: ECS cluster %s, subnets %s, security groups %s; created %s",
             cluster.name, resources.ecs_cluster, ", ".join(resources.subnets),
             ", ".join(resources.security_groups), ", ".join(sorted(resources.created)) or "nothing")

    def resources(self, cluster: ClusterView) -> FargateResources:
        """Return the resources of ``cluster``, initializing the provider first when needed.

        Thread-safe: concurrent first launches initialize once, the others wait for it.
        """
        with self._state_lock:
            if self._resources is None or self._resources.owner != cluster.name:
                self.initialize_cloud_provider(cluster, cluster.verbose)
            assert self._resources is not None
            return self._resources

    def _ecs_cluster_for(self, name: str) -> str:
        return self.ecs_cluster_name or _aws_name(name, "", 255)

    def _resolve_resources(self, name: str, create: bool) -> FargateResources:
        """Find (and with ``create``, create) the resources of the cluster named ``name``."""
        res = FargateResources(owner=name, ecs_cluster=self._ecs_cluster_for(name))
        try:
            self._resolve_network(res)
        except ProviderError:
            if create:
                raise
            logger.debug("network: not found; looking for the security group in every VPC")
        role_name = _aws_name(name, "-ecs-exec", 64)
        log_group = f"/dockerparallel/{_aws_name(name, '', 200)}"
        sg_name = _aws_name(name, "-dockerparallel", 255)
        self._resolve(res, "ecs_cluster", res.ecs_cluster, self.ecs_cluster_name,
                      lambda: self._find_ecs_cluster(res.ecs_cluster),
                      lambda: self._create_ecs_cluster(res.ecs_cluster, name), create)
        res.execution_role_arn = self._resolve(
            res, "execution_role", role_name, self.execution_role_arn,
            lambda: self._find_role(role_name), lambda: self._create_role(role_name, name), create)
        res.log_group = self._resolve(
            res, "log_group", log_group, self.log_group,
            lambda: self._find_log_group(log_group), lambda: self._create_log_group(log_group, name), create)
        if self.security_groups is not None:
            res.security_groups = list(self.security_groups)
        else:
            group = self._resolve(res, "security_group", sg_name, None,
                                  lambda: self._find_security_group(res.vpc_id, sg_name),
                                  lambda: self._create_security_group(res.vpc_id, sg_name, name), create)
            res.security_groups = [group] if group else []
        return res

    def _resolve(self, res: FargateResources, kind: str, label: str, override: str | None,
                 find: Callable[[], tuple[str, dict[str, str]] | None], create_it: Callable[[], str],
                 create: bool) -> str | None:
        """The id of one resource: ``override``, else found, else created (when ``create``)."""
        if override is not None:
            logger.debug("%s: using %s as given", kind, override)
            return override
        found = find()
        if found is not None:
            ident, tags = found
            if tags.get(TAG_CREATED_BY) == res.owner:
                res.created.add(kind)
            logger.debug("%s: found %s (%s)", kind, ident,
                         "created for this cluster" if kind in res.created else "not created for this cluster")
            return ident
        if not create:
            logger.debug("%s: %s does not exist", kind, label)
            return None
        ident = create_it()
        res.created.add(kind)
        logger.debug("%s: created %s", kind, ident)
        return ident

    def _created_tags(self, owner: str) -> dict[str, str]:
        return {TAG_CREATED_BY: owner}

    # -- network --------------------------------------------------------------------------------------------

    def _resolve_network(self, res: FargateResources) -> None:
        if self.subnets is not None:
            res.subnets = list(self.subnets)
            res.vpc_id = self.vpc_id
            if res.vpc_id is None and self.security_groups is None:
                subnet = self._call("ec2", "describe_subnets", SubnetIds=[res.subnets[0]])["Subnets"][0]
                res.vpc_id = subnet["VpcId"]
        else:
            res.vpc_id = self.vpc_id or self._default_vpc()
            res.subnets = self._subnets_of(res.vpc_id, default_only=self.vpc_id is None)
        logger.debug("network: VPC %s, subnets %s", res.vpc_id, ", ".join(res.subnets))

    def _default_vpc(self) -> str:
        vpcs = self._call("ec2", "describe_vpcs", Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
        if not vpcs:
            raise ProviderError(
                self, "initialize_cloud_provider",
                f"region {self._region()} has no default VPC; pass subnets= (and security_groups=) or vpc_id=",
            )
        return str(vpcs[0]["VpcId"])

    def _subnets_of(self, vpc_id: str, default_only: bool) -> list[str]:
        filters = [{"Name": "vpc-id", "Values": [vpc_id]}]
        if default_only:
            filters.append({"Name": "default-for-az", "Values": ["true"]})
        subnets = self._call("ec2", "describe_subnets", Filters=filters)["Subnets"]
        if not subnets:
            raise ProviderError(self, "initialize_cloud_provider", f"VPC {vpc_id} has no subnets; pass subnets=")
        return sorted(s["SubnetId"] for s in subnets)

    def _find_security_group(self, vpc_id: str | None, group_name: str) -> tuple[str, dict[str, str]] | None:
        filters = [{"Name": "group-name", "Values": [group_name]}]
        if vpc_id:
            filters.append({"Name": "vpc-id", "Values": [vpc_id]})
        groups = self._call("ec2", "describe_security_groups", Filters=filters)["SecurityGroups"]
        return (groups[0]["GroupId"], _tag_map(groups[0].get("Tags"))) if groups else None

    def _create_security_group(self, vpc_id: str | None, group_name: str, owner: str) -> str:
        if vpc_id is None:
            raise ProviderError(self, "initialize_cloud_provider", "cannot create a security group without a VPC")
        group_id = self._call(
            "ec2", "create_security_group", retry=False, GroupName=group_name, VpcId=vpc_id,
            Description=f"dockerparallel cluster {owner}: scheduler, dashboard and traffic between its tasks",
            TagSpecifications=[{"ResourceType": "security-group",
                                "Tags": _aws_tags({**self._created_tags(owner), TAG_CLUSTER: owner})}],
        )["GroupId"]
        public = [{"IpProtocol": "tcp", "FromPort": port, "ToPort": port,
                   "IpRanges": [{"CidrIp": self.ingress_cidr, "Description": "dask scheduler and dashboard"}]}
                  for port in sorted({self._server_port, self.dashboard_port})]
        internal = {"IpProtocol": "tcp", "FromPort": 0, "ToPort": 65535,
                    "UserIdGroupPairs": [{"GroupId": group_id, "Description": "tasks of the same cluster"}]}
        self._call("ec2", "authorize_security_group_ingress", GroupId=group_id, IpPermissions=[*public, internal])
        return str(group_id)

    # -- ECS cluster, role, log group -----------------------------------------------------------------------

    def _find_ecs_cluster(self, name: str) -> tuple[str, dict[str, str]] | None:
        clusters = self._call("ecs", "describe_clusters", clusters=[name], include=["TAGS"])["clusters"]
        active = [c for c in clusters if c.get("status") == "ACTIVE"]
        return (name, _tag_map(active[0].get("tags"))) if active else None

    def _create_ecs_cluster(self, name: str, owner: str) -> str:
        self._call("ecs", "create_cluster", clusterName=name, tags=_ecs_tags(self._created_tags(owner)))
        return name

    def _find_role(self, role_name: str) -> tuple[str, dict[str, str]] | None:
        try:
            role = self._call("iam", "get_role", RoleName=role_name)["Role"]
        except ClientError as exc:
            if _error_code(exc) == "NoSuchEntity":
                return None
            raise
        return str(role["Arn"]), _tag_map(role.get("Tags"))

    def _create_role(self, role_name: str, owner: str) -> str:
        role = self._call(
            "iam", "create_role", retry=False, RoleName=role_name, AssumeRolePolicyDocument=_ASSUME_ROLE_POLICY,
            Description=f"ECS task execution role of dockerparallel cluster {owner}",
            Tags=_aws_tags(self._created_tags(owner)),
        )["Role"]
        self._call("iam", "attach_role_policy", RoleName=role_name,
                   PolicyArn=_EXECUTION_POLICY.format(partition=self._partition()))
        return str(role["Arn"])

    def _find_log_group(self, name: str) -> tuple[str, dict[str, str]] | None:
        groups = self._call("logs", "describe_log_groups", logGroupNamePrefix=name)["logGroups"]
        if not any(g.get("logGroupName") == name for g in groups):
            return None
        return name, dict(self._call("logs", "list_tags_log_group", logGroupName=name).get("tags") or {})

    def _create_log_group(self, name: str, owner: str) -> str:
        self._call("logs", "create_log_group", retry=False, logGroupName=name, tags=self._created_tags(owner))
        return name

    # -- secrets --------------------------------------------------------------------------------------------------

    def _secret_arn(self, cluster: ClusterView, values: Mapping[str, str]) -> str:
        """The ARN of the secret that holds ``values`` as one JSON object, found or created.

        Its name carries a digest of the values: other certificates make
        another secret, and an existing secret never needs to be read back.
        The execution role is then allowed to read it. Thread-safe: found or
        created once, under the state lock (re-entered from :meth:`_task_definition`).
        """
        with self._state_lock:
            res = self.resources(cluster)
            name = _secret_name(cluster.name, _secret_digest(cluster.name, values))
            if name not in self._secret_arns:
                arn = self._resolve(res, "secrets", name, None, lambda: self._find_secret(name),
                                    lambda: self._create_secret(name, cluster.name, values), True)
                assert arn is not None
                self._secret_arns[name] = arn
            self._allow_secrets(cluster.name, res)
            return self._secret_arns[name]

    def _find_secret(self, name: str) -> tuple[str, dict[str, str]] | None:
        try:
            described = self._call("secretsmanager", "describe_secret", SecretId=name)
        except ClientError as exc:
            if _error_code(exc) == "ResourceNotFoundException":
                return None
            raise
        if described.get("DeletedDate"):
            raise ProviderError(self, "initialize_cloud_provider",
                                f"the secret {name} is scheduled for deletion: restore it, or delete it "
                                "for good (ForceDeleteWithoutRecovery) and try again")
        return str(described["ARN"]), _tag_map(described.get("Tags"))

    def _create_secret(self, name: str, owner: str, values: Mapping[str, str]) -> str:
        """Create the secret ``name`` holding ``values``; an error never quotes (nor chains) the request."""
        try:
            return str(self._call(
                "secretsmanager", "create_secret", Name=name, SecretString=json.dumps(dict(values), sort_keys=True),
                Description=f"secret environment variables of dockerparallel cluster {owner}",
                Tags=_aws_tags(self._created_tags(owner)))["ARN"])
        except (ProviderError, ProviderThrottled):
            raise
        except Exception as exc:
            code = _error_code(exc) or type(exc).__name__
        found = self._find_secret(name) if code == "ResourceExistsException" else None  # made meanwhile
        if found is None:
            raise ProviderError(self, "initialize_cloud_provider", f"could not create the secret {name} ({code})")
        return found[0]

    def _allow_secrets(self, owner: str, res: FargateResources) -> None:
        """Let the execution role read the cluster's secrets: an inline policy on a created role, a note else."""
        role = res.execution_role_arn
        if role is None or f"{role} {owner}" in self._secrets_allowed:
            return
        self._secrets_allowed.add(f"{role} {owner}")
        parts = role.split(":")
        resource = _SECRETS_RESOURCE.format(partition=self._partition(), region=self._region(),
                                            account=parts[4] if len(parts) > 5 else "*", prefix=_secret_prefix(owner))
        if "execution_role" not in res.created:
            logger.info("the execution role %s was given: it must allow secretsmanager:GetSecretValue on %s",
                        role, resource)
            return
        document = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": resource}]}
        self._call("iam", "put_role_policy", RoleName=role.rsplit("/", 1)[-1], PolicyName=SECRETS_POLICY_NAME,
                   PolicyDocument=json.dumps(document))
        logger.debug("execution role %s: may read the secrets %s", role, resource)

    # -- task definitions -------------------------------------------------------------------------------------

    def _family(self, owner: str, role: str) -> str:
        return _aws_name(owner, f"-{role}", 255)

    def _task_definition(self, cluster: ClusterView, role: str, container: DockerContainer) -> _TaskDefinition:
        """The task definition that runs ``container`` as ``role``, with its secret variables in ``secrets``.

        Registered (or reused) once per image and set of secret values; a
        task definition given to the constructor is used as it is.
        Thread-safe: concurrent launches that miss the cache register one
        task definition, not one each (the others wait and reuse it).
        """
        values = _secret_values(container.environment)
        key = (role, container.image, _secret_digest(cluster.name, values))
        cached = self._task_definition_cache.get(key)
        if cached is not None:
            return cached
        with self._state_lock:
            if key not in self._task_definition_cache:  # another thread may have filled it meanwhile
                override = self.task_definition_overrides[role]
                if override is not None:
                    result = self._given_task_definition(role, override, values)
                else:
                    secrets = _container_secrets(self._secret_arn(cluster, values), values) if values else []
                    arn = self._ensure_task_definition(cluster, role, container.image, secrets)
                    result = _TaskDefinition(arn, role, frozenset(values))
                self._task_definition_cache[key] = result
            return self._task_definition_cache[key]

    def _given_task_definition(self, role: str, name: str, values: Mapping[str, str]) -> _TaskDefinition:
        """A task definition given to the constructor; the secret variables its ``secrets`` lack go in overrides."""
        described = self._call("ecs", "describe_task_definition", taskDefinition=name)["taskDefinition"]
        container = described["containerDefinitions"][0]
        given = frozenset(str(s.get("name")) for s in container.get("secrets") or []) & SECRET_VARIABLES
        missing = sorted(set(values) - given)
        if missing and self._first_time(self._warned_definitions, name):
            logger.warning("the %s task definition %s was given and its secrets lack %s: these travel in the "
                           "run_task overrides, where anyone allowed ecs:DescribeTasks reads them",
                           role, name, ", ".join(missing))
        return _TaskDefinition(str(described["taskDefinitionArn"]), str(container["name"]), given)

    def _task_definition_request(self, owner: str, role: str, image: str, res: FargateResources,
                                 secrets: list[dict[str, str]]) -> dict[str, Any]:
        container: dict[str, Any] = {
            "name": role, "image": image, "essential": True,
            # A soft reservation far below any Fargate size: it changes nothing on
            # Fargate, and moto needs a container-level memory value to run a task.
            "memoryReservation": 128,
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": res.log_group, "awslogs-region": self._region(), "awslogs-stream-prefix": role}},
        }
        if role == "server":
            container["portMappings"] = [{"containerPort": p, "protocol": "tcp"}
                                         for p in sorted({self._server_port, self.dashboard_port})]
        if secrets:
            container["secrets"] = secrets
        return {
            "family": self._family(owner, role), "containerDefinitions": [container],
            "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"], "cpu": "1024", "memory": "2048",
            "executionRoleArn": res.execution_role_arn, "tags": _ecs_tags(self._created_tags(owner)),
        }

    def _ensure_task_definition(self, cluster: ClusterView, role: str, image: str,
                                secrets: list[dict[str, str]]) -> str:
        """Reuse the family's latest revision when it matches (image, ports, secrets...); else register one."""
        res = self.resources(cluster)
        request = self._task_definition_request(cluster.name, role, image, res, secrets)
        latest = self._latest_task_definition(request["family"])
        if latest is not None and _definition_key(latest[0]) == _definition_key(request):
            arn = str(latest[0]["taskDefinitionArn"])
            if latest[1].get(TAG_CREATED_BY) == cluster.name:
                res.created.add(f"task_definition:{role}")
            logger.debug("task definition %s: reusing %s", role, arn)
        else:
            arn = str(self._call("ecs", "register_task_definition", retry=False, **request)
                      ["taskDefinition"]["taskDefinitionArn"])
            res.created.add(f"task_definition:{role}")
            logger.debug("task definition %s: registered %s for image %s", role, arn, image)
        res.task_definitions[role] = arn
        return arn

    def _latest_task_definition(self, family: str) -> tuple[dict[str, Any], dict[str, str]] | None:
        try:
            response = self._call("ecs", "describe_task_definition", taskDefinition=family, include=["TAGS"])
        except ClientError as exc:
            if _error_code(exc) in ("ClientException", "InvalidParameterException"):
                return None
            raise
        definition = response["taskDefinition"]
        if definition.get("status") != "ACTIVE":
            return None
        return definition, _tag_map(response.get("tags"))

    # -- launching tasks ------------------------------------------------------------------------------------------

    def _first_time(self, seen: set[Any], key: Any) -> bool:
        """Whether ``key`` is new to ``seen`` (a warned-once set), adding it: true once, whatever the threads."""
        with self._warn_lock:
            if key in seen:
                return False
            seen.add(key)
            return True

    def _task_size(self, cpu: int, memory: int) -> tuple[int, int]:
        size = fargate_size(cpu, memory)
        if size != (cpu, memory) and self._first_time(self._warned_sizes, (cpu, memory)):
            logger.warning("cpu=%d memory=%d MB is not a Fargate task size; using the nearest valid size "
                           "cpu=%d memory=%d MB", cpu, memory, size[0], size[1])
        return size

    def _launch_spec(self, cluster: ClusterView, role: str, container: DockerContainer,
                     size: tuple[int, int], workers: int) -> _Launch:
        res = self.resources(cluster)
        definition = self._task_definition(cluster, role, container)
        network = {"awsvpcConfiguration": {
            "subnets": res.subnets, "securityGroups": res.security_groups,
            "assignPublicIp": "ENABLED" if self.assign_public_ip else "DISABLED"}}
        tags = _ecs_tags({TAG_CLUSTER: cluster.name, TAG_ROLE: role, TAG_WORKERS: str(workers)})
        overrides = _overrides(definition.container, container, size, definition.from_secrets)
        length = len(json.dumps(overrides, separators=(",", ":")))
        if length > OVERRIDES_MAX:
            raise ProviderError(self, "run_task", f"the {role} container's command and environment take {length} "
                                f"characters; ECS allows {OVERRIDES_MAX} in a task's overrides")
        return _Launch(res.ecs_cluster, definition.arn, overrides, network, tags)

    def _start_tasks(self, spec: _Launch, count: int) -> tuple[list[str], BaseException | None]:
        """Start ``count`` tasks with one token; return their ARNs and the error that stopped it, if any.

        A try that fails is retried with backoff; before each retry the tasks
        the failed try started are listed by the token and adopted.
        """
        ecs = self.client("ecs")
        token = f"dp-{uuid.uuid4().hex}"
        arns: list[str] = []
        for attempt in range(1, self.max_attempts + 1):
            if attempt > 1:
                arns = self._adopt(spec, token, arns)
            if len(arns) >= count:
                break
            try:
                response = ecs.run_task(**spec.request(token, count - len(arns), len(arns)))
            except Exception as exc:
                error = self._retry_or_error("ecs", "run_task", exc, attempt, self.max_attempts)
                if error is not None:
                    return self._adopt(spec, token, arns), error
                continue
            arns += [t["taskArn"] for t in response.get("tasks", []) if t["taskArn"] not in arns]
            for failure in response.get("failures") or []:
                logger.warning("ECS did not start a task: %s %s", failure.get("reason"), failure.get("detail", ""))
            break
        return arns, None

    def _adopt(self, spec: _Launch, token: str, arns: list[str]) -> list[str]:
        """``arns`` plus the tasks started with ``token`` that it lacks."""
        try:
            found = self._list_task_arns(spec.ecs_cluster, startedBy=token)
        except Exception as exc:  # the tags still let reconnect() and a deep cleanup find them
            logger.warning("could not list the tasks started with token %s: %s", token, exc)
            return arns
        new = [arn for arn in found if arn not in arns]
        if new:
            logger.info("adopted %d task(s) that a failed run_task call started (startedBy=%s)", len(new), token)
        return arns + new

    def _partial(self, handles: list[str], asked: int, error: BaseException) -> list[str]:
        if not handles:
            raise error
        logger.warning("started %d of %d worker(s) before an error; returning those: %s",
                       len(handles), asked, error)
        return handles

    # -- the three primitives ----------------------------------------------------------------------------------------

    def launch_capabilities(self, container: DockerContainer, hardware: DockerHardware) -> ProviderCapabilities:
        """The launch limits for workers of ``container`` on ``hardware``: one ``run_task`` batch per call.

        Returns
        -------
        ProviderCapabilities
            At most :data:`RUN_TASK_MAX` full tasks' worth of workers per call
            (``RUN_TASK_MAX * workers_per_task(container, hardware)``), and
            ``max_concurrent_calls`` calls at once.

        Raises
        ------
        ProviderError
            When even one worker of ``hardware`` does not fit in the largest
            Fargate task (as a run call would raise it).
        """
        try:
            per_task = workers_per_task(container, hardware)
        except ValueError as exc:
            raise ProviderError(self, "launch_capabilities", str(exc)) from exc
        return ProviderCapabilities(max_workers_per_call=RUN_TASK_MAX * per_task,
                                    max_concurrent_calls=self.max_concurrent_calls)

    def run_docker_worker_containers(self, cluster: ClusterView, container: DockerContainer,
                                     hardware: DockerHardware, worker_number: int, verbose: int = 0) -> list[str]:
        """Start ``worker_number`` workers in Fargate tasks of up to ``workers_per_task`` workers.

        Tasks of the same size start together, at most 10 per ``run_task``
        call. Returns each task's ARN once per worker it holds; when a call
        fails for good after some tasks started, returns those (a partial
        launch) rather than lose them. Thread-safe: the managed layer runs up
        to ``max_concurrent_calls`` of these at once (see :meth:`launch_capabilities`).
        """
        per_task = workers_per_task(container, hardware)
        full, rest = divmod(worker_number, per_task)
        plan = []  # everything that can fail before a task starts is done first
        for workers, tasks in ((per_task, full), (rest, 1 if rest else 0)):
            if tasks:
                size = self._task_size(workers * hardware.cpu, workers * hardware.memory)
                spec = self._launch_spec(cluster, "worker", container.for_workers(workers, hardware), size, workers)
                plan.append((workers, tasks, spec))
        handles: list[str] = []
        for workers, tasks, spec in plan:
            for count in _counts(tasks, RUN_TASK_MAX):
                arns, error = self._start_tasks(spec, count)
                handles += [arn for arn in arns for _ in range(workers)]
                if error is not None:
                    return self._partial(handles, worker_number, error)
        _say(verbose, "started %d worker(s) in %d task(s)", len(handles), len(set(handles)))
        return handles

    def get_docker_worker_status(self, cluster: ClusterView, worker_handles: list[str],
                                 verbose: int = 0) -> list[str]:
        """Return each task's status, asked with ``describe_tasks`` in chunks of 100.

        A task unknown to ECS (or a handle that is no task ARN) is ``"stopped"``.
        """
        tasks = self._describe_tasks(cluster, worker_handles)
        return [task_status(tasks.get(handle)) for handle in worker_handles]

    def kill_docker_worker_containers(self, cluster: ClusterView, worker_handles: list[str],
                                      verbose: int = 0) -> list[bool]:
        """Stop each task with ``stop_task``; unknown and already stopped tasks are success."""
        tasks = self._describe_tasks(cluster, worker_handles)
        return [self._stop_task(cluster, handle, tasks.get(handle)) for handle in worker_handles]

    def _stop_task(self, cluster: ClusterView, arn: str, task: Mapping[str, Any] | None) -> bool:
        if task_status(task) == WorkerStatus.STOPPED.value:
            return True
        try:
            self._call("ecs", "stop_task", cluster=self._ecs_cluster_for(cluster.name), task=arn,
                       reason=f"dockerparallel: stopped by cluster {cluster.name}")
        except ClientError as exc:
            if _error_code(exc) == "InvalidParameterException" and "not found" in str(exc).lower():
                return True
            logger.warning("stop_task of %s failed: %s", arn, exc)
            return False
        except ProviderError as exc:  # time-outs after every retry; throttling propagates
            logger.warning("stop_task of %s failed: %s", arn, exc)
            return False
        return True

    def _describe_tasks(self, cluster: ClusterView, handles: Iterable[str],
                        tags: bool = False) -> dict[str, dict[str, Any]]:
        """Task ARN -> description, for the handles ECS knows (chunks of 100)."""
        arns = [h for h in dict.fromkeys(handles) if _TASK_ARN.match(h)]
        extra: dict[str, Any] = {"include": ["TAGS"]} if tags else {}
        found: dict[str, dict[str, Any]] = {}
        for chunk in _batches(arns, DESCRIBE_TASKS_MAX):
            try:
                response = self._call("ecs", "describe_tasks", cluster=self._ecs_cluster_for(cluster.name),
                                      tasks=chunk, **extra)
            except ClientError as exc:
                if _error_code(exc) == "ClusterNotFoundException":
                    return {}
                raise
            found.update((t["taskArn"], t) for t in response.get("tasks", []) if t.get("taskArn") in chunk)
        return found

    def _pages(self, service: str, operation: str, key: str, token: str = "nextToken", **kwargs: Any) -> list[Any]:
        """The items under ``key`` of every page of a listing whose pages are chained by ``token``."""
        items: list[Any] = []
        while True:
            response = self._call(service, operation, **kwargs)
            items += response.get(key) or []
            if not response.get(token):
                return items
            kwargs[token] = response[token]

    def _list_task_arns(self, ecs_cluster: str, **filters: str) -> list[str]:
        """ARNs of the tasks of ``ecs_cluster`` meant to run, with ``filters``."""
        return self._pages("ecs", "list_tasks", "taskArns", cluster=ecs_cluster, desiredStatus="RUNNING", **filters)

    def _cluster_tasks(self, cluster: ClusterView, role: str | None = None) -> list[dict[str, Any]]:
        """The live tasks tagged with the cluster's name (and ``role``), oldest first."""
        try:
            arns = self._list_task_arns(self._ecs_cluster_for(cluster.name))
        except ClientError as exc:
            if _error_code(exc) == "ClusterNotFoundException":
                return []
            raise
        tasks = []
        for task in self._describe_tasks(cluster, arns, tags=True).values():
            tags = _tag_map(task.get("tags"))
            if tags.get(TAG_CLUSTER) == cluster.name and role in (None, tags.get(TAG_ROLE)) \
                    and task_status(task) != WorkerStatus.STOPPED.value:
                tasks.append(task)
        return sorted(tasks, key=lambda t: str(t.get("createdAt", "")))

    # -- the server -----------------------------------------------------------------------------------------------------

    def run_docker_server(self, cluster: ClusterView, container: DockerContainer, hardware: DockerHardware,
                          verbose: int = 0) -> None:
        """Start one task of the server task definition.

        Raises
        ------
        ProviderError
            When ECS starts no task (its reason is logged).
        """
        self._server_port = _port_in(container.environment, self.scheduler_port)
        spec = self._launch_spec(cluster, "server", container, self._task_size(hardware.cpu, hardware.memory), 0)
        arns, error = self._start_tasks(spec, 1)
        if not arns:
            raise error or ProviderError(self, "run_docker_server", "ECS started no server task (see the log)")
        self._server_arn = arns[0]
        _say(verbose, "server task %s started", self._server_arn)

    def stop_docker_server(self, cluster: ClusterView, verbose: int = 0) -> None:
        """Stop the server task; stopping a stopped or unknown server is success."""
        if self._server_arn is not None:
            task = self._describe_tasks(cluster, [self._server_arn]).get(self._server_arn)
            if not self._stop_task(cluster, self._server_arn, task):
                raise ProviderError(self, "stop_docker_server", f"could not stop the server task {self._server_arn}")
        self._server_arn = None

    def _server_task(self, cluster: ClusterView) -> dict[str, Any] | None:
        if self._server_arn is None:
            return None
        return self._describe_tasks(cluster, [self._server_arn]).get(self._server_arn)

    def get_server_status(self, cluster: ClusterView, verbose: int = 0) -> str:
        """Return the server task's status (``"stopped"`` when there is none)."""
        return task_status(self._server_task(cluster))

    def get_docker_server_ip(self, cluster: ClusterView, verbose: int = 0) -> ServerAddress:
        """Return the server's addresses, read from the server task's network interface.

        The private address comes from the task's ENI attachment; the public
        one from that interface's association (``None`` without one).

        Raises
        ------
        ProviderError
            When there is no server task or it has no network interface yet.
        """
        task = self._server_task(cluster)
        if task is None:
            raise ProviderError(self, "get_docker_server_ip", "no server task runs; start the server first")
        private_ip, interface = task_address(task)
        if private_ip is None:
            raise ProviderError(self, "get_docker_server_ip",
                                f"the server task {task.get('taskArn')} has no network interface yet "
                                f"(lastStatus {task.get('lastStatus')}); wait until it runs")
        public_ip = self._public_ip(interface) if interface and self.assign_public_ip else None
        port = self._server_port
        return ServerAddress(public_ip, port if public_ip else None, private_ip, port)

    def _public_ip(self, interface: str) -> str | None:
        try:
            found = self._call("ec2", "describe_network_interfaces", NetworkInterfaceIds=[interface])
        except ClientError as exc:
            logger.debug("no public address: describe_network_interfaces failed (%s)", _error_code(exc))
            return None
        for eni in found.get("NetworkInterfaces", []):
            public = (eni.get("Association") or {}).get("PublicIp")
            if public:
                return str(public)
        logger.debug("network interface %s has no public address", interface)
        return None

    # -- another process: exists, reconnect, cleanup --------------------------------------------------------------------

    def docker_cluster_exists(self, cluster: ClusterView, verbose: int = 0) -> bool:
        """Return whether a live server task is tagged with ``cluster.name``."""
        return bool(self._cluster_tasks(cluster, "server"))

    def reconnect_docker_cluster(self, cluster: ClusterView, verbose: int = 0) -> None:
        """Adopt the server task and the worker tasks tagged with ``cluster.name``."""
        tasks = self._cluster_tasks(cluster)
        servers = [t for t in tasks if _tag_map(t.get("tags")).get(TAG_ROLE) == "server"]
        if servers:
            self._server_arn = str(servers[-1]["taskArn"])
            self._server_port = _port_in(_task_environment(servers[-1]), self.scheduler_port)
        known = set(self.worker_ledger.handles())
        adopted = 0
        for task in tasks:
            tags = _tag_map(task.get("tags"))
            if tags.get(TAG_ROLE) == "worker" and task["taskArn"] not in known:
                workers = int(tags.get(TAG_WORKERS, "1")) if tags.get(TAG_WORKERS, "").isdigit() else 1
                self.add_managed_worker_handles([task["taskArn"]] * max(workers, 1))
                adopted += 1
        _say(verbose, "reconnected to cluster %r: server %s, %d worker task(s) adopted",
             cluster.name, self._server_arn, adopted)

    def cleanup_docker_cluster(self, cluster: ClusterView, deep: bool = False, verbose: int = 0) -> None:
        """With ``deep=True``, stop every task tagged with the cluster and remove what initialize created.

        Resources that initialize found (or that you named) are left alone; the
        created ones are recognised by their ``dockerparallel-created-by`` tag,
        so this works from a fresh provider object too. Without ``deep``
        nothing is held that needs releasing.

        Raises
        ------
        ProviderError
            Naming what could not be removed, after trying everything.
        """
        if not deep:
            return
        left = [f"task {t['taskArn']} (stop_task failed)" for t in self._cluster_tasks(cluster)
                if not self._stop_task(cluster, t["taskArn"], t)]
        self._server_arn = None
        res = self._resources if self._resources and self._resources.owner == cluster.name else \
            self._resolve_resources(cluster.name, create=False)
        left += self._remove_created(cluster.name, res)
        with self._state_lock:
            self._resources = None
            self._task_definition_cache.clear()
            self._secret_arns.clear()
            self._secrets_allowed.clear()
        _say(verbose, "removed the AWS resources created for cluster %r", cluster.name)
        if left:
            raise ProviderError(self, "cleanup_docker_cluster", "could not remove: " + "; ".join(left))

    def _remove_created(self, owner: str, res: FargateResources) -> list[str]:
        """Remove what ``res`` says was created; return what could not be removed."""
        left = []
        for what, remove in self._removal_steps(owner, res):
            try:
                remove()
                logger.debug("cleanup: removed %s", what)
            except Exception as exc:
                if _already_gone(exc):  # removed meanwhile, by another process say
                    logger.debug("cleanup: %s was already gone", what)
                    continue
                logger.warning("cleanup: could not remove %s: %s", what, exc)
                left.append(f"{what} ({exc})")
        return left

    def _removal_steps(self, owner: str, res: FargateResources) -> list[tuple[str, Callable[[], Any]]]:
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("task definitions", functools.partial(self._deregister_task_definitions, owner)),
            (f"secrets {_secret_prefix(owner)}*", functools.partial(self._delete_secrets, owner))]
        if "ecs_cluster" in res.created:
            steps.append((f"ECS cluster {res.ecs_cluster}", functools.partial(self._delete_ecs_cluster, res.ecs_cluster)))
        if "log_group" in res.created and res.log_group:
            steps.append((f"log group {res.log_group}", functools.partial(
                self._call, "logs", "delete_log_group", logGroupName=res.log_group)))
        if "security_group" in res.created:
            steps += [(f"security group {g}", functools.partial(self._delete_security_group, g))
                      for g in res.security_groups]
        if "execution_role" in res.created and res.execution_role_arn:
            steps.append((f"role {res.execution_role_arn}",
                          functools.partial(self._delete_role, res.execution_role_arn.rsplit("/", 1)[-1])))
        return steps

    def _delete_ecs_cluster(self, name: str) -> None:
        self._wait_while(frozenset({"ClusterContainsTasksException"}),
                         functools.partial(self._call, "ecs", "delete_cluster", cluster=name), f"ECS cluster {name}")

    def _delete_security_group(self, group_id: str) -> None:
        self._wait_while(frozenset({"DependencyViolation"}),
                         functools.partial(self._call, "ec2", "delete_security_group", GroupId=group_id),
                         f"security group {group_id}")

    def _deregister_task_definitions(self, owner: str) -> None:
        for role in ("server", "worker"):
            arns = self._pages("ecs", "list_task_definitions", "taskDefinitionArns",
                               familyPrefix=self._family(owner, role), status="ACTIVE")
            for arn in arns:
                described = self._call("ecs", "describe_task_definition", taskDefinition=arn, include=["TAGS"])
                if _tag_map(described.get("tags")).get(TAG_CREATED_BY) == owner:
                    self._call("ecs", "deregister_task_definition", taskDefinition=arn)
                    logger.debug("cleanup: deregistered %s", arn)

    def _delete_secrets(self, owner: str) -> None:
        """Delete for good the secrets under the cluster's prefix that carry its created-by tag."""
        prefix = _secret_prefix(owner)
        found = self._pages("secretsmanager", "list_secrets", "SecretList", token="NextToken",
                            Filters=[{"Key": "name", "Values": [prefix]}])
        for secret in found:
            if str(secret.get("Name", "")).startswith(prefix) and \
                    _tag_map(secret.get("Tags")).get(TAG_CREATED_BY) == owner:
                self._call("secretsmanager", "delete_secret", SecretId=secret["ARN"], ForceDeleteWithoutRecovery=True)
                logger.debug("cleanup: deleted the secret %s", secret["Name"])

    def _delete_role(self, role_name: str) -> None:
        for policy_name in self._call("iam", "list_role_policies", RoleName=role_name)["PolicyNames"]:
            self._call("iam", "delete_role_policy", RoleName=role_name, PolicyName=policy_name)
        attached = self._call("iam", "list_attached_role_policies", RoleName=role_name)["AttachedPolicies"]
        for policy in attached:
            self._call("iam", "detach_role_policy", RoleName=role_name, PolicyArn=policy["PolicyArn"])
        self._call("iam", "delete_role", RoleName=role_name)
