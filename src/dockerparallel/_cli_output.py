"""What ``dockerparallel status`` and ``list`` show: one row per cluster, as a table or as JSON.

Nothing here imports Dask at module level: ``status`` with an empty state file
must answer fast. A row of a live cluster needs :class:`~dockerparallel.DockerCluster`,
imported when the first one is read.
"""

from __future__ import annotations

import enum
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, Sequence

from rich.markup import escape
from rich.table import Table

from ._errors import DockerParallelError, StateStoreError
from .providers import provider_label, registered_providers
from .state import ClusterRecord, StateStore

if TYPE_CHECKING:
    from distributed import Client

    from .cluster import DockerCluster

logger = logging.getLogger("dockerparallel.cli")

#: The server column of a cluster whose record cannot be rebuilt.
UNREADABLE = "unreadable"
#: The server column of a cluster whose provider failed to answer.
FAILED = "error"
#: Seconds a client waits for a scheduler when counting its workers.
CONNECT_TIMEOUT = 3.0
#: Seconds before a scheduler that did not answer is asked again.
RETRY_AFTER = 30.0
#: Errors of a provider (or of reaching it) that make one row an error, not the whole command.
ROW_ERRORS = (DockerParallelError, OSError, TimeoutError, ValueError)


class OutputFormat(str, enum.Enum):
    """How ``status`` and ``list`` print clusters."""

    TABLE = "table"
    JSON = "json"


@dataclass
class ClusterRow:
    """What is shown of one cluster; the JSON object has exactly these keys, in this order."""

    name: str
    provider: str
    server: str | None = None
    expected: int | None = None
    running: int | None = None
    initializing: int | None = None
    connected: int | None = None
    scheduler: str | None = None
    dashboard: str | None = None
    created: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The row as a JSON object (``None`` -> ``null``)."""
        return asdict(self)

    def cells(self) -> list[str]:
        """The row's cells in :data:`COLUMNS` order (``-`` for what is unknown)."""
        values = (self.name, self.provider, self.server, self.expected, self.running, self.initializing,
                  self.connected, self.scheduler, self.dashboard)
        return [escape(str(v)) if v not in (None, "") else "-" for v in values]


#: The table's columns: every key of :class:`ClusterRow` but ``created`` and ``error``.
COLUMNS = ("name", "provider", "server", "expected", "running", "initializing", "connected", "scheduler",
           "dashboard")


def unreadable_reason(exc: Exception, name: str) -> str:
    """What to say of a record that cannot be rebuilt, and how to remove it."""
    return (f"{exc}; to stop it and remove the record, pass --provider: 'dockerparallel down {name} "
            f"--provider PROVIDER' (where it ran: {', '.join(sorted(registered_providers()))}, "
            "or package.module:Class)")


def record_row(record: ClusterRecord) -> ClusterRow:
    """The row of ``record`` from the state file alone (what ``list`` shows; nothing is asked of the provider)."""
    expected = record.spec.get("expected") if isinstance(record.spec, dict) else None
    created = datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="seconds")
    named = record.spec.get("provider_name") if isinstance(record.spec, dict) else None
    return ClusterRow(name=record.name, provider=str(named or provider_label(record.provider)),
                      expected=expected if isinstance(expected, int) else None, created=created)


def live_row(store: StateStore, record: ClusterRecord, clients: ClientPool) -> ClusterRow:
    """The row of ``record`` with what its provider and its scheduler say now."""
    from .cluster import DockerCluster

    row = record_row(record)
    try:
        cluster = DockerCluster.reconnect(record.name, state=store)
    except StateStoreError as exc:
        row.server, row.error = UNREADABLE, unreadable_reason(exc, record.name)
        return row
    try:
        _fill(row, cluster, clients)
    except ROW_ERRORS as exc:
        logger.debug("status of %s failed", record.name, exc_info=True)
        row.server, row.error = FAILED, f"cluster {record.name!r}: {exc}"
    return row


def _fill(row: ClusterRow, cluster: DockerCluster, clients: ClientPool) -> None:
    row.server = str(cluster.server_status())
    numbers = cluster.get_worker_numbers()
    row.expected, row.running, row.initializing = numbers.expected, numbers.running, numbers.initializing
    if row.server == "running":
        row.scheduler = cluster.scheduler_address
        row.dashboard = cluster.dashboard_link or None
        row.connected = clients.connected(cluster)


class ClientPool:
    """Clients of the clusters' schedulers, to count the workers each scheduler sees.

    A scheduler that cannot be reached (a private address, TLS it has no
    certificates for) counts as ``None`` and is asked again after
    :data:`RETRY_AFTER` seconds; clients are kept until :meth:`close`.
    """

    def __init__(self) -> None:
        self._clients: dict[tuple[str, str], Client] = {}
        self._failed: dict[tuple[str, str], float] = {}

    def connected(self, cluster: DockerCluster) -> int | None:
        """The number of workers ``cluster``'s scheduler sees, or ``None`` when it cannot be asked."""
        key = (cluster.name, cluster.scheduler_address)
        if time.monotonic() < self._failed.get(key, float("-inf")):
            return None
        try:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = cluster.get_client(set_as_default=False, timeout=CONNECT_TIMEOUT)
            return len(client.scheduler_info(n_workers=-1)["workers"])
        except Exception:  # noqa: BLE001 - any failure to reach a scheduler means "unknown"
            logger.debug("cannot count the workers of %s", cluster.name, exc_info=True)
            self._drop(key)
            self._failed[key] = time.monotonic() + RETRY_AFTER
            return None

    def _drop(self, key: tuple[str, str]) -> None:
        client = self._clients.pop(key, None)
        if client is not None:
            try:
                client.close(timeout=CONNECT_TIMEOUT)
            except Exception:  # noqa: BLE001 - closing a broken client is best effort
                logger.debug("closing a client failed", exc_info=True)

    def close(self) -> None:
        """Close every client."""
        for key in list(self._clients):
            self._drop(key)


def table(rows: list[ClusterRow], title: str | None = None, caption: str | None = None) -> Table:
    """The rows as a Rich table."""
    result = Table(*COLUMNS[:-2], title=title, caption=caption, caption_justify="left")
    result.add_column("scheduler", overflow="fold")
    result.add_column("dashboard", overflow="fold")
    for row in rows:
        result.add_row(*row.cells())
    return result


class JsonRow(Protocol):
    """A row that ``-o json`` prints."""

    def to_json(self) -> dict[str, Any]: ...


def print_json(rows: Sequence[JsonRow]) -> None:
    """Print the rows as a JSON array on stdout (plain text: no colour, no wrapping)."""
    sys.stdout.write(json.dumps([row.to_json() for row in rows], indent=2) + "\n")
    sys.stdout.flush()
