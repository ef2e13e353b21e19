"""The options of :class:`~.provider.ECSFargateProvider`, checked and grouped.

The constructor takes them flat, as keywords (so that ``make_provider``,
the command line and :meth:`~.provider.ECSFargateProvider.spec_options`
keep working); they are checked here, each error naming its argument, and
grouped by who uses them: how to reach AWS (:class:`ApiOptions`), the
network (:class:`NetworkOptions`) and the resources given instead of
created (:class:`GivenResources`). :class:`OptionAttributes` shows them as
the provider's read-only attributes (``provider.region``, ``provider.subnets``, ...).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Sequence

from ..._validation import check_count
from ._fargate import MAX_CONCURRENT_RUN_CALLS, check_ids, check_seconds, check_text


@dataclass(frozen=True)
class ApiOptions:
    """How to reach AWS: the region, profile, endpoint, session and retries."""

    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    session: Any = None
    max_attempts: int = 5
    retry_delay: float = 0.5
    cleanup_timeout: float = 300.0


@dataclass(frozen=True)
class NetworkOptions:
    """Where tasks run and who reaches them."""

    subnets: tuple[str, ...] | None = None
    security_groups: tuple[str, ...] | None = None
    vpc_id: str | None = None
    assign_public_ip: bool = True
    ingress_cidr: str = "0.0.0.0/0"
    scheduler_port: int = 8786
    dashboard_port: int = 8787


@dataclass(frozen=True)
class GivenResources:
    """Resources named to the constructor: used as they are, never created nor removed."""

    ecs_cluster_name: str | None = None
    execution_role_arn: str | None = None
    log_group: str | None = None
    server_task_definition: str | None = None
    worker_task_definition: str | None = None


@dataclass(frozen=True)
class FargateOptions:
    """Every option of the provider, in its groups."""

    api: ApiOptions
    network: NetworkOptions
    given: GivenResources
    max_concurrent_calls: int = 4

    @classmethod
    def check(cls, *, region: str | None = None, profile: str | None = None, endpoint_url: str | None = None,
              session: Any = None, max_attempts: int = 5, retry_delay: float = 0.5, cleanup_timeout: float = 300.0,
              max_concurrent_calls: int = 4, **others: Any) -> FargateOptions:
        """Check the constructor's keywords and group them (see the provider's parameters).

        Raises
        ------
        TypeError, ValueError
            Naming the first argument that is wrong.
        """
        api = ApiOptions(
            region=check_text(region, "region"), profile=check_text(profile, "profile"),
            endpoint_url=check_text(endpoint_url, "endpoint_url"), session=session,
            max_attempts=check_count(max_attempts, "max_attempts", minimum=1, maximum=20),
            retry_delay=check_seconds(retry_delay, "retry_delay"),
            cleanup_timeout=check_seconds(cleanup_timeout, "cleanup_timeout"))
        given = GivenResources(**{name: check_text(others.pop(name, None), name)
                                  for name in GivenResources.__dataclass_fields__})
        network = _network(**others)
        most = check_count(max_concurrent_calls, "max_concurrent_calls", minimum=1, maximum=MAX_CONCURRENT_RUN_CALLS)
        return cls(api, network, given, most)

    def spec(self, region: str | None) -> dict[str, Any]:
        """The constructor keywords that rebuild these options (``region`` as resolved); JSON, no secret."""
        net, given, api = self.network, self.given, self.api
        options: dict[str, Any] = {
            "region": region, "profile": api.profile, "vpc_id": net.vpc_id,
            "subnets": list(net.subnets) if net.subnets else None,
            "security_groups": list(net.security_groups) if net.security_groups else None,
            **{name: getattr(given, name) for name in GivenResources.__dataclass_fields__},
            "endpoint_url": api.endpoint_url,
        }
        options = {k: v for k, v in options.items() if v is not None}
        options.update(assign_public_ip=net.assign_public_ip, ingress_cidr=net.ingress_cidr,
                       scheduler_port=net.scheduler_port, dashboard_port=net.dashboard_port,
                       max_attempts=api.max_attempts, retry_delay=api.retry_delay,
                       cleanup_timeout=api.cleanup_timeout, max_concurrent_calls=self.max_concurrent_calls)
        return options


def _network(subnets: str | Sequence[str] | None = None, security_groups: str | Sequence[str] | None = None,
             vpc_id: str | None = None, assign_public_ip: bool = True, ingress_cidr: str = "0.0.0.0/0",
             scheduler_port: int = 8786, dashboard_port: int = 8787) -> NetworkOptions:
    if not isinstance(assign_public_ip, bool):
        raise TypeError(f"assign_public_ip must be a bool, got {assign_public_ip!r}")
    try:
        ipaddress.IPv4Network(ingress_cidr)
    except (TypeError, ValueError):
        raise ValueError(f"ingress_cidr must be an IPv4 network (a.b.c.d/n), got {ingress_cidr!r}") from None
    subnet_ids = check_ids(subnets, "subnets", "subnet-")
    group_ids = check_ids(security_groups, "security_groups", "sg-")
    vpc_ids = check_ids(check_text(vpc_id, "vpc_id"), "vpc_id", "vpc-")
    return NetworkOptions(
        subnets=subnet_ids, security_groups=group_ids, vpc_id=vpc_ids[0] if vpc_ids else None,
        assign_public_ip=assign_public_ip, ingress_cidr=ingress_cidr,
        scheduler_port=check_count(scheduler_port, "scheduler_port", minimum=1, maximum=65535),
        dashboard_port=check_count(dashboard_port, "dashboard_port", minimum=1, maximum=65535))


class OptionAttributes:
    """The options of a provider that holds them as ``options``, as read-only attributes."""

    options: FargateOptions

    @property
    def region(self) -> str | None:
        """The region given (``None``: boto3's chain)."""
        return self.options.api.region

    @property
    def profile(self) -> str | None:
        """The AWS profile given."""
        return self.options.api.profile

    @property
    def endpoint_url(self) -> str | None:
        """The one endpoint of every AWS service, when given."""
        return self.options.api.endpoint_url

    @property
    def max_attempts(self) -> int:
        """Tries of each AWS call on throttling and time-outs."""
        return self.options.api.max_attempts

    @property
    def retry_delay(self) -> float:
        """Seconds before the first retry."""
        return self.options.api.retry_delay

    @property
    def cleanup_timeout(self) -> float:
        """Seconds a deep cleanup waits for AWS to let go of a resource."""
        return self.options.api.cleanup_timeout

    @property
    def max_concurrent_calls(self) -> int:
        """How many ``run_task`` batches a scale-up runs at once."""
        return self.options.max_concurrent_calls

    @property
    def subnets(self) -> tuple[str, ...] | None:
        """The subnets given."""
        return self.options.network.subnets

    @property
    def security_groups(self) -> tuple[str, ...] | None:
        """The security groups given."""
        return self.options.network.security_groups

    @property
    def vpc_id(self) -> str | None:
        """The VPC given."""
        return self.options.network.vpc_id

    @property
    def assign_public_ip(self) -> bool:
        """Whether tasks get a public IP."""
        return self.options.network.assign_public_ip

    @property
    def ingress_cidr(self) -> str:
        """Who may reach the ports of a created security group."""
        return self.options.network.ingress_cidr

    @property
    def scheduler_port(self) -> int:
        """The scheduler port, unless the server container names one."""
        return self.options.network.scheduler_port

    @property
    def dashboard_port(self) -> int:
        """The dashboard port."""
        return self.options.network.dashboard_port

    @property
    def ecs_cluster_name(self) -> str | None:
        """The ECS cluster given."""
        return self.options.given.ecs_cluster_name

    @property
    def execution_role_arn(self) -> str | None:
        """The task execution role given."""
        return self.options.given.execution_role_arn

    @property
    def log_group(self) -> str | None:
        """The log group given."""
        return self.options.given.log_group

    @property
    def task_definition_overrides(self) -> dict[str, str | None]:
        """The task definitions given, by role (``"server"``, ``"worker"``)."""
        return {"server": self.options.given.server_task_definition,
                "worker": self.options.given.worker_task_definition}
