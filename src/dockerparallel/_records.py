"""Records: a cluster as plain data in the state store, and what reconnecting to it found.

A record names the provider and container classes (``module:Class``) and
holds what their constructors need, so that any process can rebuild the
cluster (``DockerCluster.reconnect(name)``). This module knows nothing of
:class:`~dockerparallel.DockerCluster`: it turns a :class:`ClusterConfig`
into a record and back.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._errors import DockerParallelError
from .container import DockerContainer, DockerHardware, ServerAddress
from ._plugin import plugin_of
from .provider import CloudProvider, ClusterView

if TYPE_CHECKING:
    from .state import StateStore

logger = logging.getLogger("dockerparallel.records")

#: Handle and role of the record written before each launch and removed after it.
INTENT = "intent"


@dataclass
class ClusterConfig:
    """What a cluster is made of: the parts a record holds.

    It is also a :class:`~dockerparallel.ClusterView` (name, verbose, containers).
    """

    name: str
    provider: CloudProvider
    worker_container: DockerContainer
    server_container: DockerContainer
    worker_hardware: DockerHardware
    server_hardware: DockerHardware
    security: Any = field(default=None, repr=False)
    verbose: int = 0
    #: A server this library did not start: workers join it; it is never started or stopped.
    external_server: ServerAddress | None = None
    #: Which address of the server the client uses: "auto", "public" or "private".
    client_address: str = "auto"
    #: Identifies the cluster's lineage: objects reconnected to it share it.
    owner: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass(frozen=True)
class ReconnectReport:
    """What :meth:`DockerCluster.reconnect` found."""

    recorded: int
    found: int
    dead: int
    killed: int
    interrupted_launch: bool
    server: str

    def __str__(self) -> str:
        text = (f"server {self.server}; {self.recorded} handle(s) from the state store, "
                f"{self.found} more found on the provider, {self.dead} dead and forgotten, "
                f"{self.killed} orphan(s) killed")
        return text + ("; a launch had been interrupted" if self.interrupted_launch else "")


def class_path(obj: object) -> str:
    """``module:QualifiedName`` of ``obj``'s class."""
    cls = type(obj)
    return f"{cls.__module__}:{cls.__qualname__}"


def load_class(path: str) -> type:
    """The class named by :func:`class_path`."""
    module, _, name = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, type):
        raise TypeError(f"{path} is not a class")
    return obj


def warn_if_unimportable(obj: object, what: str) -> None:
    """Warn when another process could not import ``obj``'s class (defined in a script or a function)."""
    cls = type(obj)
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        logger.warning(
            "%s %s is defined in %s; another process (the CLI, DockerCluster.reconnect) cannot rebuild "
            "this cluster's record. Move the class into an importable module.",
            what, cls.__qualname__, "a script (__main__)" if cls.__module__ == "__main__" else "a function",
        )


def container_to_dict(container: DockerContainer) -> dict[str, Any]:
    """The container's class and fields."""
    fields = {f.name: getattr(container, f.name) for f in dataclasses.fields(container)}
    fields["command"] = list(fields["command"])
    return {"class": class_path(container), "fields": fields}


def container_from_dict(data: dict[str, Any]) -> DockerContainer:
    """The inverse of :func:`container_to_dict`."""
    cls = load_class(data["class"])
    if not issubclass(cls, DockerContainer):
        raise TypeError(f"{data['class']} is not a DockerContainer")
    return cls(**data["fields"])


def config_to_dict(config: ClusterConfig, expected: int) -> dict[str, Any]:
    """Everything needed to rebuild the cluster in another process."""
    from .backends.dask import security_to_dict

    return {
        "provider": class_path(config.provider),
        "provider_name": plugin_of(type(config.provider)).name,  # what `status` shows, without importing the class
        "provider_options": config.provider.spec_options(),
        "worker_container": container_to_dict(config.worker_container),
        "server_container": container_to_dict(config.server_container),
        "worker_hardware": dataclasses.asdict(config.worker_hardware),
        "server_hardware": dataclasses.asdict(config.server_hardware),
        "expected": expected,
        "security": security_to_dict(config.security) if config.security is not None else None,
        "owner": config.owner,
        "external_server": dataclasses.asdict(config.external_server) if config.external_server else None,
        "client_address": config.client_address,
    }


def config_from_dict(name: str, data: dict[str, Any], store: StateStore) -> tuple[ClusterConfig, int]:
    """The recorded cluster's parts (on a new provider object) and its expected worker number.

    Raises
    ------
    StateStoreError
        When the record is incomplete or names what cannot be rebuilt; the
        message names the state file and the cluster.
    """
    from .state import StateStoreError

    try:
        return _config_from_dict(name, data, store)
    except (KeyError, TypeError, ValueError, AttributeError, ImportError) as exc:
        detail = f"missing field {exc.args[0]!r}" if isinstance(exc, KeyError) and exc.args else str(exc)
        raise StateStoreError(
            f"state file {store.path}: the record of cluster {name!r} cannot be rebuilt: {detail}"
        ) from exc


def _config_from_dict(name: str, data: dict[str, Any], store: StateStore) -> tuple[ClusterConfig, int]:
    from .backends.dask import security_from_dict

    cls = load_class(data["provider"])
    if not issubclass(cls, CloudProvider):
        raise TypeError(f"{data['provider']} is not a CloudProvider")
    security = data.get("security")
    config = ClusterConfig(
        name=name, provider=cls.from_spec_options(data["provider_options"], store),
        worker_container=container_from_dict(data["worker_container"]),
        server_container=container_from_dict(data["server_container"]),
        worker_hardware=DockerHardware(**data["worker_hardware"]),
        server_hardware=DockerHardware(**data["server_hardware"]),
        security=security_from_dict(security) if security else None,
        owner=str(data.get("owner") or uuid.uuid4().hex),
        external_server=ServerAddress.coerce(data["external_server"]) if data.get("external_server") else None,
        client_address=str(data.get("client_address") or "auto"),
    )
    return config, int(data["expected"])


def settle_workers(manager: Any, view: ClusterView, found: list[str], orphans: str) -> tuple[int, int]:
    """After a reconnect: refresh (retrying a passing fault), then adopt or kill the ``found`` orphans.

    Returns ``(dead, killed)``: handles forgotten as dead, orphans killed.
    """
    alive_before = len(manager.ledger)
    _refresh_with_retries(manager, view)
    dead = alive_before - len(manager.ledger)
    live_found = [h for h in found if h in manager.ledger]
    if orphans == "kill" and live_found:
        manager.kill_handles(view, live_found, view.verbose)
        return dead, len(live_found)
    return dead, 0


def _refresh_with_retries(manager: Any, view: ClusterView, attempts: int = 4) -> None:
    """Refresh the statuses; a passing provider fault is retried with backoff (a reconnect should not fail on one)."""
    for attempt in range(1, attempts + 1):
        try:
            manager.refresh(view, view.verbose)
            return
        except DockerParallelError as exc:
            if attempt == attempts:
                raise
            delay = 0.25 * 2 ** (attempt - 1)
            logger.warning("reconnect to %s: status refresh failed (%s); retrying in %.2f s", view.name, exc, delay)
            time.sleep(delay)
