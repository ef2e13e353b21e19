"""The state store: clusters and their resources in SQLite, shared by processes.

The store lets another process (the CLI, a new Python session) find a cluster
again: its spec, its server and every worker handle, recorded as soon as a
provider returns them. The file lives in the user data directory (from
platformdirs) unless ``DOCKERPARALLEL_STATE`` or an explicit path says
otherwise, and is created with mode 0600. Its path is always absolute. Beside
it, ``locks/`` holds a lock file per cluster (:class:`ClusterLock`).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import platformdirs

from ._errors import ClusterExistsError, StateStoreError
from ._filelock import ClusterLock
from ._validation import check_name

logger = logging.getLogger("dockerparallel.state")

__all__ = ["ClusterLock", "ClusterRecord", "ResourceRecord", "StateStore", "StateStoreError", "default_state_path"]

ENV_STATE = "DOCKERPARALLEL_STATE"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS clusters (
    name TEXT PRIMARY KEY, provider TEXT NOT NULL, spec TEXT NOT NULL,
    created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS resources (
    cluster TEXT NOT NULL, handle TEXT NOT NULL, role TEXT NOT NULL,
    count INTEGER NOT NULL, data TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (cluster, handle));
"""

#: The columns of each table, in order, as the schema creates them.
_COLUMNS = {
    "clusters": ["name", "provider", "spec", "created", "updated"],
    "resources": ["cluster", "handle", "role", "count", "data", "created"],
}

#: Create or replace a cluster's record (keeping its creation time).
_UPSERT_CLUSTER = ("INSERT INTO clusters VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                   "provider=excluded.provider, spec=excluded.spec, updated=excluded.updated")

#: Seconds a process waits for another one that holds the file.
_BUSY_TIMEOUT = 30.0


def _busy(exc: sqlite3.OperationalError) -> bool:
    """Whether ``exc`` says another connection holds the database."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is None:
        return "locked" in str(exc)
    return (code & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


#: What :meth:`StateStore._recorded_owner` returns when there is no record.
_ABSENT = object()


@dataclass(frozen=True)
class ClusterRecord:
    """A cluster as recorded: its provider name and spec.

    The spec holds the cluster's TLS private keys, so it is left out of ``repr``.
    """

    name: str
    provider: str
    spec: dict[str, Any] = field(repr=False)
    created: float
    updated: float


@dataclass(frozen=True)
class ResourceRecord:
    """One resource (server or worker handle) of a cluster."""

    cluster: str
    handle: str
    role: str
    count: int
    data: dict[str, Any]
    created: float


def default_state_path() -> Path:
    """``$DOCKERPARALLEL_STATE`` or ``<user data dir>/dockerparallel/state.sqlite3``, absolute.

    ``~`` is expanded and a relative path is taken against the working directory.
    """
    env = os.environ.get(ENV_STATE)
    return Path(env or platformdirs.user_data_path("dockerparallel") / "state.sqlite3").expanduser().resolve()


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


class StateStore:
    """Clusters and resources in one SQLite file, safe for several processes.

    Parameters
    ----------
    path : str or Path, optional
        The file (default: :func:`default_state_path`). ``~`` is expanded and
        a relative path is taken against the working directory of the moment
        the store is made; :attr:`path` is absolute.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        self.path = Path(path).expanduser().resolve() if path is not None else default_state_path()
        self._ready = False

    def __repr__(self) -> str:
        return f"StateStore({str(self.path)!r})"

    @property
    def log_dir(self) -> Path:
        """Where providers keep the logs of local processes."""
        return self.path.parent / "logs"

    def _create_file(self) -> None:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
            os.close(fd)
            os.chmod(self.path, 0o600)
        except OSError as exc:
            raise StateStoreError(f"cannot create state file {self.path}: {exc.strerror or exc}") from exc

    def _decode(self, text: str, what: str) -> dict[str, Any]:
        """JSON ``text`` read from the file, or a :class:`StateStoreError` naming the file."""
        try:
            value = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise StateStoreError(f"state file {self.path} is corrupt: {what} is not JSON ({exc})") from None
        if not isinstance(value, dict):
            raise StateStoreError(f"state file {self.path} is corrupt: {what} is not a JSON object")
        return value

    def _cluster(self, row: tuple[Any, ...]) -> ClusterRecord:
        spec = self._decode(row[2], f"the spec of cluster {row[0]!r}")
        return ClusterRecord(row[0], row[1], spec, row[3], row[4])

    def _resource(self, row: tuple[Any, ...]) -> ResourceRecord:
        data = self._decode(row[4], f"the data of resource {row[1]!r} of cluster {row[0]!r}")
        return ResourceRecord(row[0], row[1], row[2], row[3], data, row[5])

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        """Refuse (and leave untouched) a database whose tables are not those of a state file."""
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            columns = [row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')]
            if _COLUMNS.get(table) != columns:
                raise StateStoreError(
                    f"state file {self.path} is not a dockerparallel state file "
                    f"(unexpected table {table!r}); point {ENV_STATE} elsewhere or move the file away"
                )

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """Check the schema, switch to WAL and create the tables.

        Switching a new file to WAL fails at once (no busy wait) while another
        process does the same, so the switch is retried until the busy timeout.
        """
        deadline = time.monotonic() + _BUSY_TIMEOUT
        while True:
            try:
                self._check_schema(conn)
                if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(_SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                if not _busy(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if not self._ready:
            self._create_file()
        try:
            conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT, isolation_level=None)
        except sqlite3.Error as exc:
            raise StateStoreError(f"cannot open state file {self.path}: {exc}") from exc
        try:
            if not self._ready:
                self._prepare(conn)
                self._ready = True
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            _rollback(conn)
            raise StateStoreError(f"state file {self.path} is unreadable or corrupt: {exc}") from exc
        except BaseException:
            _rollback(conn)
            raise
        finally:
            conn.close()

    # -- clusters -------------------------------------------------------------------

    def save_cluster(self, name: str, provider: str, spec: dict[str, Any]) -> None:
        """Create or replace the record of cluster ``name``."""
        now = time.time()
        with self._connect() as conn:
            conn.execute(_UPSERT_CLUSTER, (name, provider, json.dumps(spec), now, now))

    def load_cluster(self, name: str) -> ClusterRecord | None:
        """The record of cluster ``name``, or ``None``."""
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM clusters WHERE name = ?", (name,)).fetchone()
        return None if row is None else self._cluster(row)

    def list_clusters(self) -> list[ClusterRecord]:
        """Every recorded cluster, oldest first."""
        with self._connect() as conn:
            rows = conn.execute("SELECT * FROM clusters ORDER BY created").fetchall()
        return [self._cluster(r) for r in rows]

    def claim_cluster(self, name: str, provider: str, spec: dict[str, Any], owner: str) -> None:
        """Record cluster ``name`` for ``owner`` in one transaction, unless another owner holds the name.

        The record is created if there is none, and replaced if its spec's
        ``"owner"`` is ``owner``; of several claims at once, exactly one wins.

        Parameters
        ----------
        name, provider : str
            The cluster's name and its provider's class path.
        spec : dict
            The cluster's spec; it is stored with ``"owner": owner``.
        owner : str
            Who claims the name (an id unique to one cluster object).

        Raises
        ------
        ClusterExistsError
            If the name is recorded for another owner (or for none).
        """
        if not isinstance(owner, str) or not owner:
            raise (ValueError if owner == "" else TypeError)(f"owner must be a non-empty string, got {owner!r}")
        now = time.time()
        text = json.dumps({**spec, "owner": owner})
        with self._connect() as conn:
            if self._recorded_owner(conn, name) not in (owner, _ABSENT):
                raise ClusterExistsError(name, f"recorded in state file {self.path}")
            conn.execute(_UPSERT_CLUSTER, (name, provider, text, now, now))

    def _recorded_owner(self, conn: sqlite3.Connection, name: str) -> Any:
        """The ``"owner"`` of the record of ``name`` (``None`` if it has none), or :data:`_ABSENT`."""
        row = conn.execute("SELECT spec FROM clusters WHERE name = ?", (name,)).fetchone()
        if row is None:
            return _ABSENT
        return self._decode(row[0], f"the spec of cluster {name!r}").get("owner")

    def delete_cluster(self, name: str, owner: str | None = None) -> bool:
        """Forget cluster ``name`` and its resources.

        Parameters
        ----------
        name : str
            The cluster's name.
        owner : str, optional
            Only if the record's spec has this ``"owner"`` (checked in the same transaction).

        Returns
        -------
        bool
            Whether a record was deleted.
        """
        with self._connect() as conn:
            if owner is not None and self._recorded_owner(conn, name) != owner:
                return False
            deleted = conn.execute("DELETE FROM clusters WHERE name = ?", (name,)).rowcount > 0
            conn.execute("DELETE FROM resources WHERE cluster = ?", (name,))
        return deleted

    def delete_cluster_if_owner(self, name: str, owner: str) -> bool:
        """Forget cluster ``name`` and its resources if its record is ``owner``'s; return whether it was."""
        return self.delete_cluster(name, owner=owner)

    # -- locks ------------------------------------------------------------------------

    def cluster_lock(self, name: str, timeout: float | None = None) -> ClusterLock:
        """A new, unheld :class:`ClusterLock` on ``<state dir>/locks/<state file name>.<name>.lock``.

        ``timeout`` is how long ``with lock:`` waits (default: as long as it takes).
        """
        name = check_name(name)
        return ClusterLock(self.path.parent / "locks" / f"{self.path.name}.{name}.lock", name, timeout)

    # -- resources ----------------------------------------------------------------------

    def put_resource(self, cluster: str, handle: str, role: str, count: int, data: dict[str, Any]) -> None:
        """Record (or replace) one resource."""
        with self._connect() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO resources VALUES (?, ?, ?, ?, ?, ?)",
                (cluster, handle, role, count, json.dumps(data), time.time()),
            )

    def upsert_resources(self, cluster: str, role: str, counts: list[tuple[str, int]]) -> None:
        """Record resources ``(handle, count)`` in one transaction; a known one keeps its data and gets the count."""
        now = time.time()
        with self._connect() as conn:
            conn.executemany(
                "INSERT INTO resources VALUES (?, ?, ?, ?, '{}', ?) "
                "ON CONFLICT(cluster, handle) DO UPDATE SET count=excluded.count",
                [(cluster, handle, role, count, now) for handle, count in counts],
            )

    def resources(self, cluster: str, role: str | None = None) -> list[ResourceRecord]:
        """The resources of ``cluster`` (optionally of one role), oldest first."""
        query = "SELECT * FROM resources WHERE cluster = ?" + (" AND role = ?" if role else "")
        args: tuple[str, ...] = (cluster, role) if role else (cluster,)
        with self._connect() as conn:
            rows = conn.execute(query + " ORDER BY created", args).fetchall()
        return [self._resource(r) for r in rows]

    def resource_counts(self, cluster: str, role: str) -> dict[str, int]:
        """Handle -> count of the resources of ``cluster`` in ``role`` (a fast read: no data decoded)."""
        with self._connect() as conn:
            rows = conn.execute("SELECT handle, count FROM resources WHERE cluster = ? AND role = ?",
                                (cluster, role)).fetchall()
        return dict(rows)

    def delete_resources(self, cluster: str, handles: list[str]) -> None:
        """Forget resources of ``cluster``; unknown handles are ignored."""
        with self._connect() as conn:
            conn.executemany("DELETE FROM resources WHERE cluster = ? AND handle = ?", [(cluster, h) for h in handles])
