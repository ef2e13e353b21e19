"""The tasks' logs, read from CloudWatch Logs.

A task logs through the ``awslogs`` driver of its task definition: its
container writes to the stream ``<awslogs-stream-prefix>/<container name>/<task
id>`` of the definition's ``awslogs-group``. The task definitions this package
registers log to the cluster's log group (``/dockerparallel/<name>`` unless
``log_group=`` is given) with the role (``server`` or ``worker``) as both the
prefix and the container name, so a stream of that group also says whose it
is after ECS has forgotten its task.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Iterable, Mapping, NamedTuple

from ._api import AwsApi, error_code
from ._fargate import TAG_ROLE, tag_map

logger = logging.getLogger("dockerparallel.providers.ecs")

#: The roles a task plays; the streams of the cluster's log group start with ``<role>/<role>/``.
ROLES = ("server", "worker")
#: Most pages of one stream read (10,000 events or 1 MB each): a bound on a stream still being written.
MAX_PAGES = 10_000


class LogPlace(NamedTuple):
    """Where the awslogs driver writes a task definition's logs."""

    group: str
    prefix: str
    container: str


class LogEntry(NamedTuple):
    """One stream to read: whose it is (role, label), where it is, and when it began (seconds since the epoch)."""

    role: str
    label: str
    group: str
    stream: str
    started: float


def log_place(definition: Mapping[str, Any]) -> LogPlace | None:
    """Where the first container of a described task definition logs; ``None`` when not through awslogs."""
    container = (definition.get("containerDefinitions") or [{}])[0]
    config = container.get("logConfiguration") or {}
    options = config.get("options") or {}
    group, prefix = options.get("awslogs-group"), options.get("awslogs-stream-prefix")
    if config.get("logDriver") != "awslogs" or not group or not prefix or not container.get("name"):
        return None
    return LogPlace(str(group), str(prefix), str(container["name"]))


def task_stream(place: LogPlace, task_arn: str) -> str:
    """The stream of the task ``task_arn``: ``<prefix>/<container name>/<task id>``."""
    return f"{place.prefix}/{place.container}/{task_arn.rsplit('/', 1)[-1]}"


def ordered(entries: Iterable[LogEntry], server_arn: str | None) -> list[tuple[str, LogEntry]]:
    """(key, entry) in the order of :meth:`~dockerparallel.CloudProvider.get_docker_logs`.

    ``"server"`` is the entry labelled ``server_arn``, else the newest
    server; then the other servers (``"server <label>"``) and the workers
    (``"worker <label>"``), each in the order they started.
    """
    by_start = sorted(entries, key=lambda e: e.started)
    servers = [e for e in by_start if e.role == "server"]
    current = [e for e in servers if e.label == server_arn][-1:] or servers[-1:]
    rest = [e for e in servers if e not in current] + [e for e in by_start if e.role != "server"]
    return [("server", e) for e in current] + [(f"{e.role} {e.label}", e) for e in rest]


def _seconds(value: Any) -> float:
    """A time of a task description (a datetime) as seconds since the epoch; 0 when unknown."""
    try:
        return float(value.timestamp())
    except (AttributeError, TypeError, ValueError, OverflowError):
        return 0.0


class TaskLogs:
    """Reads the logs of a provider's tasks through its :class:`AwsApi`. Thread-safe."""

    def __init__(self, api: AwsApi) -> None:
        self.api = api
        self._lock = threading.Lock()
        self._places: dict[str, LogPlace | None] = {}  # task definition ARN -> where it logs

    def collect(self, tasks: Iterable[Mapping[str, Any]], server_arn: str | None,
                own_group: str | None) -> dict[str, str]:
        """The text of each stream of ``tasks``, and of every stream in ``own_group`` (when given).

        Parameters
        ----------
        tasks : iterable of mapping
            Task descriptions (with their tags) of the cluster.
        server_arn : str or None
            The server task the provider holds, if any.
        own_group : str or None
            The cluster's own log group: its ``server/server/`` and
            ``worker/worker/`` streams are read too, the tasks ECS forgot
            included (labelled with their stream name). ``None`` for a log
            group that other clusters may share.

        Returns
        -------
        dict of str to str
            Key -> text, in the order of :func:`ordered`; a stream that does
            not exist (yet) has no entry.
        """
        entries = self._task_entries(tasks, server_arn)
        if own_group is not None:
            entries += self._group_entries(own_group, {(e.group, e.stream) for e in entries})
        logs: dict[str, str] = {}
        for key, entry in ordered(entries, server_arn):
            text = self.read(entry.group, entry.stream)
            if text is not None:
                logs[key] = text
        return logs

    def _task_entries(self, tasks: Iterable[Mapping[str, Any]], server_arn: str | None) -> list[LogEntry]:
        entries = []
        for task in tasks:
            arn = str(task.get("taskArn", ""))
            place = self.place(str(task.get("taskDefinitionArn", "")))
            if place is None:
                logger.debug("logs: task %s does not log through awslogs", arn)
                continue
            role = "server" if arn == server_arn else tag_map(task.get("tags")).get(TAG_ROLE, "worker")
            entries.append(LogEntry(role, arn, place.group, task_stream(place, arn), _seconds(task.get("createdAt"))))
        return entries

    def _group_entries(self, group: str, seen: set[tuple[str, str]]) -> list[LogEntry]:
        entries = []
        for role in ROLES:
            for stream in self.streams(group, f"{role}/{role}/"):
                name = str(stream.get("logStreamName", ""))
                if name and (group, name) not in seen:
                    entries.append(LogEntry(role, name, group, name, float(stream.get("creationTime") or 0) / 1000))
        return entries

    def place(self, definition_arn: str) -> LogPlace | None:
        """Where the tasks of a task definition log (asked once per definition); ``None`` when unknown."""
        with self._lock:
            if definition_arn in self._places:
                return self._places[definition_arn]
        try:
            definition = self.api.call("ecs", "describe_task_definition", taskDefinition=definition_arn)
        except Exception as exc:
            if error_code(exc) not in ("ClientException", "InvalidParameterException"):
                raise
            logger.debug("logs: task definition %s is unknown (%s)", definition_arn, error_code(exc))
            return None
        place = log_place(definition.get("taskDefinition") or {})
        with self._lock:
            self._places[definition_arn] = place
        return place

    def streams(self, group: str, prefix: str) -> list[dict[str, Any]]:
        """The streams of ``group`` whose names start with ``prefix`` (none when the group does not exist)."""
        try:
            return self.api.pages("logs", "describe_log_streams", "logStreams", logGroupName=group,
                                  logStreamNamePrefix=prefix)
        except Exception as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
            logger.debug("logs: log group %s does not exist", group)
            return []

    def read(self, group: str, stream: str) -> str | None:
        """The whole text of a stream, oldest line first (read page by page); ``None`` if it does not exist."""
        lines: list[str] = []
        token: str | None = None
        for _ in range(MAX_PAGES):
            paging: dict[str, Any] = {"nextToken": token} if token else {}
            try:
                page = self.api.call("logs", "get_log_events", logGroupName=group, logStreamName=stream,
                                     startFromHead=True, **paging)
            except Exception as exc:
                if error_code(exc) != "ResourceNotFoundException":
                    raise
                logger.debug("logs: stream %s of %s does not exist (yet)", stream, group)
                return None
            lines += [str(event.get("message", "")).rstrip("\n") for event in page.get("events") or []]
            if not page.get("nextForwardToken") or page["nextForwardToken"] == token:
                break  # the same token again: the end of the stream
            token = page["nextForwardToken"]
        return "".join(line + "\n" for line in lines)
