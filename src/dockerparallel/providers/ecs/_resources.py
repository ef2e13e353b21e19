"""The AWS resources a cluster needs: found, or created and tagged, and removed by a deep cleanup.

An ECS cluster, a task execution role, a log group, a security group (in
the default VPC's subnets unless told otherwise), the secret that holds the
containers' secret variables, and the server and worker task definitions
(see :mod:`._definitions`). Everything created carries the tag
``dockerparallel-created-by=<cluster name>``, so a deep cleanup — even from
another process — removes exactly that and nothing it did not create. Ids
given to the provider are used as they are and never created or removed.
"""

from __future__ import annotations

from ..._verbose import say

import functools
import logging
from typing import TYPE_CHECKING, Any, Callable

from ._api import AwsApi, Refused, already_gone, error_code, error_kind
from ._definitions import Definitions
from ._options import GivenResources, NetworkOptions
from ._fargate import (
    ASSUME_ROLE_POLICY,
    EXECUTION_POLICY,
    TAG_CLUSTER,
    TAG_CREATED_BY,
    FargateResources,
    aws_name,
    aws_tags,
    created_tags,
    default_log_group,
    ecs_tags,
    family,
    ingress_permissions,
    port_in,
    secret_prefix,
    tag_map,
)

if TYPE_CHECKING:
    from ...provider import ClusterView

logger = logging.getLogger("dockerparallel.providers.ecs")

#: Kinds of botocore error after which a cleanup still looks for the security group in every VPC.
_NETWORK_UNKNOWN = frozenset({"transient", "credentials", "no_credentials", "no_region", "no_profile"})


def summary(res: FargateResources) -> str:
    """One line on the resources of a cluster: what they are and what was created."""
    return (f"AWS resources of cluster {res.owner!r}: ECS cluster {res.ecs_cluster}, subnets {', '.join(res.subnets)}, "
            f"security groups {', '.join(res.security_groups)}; created {', '.join(sorted(res.created)) or 'nothing'}")


class ClusterResources(Definitions):
    """Finds, creates and removes the AWS resources of a provider's cluster.

    Thread-safe: ``lock`` (re-entrant) guards :attr:`current` and the caches
    of task definitions and secrets; concurrent first launches initialize once.
    """

    def __init__(self, api: AwsApi, given: GivenResources, network: NetworkOptions) -> None:
        super().__init__(api, given)
        self.network = network
        self.current: FargateResources | None = None
        self.server_port = network.scheduler_port

    def ecs_cluster_for(self, name: str) -> str:
        """The ECS cluster of the cluster named ``name``: the given one, else one named after it."""
        return self.given.ecs_cluster_name or aws_name(name, "", 255)

    def ports(self) -> tuple[int, ...]:
        """The ports the server publishes: the scheduler's and the dashboard's."""
        return tuple(sorted({self.server_port, self.network.dashboard_port}))

    def forget(self) -> None:
        """Forget the resources and every cache (after a deep cleanup)."""
        with self.lock:
            self.current = None
            self.forget_definitions(roles_too=True)

    def initialize(self, cluster: ClusterView) -> FargateResources:
        """Find or create the resources of ``cluster`` and its server and worker task definitions."""
        with self.lock:
            self.server_port = port_in(cluster.server_container.environment, self.network.scheduler_port)
            res = self.resolve(cluster.name, create=True)
            self.current = res
            self.forget_definitions()
            for role, container in (("server", cluster.server_container), ("worker", cluster.worker_container)):
                self.task_definition(cluster, role, container)
        return res

    def ensure(self, cluster: ClusterView) -> FargateResources:
        """The resources of ``cluster``, initializing first when needed (once, whatever the threads)."""
        with self.lock:
            if self.current is None or self.current.owner != cluster.name:
                say(logger, cluster.verbose, "%s", summary(self.initialize(cluster)))
            assert self.current is not None
            return self.current

    # -- find or create -------------------------------------------------------------------------------------------

    def resolve(self, name: str, create: bool) -> FargateResources:
        """Find (and with ``create``, create) the resources of the cluster named ``name``."""
        res = FargateResources(owner=name, ecs_cluster=self.ecs_cluster_for(name))
        try:
            self._resolve_network(res)
        except Exception as exc:
            if create or not (isinstance(exc, Refused) or error_kind(exc) in _NETWORK_UNKNOWN):
                raise
            logger.debug("network: not found; looking for the security group in every VPC")
        role_name, log_group = aws_name(name, "-ecs-exec", 64), default_log_group(name)
        given = self.given
        self.resolve_one(res, "ecs_cluster", res.ecs_cluster, given.ecs_cluster_name,
                         lambda: self._find_ecs_cluster(res.ecs_cluster),
                         lambda: self._create_ecs_cluster(res.ecs_cluster, name), create)
        res.execution_role_arn = self.resolve_one(
            res, "execution_role", role_name, given.execution_role_arn,
            lambda: self._find_role(role_name), lambda: self._create_role(role_name, name), create)
        res.log_group = self.resolve_one(
            res, "log_group", log_group, given.log_group,
            lambda: self._find_log_group(log_group), lambda: self._create_log_group(log_group, name), create)
        res.security_groups = self._resolve_security_groups(res, name, create)
        return res

    # -- network --------------------------------------------------------------------------------------------------

    def _resolve_network(self, res: FargateResources) -> None:
        net = self.network
        if net.subnets is not None:
            res.subnets = list(net.subnets)
            res.vpc_id = net.vpc_id
            if res.vpc_id is None and net.security_groups is None:
                subnet = self.api.call("ec2", "describe_subnets", SubnetIds=[res.subnets[0]])["Subnets"][0]
                res.vpc_id = subnet["VpcId"]
        else:
            res.vpc_id = net.vpc_id or self._default_vpc()
            res.subnets = self._subnets_of(res.vpc_id, default_only=net.vpc_id is None)
        logger.debug("network: VPC %s, subnets %s", res.vpc_id, ", ".join(res.subnets))

    def _default_vpc(self) -> str:
        vpcs = self.api.call("ec2", "describe_vpcs", Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
        if not vpcs:
            raise Refused(f"region {self.api.region()} has no default VPC; "
                          "pass subnets= (and security_groups=) or vpc_id=")
        return str(vpcs[0]["VpcId"])

    def _subnets_of(self, vpc_id: str, default_only: bool) -> list[str]:
        filters = [{"Name": "vpc-id", "Values": [vpc_id]}]
        if default_only:
            filters.append({"Name": "default-for-az", "Values": ["true"]})
        subnets = self.api.call("ec2", "describe_subnets", Filters=filters)["Subnets"]
        if not subnets:
            raise Refused(f"VPC {vpc_id} has no subnets; pass subnets=")
        return sorted(s["SubnetId"] for s in subnets)

    def _resolve_security_groups(self, res: FargateResources, name: str, create: bool) -> list[str]:
        if self.network.security_groups is not None:
            return list(self.network.security_groups)
        sg_name = aws_name(name, "-dockerparallel", 255)
        group = self.resolve_one(res, "security_group", sg_name, None,
                                 lambda: self._find_security_group(res.vpc_id, sg_name),
                                 lambda: self._create_security_group(res.vpc_id, sg_name, name), create)
        return [group] if group else []

    def _find_security_group(self, vpc_id: str | None, group_name: str) -> tuple[str, dict[str, str]] | None:
        filters = [{"Name": "group-name", "Values": [group_name]}]
        if vpc_id:
            filters.append({"Name": "vpc-id", "Values": [vpc_id]})
        groups = self.api.call("ec2", "describe_security_groups", Filters=filters)["SecurityGroups"]
        return (groups[0]["GroupId"], tag_map(groups[0].get("Tags"))) if groups else None

    def _create_security_group(self, vpc_id: str | None, group_name: str, owner: str) -> str:
        if vpc_id is None:
            raise Refused("cannot create a security group without a VPC")
        group_id = self.api.call(
            "ec2", "create_security_group", retry=False, GroupName=group_name, VpcId=vpc_id,
            Description=f"dockerparallel cluster {owner}: scheduler, dashboard and traffic between its tasks",
            TagSpecifications=[{"ResourceType": "security-group",
                                "Tags": aws_tags({**created_tags(owner), TAG_CLUSTER: owner})}],
        )["GroupId"]
        self.api.call("ec2", "authorize_security_group_ingress", GroupId=group_id,
                      IpPermissions=ingress_permissions(group_id, self.ports(), self.network.ingress_cidr))
        return str(group_id)

    # -- ECS cluster, role, log group -----------------------------------------------------------------------------

    def _find_ecs_cluster(self, name: str) -> tuple[str, dict[str, str]] | None:
        clusters = self.api.call("ecs", "describe_clusters", clusters=[name], include=["TAGS"])["clusters"]
        active = [c for c in clusters if c.get("status") == "ACTIVE"]
        return (name, tag_map(active[0].get("tags"))) if active else None

    def _create_ecs_cluster(self, name: str, owner: str) -> str:
        self.api.call("ecs", "create_cluster", clusterName=name, tags=ecs_tags(created_tags(owner)))
        return name

    def _find_role(self, role_name: str) -> tuple[str, dict[str, str]] | None:
        try:
            role = self.api.call("iam", "get_role", RoleName=role_name)["Role"]
        except Exception as exc:
            if error_code(exc) == "NoSuchEntity":
                return None
            raise
        return str(role["Arn"]), tag_map(role.get("Tags"))

    def _create_role(self, role_name: str, owner: str) -> str:
        role = self.api.call(
            "iam", "create_role", retry=False, RoleName=role_name, AssumeRolePolicyDocument=ASSUME_ROLE_POLICY,
            Description=f"ECS task execution role of dockerparallel cluster {owner}",
            Tags=aws_tags(created_tags(owner)),
        )["Role"]
        self.api.call("iam", "attach_role_policy", RoleName=role_name,
                      PolicyArn=EXECUTION_POLICY.format(partition=self.api.partition()))
        return str(role["Arn"])

    def _find_log_group(self, name: str) -> tuple[str, dict[str, str]] | None:
        groups = self.api.call("logs", "describe_log_groups", logGroupNamePrefix=name)["logGroups"]
        if not any(g.get("logGroupName") == name for g in groups):
            return None
        return name, dict(self.api.call("logs", "list_tags_log_group", logGroupName=name).get("tags") or {})

    def _create_log_group(self, name: str, owner: str) -> str:
        self.api.call("logs", "create_log_group", retry=False, logGroupName=name, tags=created_tags(owner))
        return name

    # -- removal --------------------------------------------------------------------------------------------------

    def remove_created(self, owner: str, res: FargateResources, delete_logs: bool = False) -> list[str]:
        """Remove what ``res`` says was created; return what could not be removed (already gone is success).

        A created log group is removed only with ``delete_logs``: it holds the
        tasks' logs, read after the cluster is down.
        """
        left = []
        for what, remove in self._removal_steps(owner, res, delete_logs):
            try:
                remove()
                logger.debug("cleanup: removed %s", what)
            except Exception as exc:
                if already_gone(exc):  # removed meanwhile, by another process say
                    logger.debug("cleanup: %s was already gone", what)
                    continue
                logger.warning("cleanup: could not remove %s: %s", what, exc)
                left.append(f"{what} ({exc})")
        return left

    def _removal_steps(self, owner: str, res: FargateResources,
                       delete_logs: bool) -> list[tuple[str, Callable[[], Any]]]:
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("task definitions", functools.partial(self._deregister_task_definitions, owner)),
            (f"secrets {secret_prefix(owner)}*", functools.partial(self._delete_secrets, owner))]
        if "ecs_cluster" in res.created:
            steps.append((f"ECS cluster {res.ecs_cluster}", functools.partial(self._delete_ecs_cluster,
                                                                              res.ecs_cluster)))
        if delete_logs and "log_group" in res.created and res.log_group:
            steps.append((f"log group {res.log_group}", functools.partial(
                self.api.call, "logs", "delete_log_group", logGroupName=res.log_group)))
        if "security_group" in res.created:
            steps += [(f"security group {g}", functools.partial(self._delete_security_group, g))
                      for g in res.security_groups]
        if "execution_role" in res.created and res.execution_role_arn:
            steps.append((f"role {res.execution_role_arn}",
                          functools.partial(self._delete_role, res.execution_role_arn.rsplit("/", 1)[-1])))
        return steps

    def _delete_ecs_cluster(self, name: str) -> None:
        self.api.wait_while(frozenset({"ClusterContainsTasksException"}),
                            functools.partial(self.api.call, "ecs", "delete_cluster", cluster=name),
                            f"ECS cluster {name}")

    def _delete_security_group(self, group_id: str) -> None:
        self.api.wait_while(frozenset({"DependencyViolation"}),
                            functools.partial(self.api.call, "ec2", "delete_security_group", GroupId=group_id),
                            f"security group {group_id}")

    def _deregister_task_definitions(self, owner: str) -> None:
        for role in ("server", "worker"):
            arns = self.api.pages("ecs", "list_task_definitions", "taskDefinitionArns",
                                  familyPrefix=family(owner, role), status="ACTIVE")
            for arn in arns:
                described = self.api.call("ecs", "describe_task_definition", taskDefinition=arn, include=["TAGS"])
                if tag_map(described.get("tags")).get(TAG_CREATED_BY) == owner:
                    self.api.call("ecs", "deregister_task_definition", taskDefinition=arn)
                    logger.debug("cleanup: deregistered %s", arn)

    def _delete_secrets(self, owner: str) -> None:
        """Delete for good the secrets under the cluster's prefix that carry its created-by tag."""
        prefix = secret_prefix(owner)
        found = self.api.pages("secretsmanager", "list_secrets", "SecretList", token="NextToken",
                               Filters=[{"Key": "name", "Values": [prefix]}])
        for secret in found:
            if str(secret.get("Name", "")).startswith(prefix) and \
                    tag_map(secret.get("Tags")).get(TAG_CREATED_BY) == owner:
                self.api.call("secretsmanager", "delete_secret", SecretId=secret["ARN"],
                              ForceDeleteWithoutRecovery=True)
                logger.debug("cleanup: deleted the secret %s", secret["Name"])

    def _delete_role(self, role_name: str) -> None:
        for policy_name in self.api.call("iam", "list_role_policies", RoleName=role_name)["PolicyNames"]:
            self.api.call("iam", "delete_role_policy", RoleName=role_name, PolicyName=policy_name)
        attached = self.api.call("iam", "list_attached_role_policies", RoleName=role_name)["AttachedPolicies"]
        for policy in attached:
            self.api.call("iam", "detach_role_policy", RoleName=role_name, PolicyArn=policy["PolicyArn"])
        self.api.call("iam", "delete_role", RoleName=role_name)
