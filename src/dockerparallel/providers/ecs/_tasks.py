"""The ECS tasks of a provider: started idempotently, described, listed and stopped.

``run_task`` is retried with backoff on throttling and time-outs; each call
carries a fresh ``startedBy`` token (and a matching ``clientToken``), and
before a retry the tasks the failed try started are looked up by that token
and adopted instead of started twice. Botocore's exceptions travel up
untouched (the provider's error map translates them), except where a known
answer means success: an unknown ECS cluster has no tasks, and a task ECS no
longer knows is stopped.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Iterable, Mapping

from ...provider import WorkerStatus
from ._api import AwsApi, error_code, error_kind
from ._fargate import DESCRIBE_TASKS_MAX, TAG_CLUSTER, TAG_ROLE, TASK_ARN, Launch, batches, tag_map, task_status

logger = logging.getLogger("dockerparallel.providers.ecs")


class Tasks:
    """Start, describe, list and stop the ECS tasks of one provider through its :class:`AwsApi`."""

    def __init__(self, api: AwsApi) -> None:
        self.api = api

    def describe(self, ecs_cluster: str, handles: Iterable[str], tags: bool = False) -> dict[str, dict[str, Any]]:
        """Task ARN -> description, for the handles ECS knows (chunks of 100; none when the cluster is unknown)."""
        arns = [h for h in dict.fromkeys(handles) if TASK_ARN.match(h)]
        extra: dict[str, Any] = {"include": ["TAGS"]} if tags else {}
        found: dict[str, dict[str, Any]] = {}
        for chunk in batches(arns, DESCRIBE_TASKS_MAX):
            try:
                response = self.api.call("ecs", "describe_tasks", cluster=ecs_cluster, tasks=chunk, **extra)
            except Exception as exc:
                if error_code(exc) == "ClusterNotFoundException":
                    return {}
                raise
            found.update((t["taskArn"], t) for t in response.get("tasks", []) if t.get("taskArn") in chunk)
        return found

    def list_arns(self, ecs_cluster: str, desired: str = "RUNNING", **filters: str) -> list[str]:
        """ARNs of the tasks of ``ecs_cluster`` meant to run (``desired="STOPPED"``: stopped), with ``filters``."""
        return self.api.pages("ecs", "list_tasks", "taskArns", cluster=ecs_cluster, desiredStatus=desired,
                              **filters)

    def tagged(self, ecs_cluster: str, name: str, known: Iterable[str] = ()) -> list[dict[str, Any]]:
        """The tasks ECS still describes, live or stopped, tagged with the cluster ``name`` or ``known``; oldest first.

        ECS forgets a stopped task about an hour after it stopped.
        """
        known = [arn for arn in known if arn]
        try:
            arns = self.list_arns(ecs_cluster) + self.list_arns(ecs_cluster, "STOPPED")
        except Exception as exc:
            if error_code(exc) == "ClusterNotFoundException":
                return []
            raise
        tasks = [task for arn, task in self.describe(ecs_cluster, [*arns, *known], tags=True).items()
                 if arn in known or tag_map(task.get("tags")).get(TAG_CLUSTER) == name]
        return sorted(tasks, key=lambda t: str(t.get("createdAt", "")))

    def of_cluster(self, ecs_cluster: str, name: str, role: str | None = None) -> list[dict[str, Any]]:
        """The live tasks tagged with the cluster ``name`` (and ``role``), oldest first."""
        try:
            arns = self.list_arns(ecs_cluster)
        except Exception as exc:
            if error_code(exc) == "ClusterNotFoundException":
                return []
            raise
        tasks = []
        for task in self.describe(ecs_cluster, arns, tags=True).values():
            tags = tag_map(task.get("tags"))
            if tags.get(TAG_CLUSTER) == name and role in (None, tags.get(TAG_ROLE)) \
                    and task_status(task) != WorkerStatus.STOPPED.value:
                tasks.append(task)
        return sorted(tasks, key=lambda t: str(t.get("createdAt", "")))

    def stop(self, ecs_cluster: str, arn: str, task: Mapping[str, Any] | None, reason: str) -> bool:
        """Stop one task; ``True`` when it is stopped or unknown, ``False`` (logged) when ECS refused.

        Throttling that does not end propagates (the caller should slow down).
        """
        if task_status(task) == WorkerStatus.STOPPED.value:
            return True
        try:
            self.api.call("ecs", "stop_task", cluster=ecs_cluster, task=arn, reason=reason)
        except Exception as exc:
            if error_code(exc) == "InvalidParameterException" and "not found" in str(exc).lower():
                return True
            if error_kind(exc) in (None, "throttle"):
                raise
            logger.warning("stop_task of %s failed: %s", arn, exc)
            return False
        return True

    def start(self, spec: Launch, count: int) -> tuple[list[str], BaseException | None]:
        """Start ``count`` tasks with one token; return their ARNs and the error that stopped it, if any.

        A try that fails is retried with backoff; before each retry the tasks
        the failed try started are listed by the token and adopted.
        """
        ecs = self.api.client("ecs")
        token = f"dp-{uuid.uuid4().hex}"
        arns: list[str] = []
        attempts = self.api.options.max_attempts
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                arns = self.adopt(spec, token, arns)
            if len(arns) >= count:
                break
            try:
                response = ecs.run_task(**spec.request(token, count - len(arns), len(arns)))
            except Exception as exc:
                if not self.api.retry("ecs", "run_task", exc, attempt, attempts):
                    return self.adopt(spec, token, arns), exc
                continue
            arns += [t["taskArn"] for t in response.get("tasks", []) if t["taskArn"] not in arns]
            for failure in response.get("failures") or []:
                logger.warning("ECS did not start a task: %s %s", failure.get("reason"), failure.get("detail", ""))
            break
        return arns, None

    def adopt(self, spec: Launch, token: str, arns: list[str]) -> list[str]:
        """``arns`` plus the tasks started with ``token`` that it lacks."""
        try:
            found = self.list_arns(spec.ecs_cluster, startedBy=token)
        except Exception as exc:  # the tags still let reconnect() and a deep cleanup find them
            logger.warning("could not list the tasks started with token %s: %s", token, exc)
            return arns
        new = [arn for arn in found if arn not in arns]
        if new:
            logger.info("adopted %d task(s) that a failed run_task call started (startedBy=%s)", len(new), token)
        return arns + new
