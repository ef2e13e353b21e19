"""Task definitions and the secret that holds the containers' secret variables.

Secret environment variables (those the container marks secret: the
cluster's TLS certificates and private keys) never travel in the
``run_task`` overrides, where anyone allowed ``ecs:DescribeTasks`` could
read them: they are stored once per cluster in one AWS Secrets Manager
secret (``dockerparallel/<cluster name>/env-<digest>``, a JSON object tagged
like the other created resources) that the task definitions reference in
their containers' ``secrets``. A created execution role gets an inline
policy that lets ECS read the cluster's secrets.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import TYPE_CHECKING, Any, Callable, Mapping

from ._api import AwsApi, Refused, error_code, error_kind
from ._fargate import (
    SECRETS_POLICY_NAME,
    SECRETS_RESOURCE,
    TAG_CREATED_BY,
    FargateResources,
    TaskDefinition,
    TaskDefinitionPlace,
    aws_tags,
    container_secrets,
    created_tags,
    definition_key,
    secret_digest,
    secret_name,
    secret_prefix,
    secrets_policy,
    secret_values,
    tag_map,
    task_definition_request,
)

if TYPE_CHECKING:
    from ...container import DockerContainer
    from ...provider import ClusterView
    from ._options import GivenResources

logger = logging.getLogger("dockerparallel.providers.ecs")


class Once:
    """A thread-safe set of keys that says ``True`` the first time it sees each (for warn-once messages)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: set[Any] = set()

    def first(self, key: Any) -> bool:
        """Whether ``key`` is new, remembering it: true once, whatever the threads."""
        with self._lock:
            if key in self._seen:
                return False
            self._seen.add(key)
            return True


class Definitions:
    """The task definitions and secrets of a cluster, registered or created once and cached.

    Subclassed by :class:`~._resources.ClusterResources`, which provides
    :meth:`ensure` (the cluster's resources) and :meth:`ports`.
    """

    def __init__(self, api: AwsApi, given: GivenResources) -> None:
        self.api = api
        self.given = given
        self.lock = threading.RLock()  # resources, task definitions, secrets (re-entered by their steps)
        self._cache: dict[tuple[str, str, str], TaskDefinition] = {}
        self._secret_arns: dict[str, str] = {}  # secret name -> ARN
        self._secrets_allowed: set[str] = set()  # execution roles told (or seen) to read the secrets
        self._warned = Once()

    def ensure(self, cluster: ClusterView) -> FargateResources:  # pragma: no cover - see ClusterResources
        """The resources of ``cluster``, initialized when needed."""
        raise NotImplementedError

    def ports(self) -> tuple[int, ...]:  # pragma: no cover - see ClusterResources
        """The ports the server publishes."""
        raise NotImplementedError

    def forget_definitions(self, roles_too: bool = False) -> None:
        """Forget the cached task definitions and secrets (and with ``roles_too``, the roles told to read them)."""
        with self.lock:
            self._cache.clear()
            self._secret_arns.clear()
            if roles_too:
                self._secrets_allowed.clear()

    def resolve_one(self, res: FargateResources, kind: str, label: str, override: str | None,
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

    # -- task definitions -----------------------------------------------------------------------------------------

    def task_definition(self, cluster: ClusterView, role: str, container: DockerContainer) -> TaskDefinition:
        """The task definition that runs ``container`` as ``role``, with its secret variables in ``secrets``.

        Registered (or reused) once per image and set of secret values; a
        task definition given to the constructor is used as it is.
        Thread-safe: concurrent launches that miss the cache register one
        task definition, not one each (the others wait and reuse it).
        """
        values = secret_values(container)
        key = (role, container.image, secret_digest(cluster.name, values))
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        with self.lock:
            if key not in self._cache:  # another thread may have filled it meanwhile
                given = self.given.server_task_definition if role == "server" else self.given.worker_task_definition
                if given is not None:
                    result = self._given_task_definition(role, given, values)
                else:
                    secrets = container_secrets(self.secret_arn(cluster, values), values) if values else []
                    arn = self._ensure_task_definition(cluster, role, container.image, secrets)
                    result = TaskDefinition(arn, role, frozenset(values))
                self._cache[key] = result
            return self._cache[key]

    def _given_task_definition(self, role: str, name: str, values: Mapping[str, str]) -> TaskDefinition:
        """A task definition given to the constructor; the secret variables its ``secrets`` lack go in overrides."""
        described = self.api.call("ecs", "describe_task_definition", taskDefinition=name)["taskDefinition"]
        container = described["containerDefinitions"][0]
        given = frozenset(str(s.get("name")) for s in container.get("secrets") or []) & set(values)
        missing = sorted(set(values) - given)
        if missing and self._warned.first(name):
            logger.warning("the %s task definition %s was given and its secrets lack %s: these travel in the "
                           "run_task overrides, where anyone allowed ecs:DescribeTasks reads them",
                           role, name, ", ".join(missing))
        return TaskDefinition(str(described["taskDefinitionArn"]), str(container["name"]), given)

    def _ensure_task_definition(self, cluster: ClusterView, role: str, image: str,
                                secrets: list[dict[str, str]]) -> str:
        """Reuse the family's latest revision when it matches (image, ports, secrets...); else register one."""
        res = self.ensure(cluster)
        place = TaskDefinitionPlace(res.log_group, self.api.region(), res.execution_role_arn, self.ports())
        request = task_definition_request(cluster.name, role, image, place, secrets)
        latest = self._latest_task_definition(request["family"])
        if latest is not None and definition_key(latest[0]) == definition_key(request):
            arn = str(latest[0]["taskDefinitionArn"])
            if latest[1].get(TAG_CREATED_BY) == cluster.name:
                res.created.add(f"task_definition:{role}")
            logger.debug("task definition %s: reusing %s", role, arn)
        else:
            arn = str(self.api.call("ecs", "register_task_definition", retry=False, **request)
                      ["taskDefinition"]["taskDefinitionArn"])
            res.created.add(f"task_definition:{role}")
            logger.debug("task definition %s: registered %s for image %s", role, arn, image)
        res.task_definitions[role] = arn
        return arn

    def _latest_task_definition(self, name: str) -> tuple[dict[str, Any], dict[str, str]] | None:
        try:
            response = self.api.call("ecs", "describe_task_definition", taskDefinition=name, include=["TAGS"])
        except Exception as exc:
            if error_code(exc) in ("ClientException", "InvalidParameterException"):
                return None
            raise
        definition = response["taskDefinition"]
        if definition.get("status") != "ACTIVE":
            return None
        return definition, tag_map(response.get("tags"))

    # -- secrets --------------------------------------------------------------------------------------------------

    def secret_arn(self, cluster: ClusterView, values: Mapping[str, str]) -> str:
        """The ARN of the secret that holds ``values`` as one JSON object, found or created.

        Its name carries a digest of the values: other certificates make
        another secret, and an existing secret never needs to be read back.
        The execution role is then allowed to read it. Thread-safe: found or
        created once, under the lock (re-entered from :meth:`task_definition`).
        """
        with self.lock:
            res = self.ensure(cluster)
            name = secret_name(cluster.name, secret_digest(cluster.name, values))
            if name not in self._secret_arns:
                arn = self.resolve_one(res, "secrets", name, None, lambda: self._find_secret(name),
                                       lambda: self._create_secret(name, cluster.name, values), True)
                assert arn is not None
                self._secret_arns[name] = arn
            self._allow_secrets(cluster.name, res)
            return self._secret_arns[name]

    def _find_secret(self, name: str) -> tuple[str, dict[str, str]] | None:
        try:
            described = self.api.call("secretsmanager", "describe_secret", SecretId=name)
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise
        if described.get("DeletedDate"):
            raise Refused(f"the secret {name} is scheduled for deletion: restore it, or delete it "
                          "for good (ForceDeleteWithoutRecovery) and try again")
        return str(described["ARN"]), tag_map(described.get("Tags"))

    def _create_secret(self, name: str, owner: str, values: Mapping[str, str]) -> str:
        """Create the secret ``name`` holding ``values``; an error never quotes (nor chains) the request."""
        try:
            return str(self.api.call(
                "secretsmanager", "create_secret", Name=name, SecretString=json.dumps(dict(values), sort_keys=True),
                Description=f"secret environment variables of dockerparallel cluster {owner}",
                Tags=aws_tags(created_tags(owner)))["ARN"])
        except Exception as exc:
            if error_kind(exc) not in (None, "error", "invalid_request"):  # throttling, time-outs, credentials
                raise
            code = error_code(exc) or type(exc).__name__
        found = self._find_secret(name) if code == "ResourceExistsException" else None  # made meanwhile
        if found is None:
            raise Refused(f"could not create the secret {name} ({code})")
        return found[0]

    def _allow_secrets(self, owner: str, res: FargateResources) -> None:
        """Let the execution role read the cluster's secrets: an inline policy on a created role, a note else."""
        role = res.execution_role_arn
        if role is None or f"{role} {owner}" in self._secrets_allowed:
            return
        self._secrets_allowed.add(f"{role} {owner}")
        parts = role.split(":")
        resource = SECRETS_RESOURCE.format(partition=self.api.partition(), region=self.api.region(),
                                           account=parts[4] if len(parts) > 5 else "*", prefix=secret_prefix(owner))
        if "execution_role" not in res.created:
            logger.info("the execution role %s was given: it must allow secretsmanager:GetSecretValue on %s",
                        role, resource)
            return
        self.api.call("iam", "put_role_policy", RoleName=role.rsplit("/", 1)[-1], PolicyName=SECRETS_POLICY_NAME,
                      PolicyDocument=secrets_policy(resource))
        logger.debug("execution role %s: may read the secrets %s", role, resource)
