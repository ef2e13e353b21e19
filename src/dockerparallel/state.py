"""The state store: clusters and their resources in SQLite, shared by processes.

The store lets another process (the CLI, a new Python session) find a cluster
again: its spec, its server and every worker handle, recorded as soon as a
provider returns them. The file lives in the user data directory (from
platformdirs) unless ``DOCKERPARALLEL_STATE`` or an explicit path says
otherwise, and is created with mode 0600.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import platformdirs

from ._errors import DockerParallelError

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


class StateStoreError(DockerParallelError):
    """The state file cannot be read or written."""


@dataclass(frozen=True)
class ClusterRecord:
    """A cluster as recorded: its provider name and spec."""

    name: str
    provider: str
    spec: dict[str, Any]
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
    """``$DOCKERPARALLEL_STATE`` or ``<user data dir>/dockerparallel/state.sqlite3``."""
    env = os.environ.get(ENV_STATE)
    if env:
        return Path(env)
    return platformdirs.user_data_path("dockerparallel") / "state.sqlite3"


class StateStore:
    """Clusters and resources in one SQLite file, safe for several processes.

    Parameters
    ----------
    path : str or Path, optional
        The file (default: :func:`default_state_path`).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_state_path()
        self._ready = False

    def __repr__(self) -> str:
        return f"StateStore({str(self.path)!r})"

    @property
    def log_dir(self) -> Path:
        """Where providers keep the logs of local processes."""
        return self.path.parent / "logs"

    def _create_file(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        os.close(fd)
        os.chmod(self.path, 0o600)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if not self._ready:
            self._create_file()
        try:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise StateStoreError(f"cannot open state file {self.path}: {exc}") from exc
        try:
            if not self._ready:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(_SCHEMA)
                self._ready = True
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StateStoreError(f"state file {self.path} is unreadable or corrupt: {exc}") from exc
        finally:
            conn.close()

    # -- clusters -------------------------------------------------------------------

    def save_cluster(self, name: str, provider: str, spec: dict[str, Any]) -> None:
        """Create or replace the record of cluster ``name``."""
        now = time.time()
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO clusters VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                "provider=excluded.provider, spec=excluded.spec, updated=excluded.updated",
                (name, provider, json.dumps(spec), now, now),
            )

    def load_cluster(self, name: str) -> ClusterRecord | None:
        """The record of cluster ``name``, or ``None``."""
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM clusters WHERE name = ?", (name,)).fetchone()
        return None if row is None else ClusterRecord(row[0], row[1], json.loads(row[2]), row[3], row[4])

    def list_clusters(self) -> list[ClusterRecord]:
        """Every recorded cluster, oldest first."""
        with self._connect() as conn:
            rows = conn.execute("SELECT * FROM clusters ORDER BY created").fetchall()
        return [ClusterRecord(r[0], r[1], json.loads(r[2]), r[3], r[4]) for r in rows]

    def delete_cluster(self, name: str) -> None:
        """Forget cluster ``name`` and its resources."""
        with self._connect() as conn:
            conn.execute("DELETE FROM clusters WHERE name = ?", (name,))
            conn.execute("DELETE FROM resources WHERE cluster = ?", (name,))

    # -- resources ----------------------------------------------------------------------

    def put_resource(self, cluster: str, handle: str, role: str, count: int, data: dict[str, Any]) -> None:
        """Record (or replace) one resource."""
        with self._connect() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO resources VALUES (?, ?, ?, ?, ?, ?)",
                (cluster, handle, role, count, json.dumps(data), time.time()),
            )

    def upsert_resource(self, cluster: str, handle: str, role: str, count: int) -> None:
        """Record a resource, or update its count and keep its data."""
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO resources VALUES (?, ?, ?, ?, '{}', ?) "
                "ON CONFLICT(cluster, handle) DO UPDATE SET count=excluded.count",
                (cluster, handle, role, count, time.time()),
            )

    def resources(self, cluster: str, role: str | None = None) -> list[ResourceRecord]:
        """The resources of ``cluster`` (optionally of one role), oldest first."""
        query = "SELECT * FROM resources WHERE cluster = ?" + (" AND role = ?" if role else "")
        args: tuple[str, ...] = (cluster, role) if role else (cluster,)
        with self._connect() as conn:
            rows = conn.execute(query + " ORDER BY created", args).fetchall()
        return [ResourceRecord(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5]) for r in rows]

    def delete_resources(self, cluster: str, handles: list[str]) -> None:
        """Forget resources of ``cluster``; unknown handles are ignored."""
        with self._connect() as conn:
            conn.executemany("DELETE FROM resources WHERE cluster = ? AND handle = ?", [(cluster, h) for h in handles])
