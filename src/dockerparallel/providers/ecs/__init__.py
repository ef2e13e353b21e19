"""`ECSFargateProvider`: the server and the workers as AWS ECS tasks on Fargate.

:meth:`ECSFargateProvider.initialize_cloud_provider` finds or creates what a
cluster needs (an ECS cluster, a task execution role, a log group, a
security group, the server and worker task definitions) and reads the
network (the default VPC's subnets unless you name yours). Everything it
creates carries the tag ``dockerparallel-created-by=<cluster name>``, so a
deep cleanup — even from another process — removes exactly that and nothing
it did not create, except the log group: it keeps the tasks' logs (read by
:meth:`ECSFargateProvider.get_docker_logs`) unless the provider has
``delete_logs=True``. Ids you pass to the constructor are used as they are
and never created or removed.

Every task carries the tags ``dockerparallel-cluster``, ``dockerparallel-role``
and ``dockerparallel-workers``, so another process can find a running
cluster by its name. ``run_task`` is retried with backoff on throttling and
time-outs; each call carries a fresh ``startedBy`` token (and a matching
``clientToken``), and before a retry the tasks the failed try started are
looked up by that token and adopted instead of started twice. A large
scale-up runs as up to ``max_concurrent_calls`` batches of at most 10 tasks
at once (see :meth:`ECSFargateProvider.launch_capabilities`); everything a
launch touches is thread-safe.

Secret environment variables (those the container marks secret: the cluster's TLS
certificates and private keys) never travel in the ``run_task`` overrides:
they are stored once per cluster in one AWS Secrets Manager secret that the
task definitions reference; a deep cleanup deletes it.

Every public method of the provider translates botocore's errors through
one table (:data:`ERROR_TABLE`): throttling that outlasts the retries is
:class:`~dockerparallel.ProviderThrottled`, anything else a
:class:`~dockerparallel.ProviderError` naming the provider class and the
method, never a credential.

boto3 is an optional dependency: ``pip install 'dockerparallel[aws]'``.
Region and credentials come from boto3's usual chain (environment variables,
``~/.aws`` profiles, instance roles); nothing secret is stored, shown or
logged by this package.

The package, one concern a module: ``_api`` (session, clients, paging,
waiting, retries, the error map), ``_fargate`` (the rules of Fargate, pure),
``_options`` (the constructor's options), ``_resources`` and
``_definitions`` (what a cluster creates and removes), ``_tasks`` (starting,
describing and stopping tasks), ``_logs`` (reading the tasks' logs) and
``provider`` (the provider).
"""

from __future__ import annotations

from ...managed import ProviderCapabilities
from ._api import CREDENTIALS_HELP, ERROR_TABLE, KINDS, botocore_errors, translate
from ._fargate import (
    ASSUME_ROLE_POLICY,
    DESCRIBE_TASKS_MAX,
    EXECUTION_POLICY,
    FARGATE_MAX_CPU,
    FARGATE_MAX_MEMORY,
    FARGATE_SIZES,
    MAX_CONCURRENT_RUN_CALLS,
    OVERRIDES_MAX,
    RUN_TASK_MAX,
    SECRETS_POLICY_NAME,
    TAG_CLUSTER,
    TAG_CREATED_BY,
    TAG_ROLE,
    TAG_WORKERS,
    FargateResources,
    aws_name,
    definition_key,
    fargate_size,
    overrides,
    secret_prefix,
    tag_map,
    task_address,
    task_status,
    workers_per_task,
)
from .provider import ECSFargateProvider

# Known by its public path (the registry's "dockerparallel.providers.ecs:ECSFargateProvider",
# the records in the state store), not by the module that defines it.
ECSFargateProvider.__module__ = __name__

# The private names of the former single module, still importable from here.
_ASSUME_ROLE_POLICY = ASSUME_ROLE_POLICY
_EXECUTION_POLICY = EXECUTION_POLICY
_CREDENTIALS_HELP = CREDENTIALS_HELP
_definition_key = definition_key
_overrides = overrides
_tag_map = tag_map
_aws_name = aws_name
_secret_prefix = secret_prefix

__all__ = [
    "DESCRIBE_TASKS_MAX", "ERROR_TABLE", "FARGATE_MAX_CPU", "FARGATE_MAX_MEMORY", "FARGATE_SIZES", "KINDS",
    "MAX_CONCURRENT_RUN_CALLS", "OVERRIDES_MAX", "RUN_TASK_MAX", "SECRETS_POLICY_NAME",
    "TAG_CLUSTER", "TAG_CREATED_BY", "TAG_ROLE", "TAG_WORKERS", "ECSFargateProvider", "FargateResources",
    "ProviderCapabilities", "botocore_errors", "fargate_size", "task_address", "task_status", "translate",
    "workers_per_task",
]
