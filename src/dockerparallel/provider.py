"""The :class:`CloudProvider` abstract base: the generics every provider implements.

A provider runs the server and the workers of one cluster on some container
service. Most providers should subclass
:class:`dockerparallel.managed.ManagedCloudProvider`, which implements the
worker generics on three primitives; subclass :class:`CloudProvider` directly
only to manage workers in a way of your own.

Each method receives the cluster as a :class:`ClusterView`: a provider reads
its ``name`` (which identifies the cluster on the cloud), ``verbose`` and the
containers and hardware it is handed, nothing else.
"""

from __future__ import annotations

import abc
import enum
from typing import Any, ClassVar, Mapping, NamedTuple, Protocol, runtime_checkable

from .container import DockerContainer, DockerHardware, ServerAddress
from ._plugin import ProviderOption, ProviderPlugin

__all__ = ["CloudProvider", "ClusterView", "ProviderOption", "ProviderPlugin", "ServerAddress", "WorkerNumbers", "WorkerStatus"]


@runtime_checkable
class ClusterView(Protocol):
    """What a provider sees of a cluster.

    A provider reads the cluster's ``name`` (which identifies it on the
    cloud), ``verbose`` and its containers, nothing else.
    :class:`dockerparallel.DockerCluster` is one; a provider must not rely on
    more.
    """

    @property
    def name(self) -> str:
        """The cluster's name: every container carries it as a label."""

    @property
    def verbose(self) -> int:
        """0 (quiet), 1 (progress) or 2 (details)."""

    @property
    def worker_container(self) -> DockerContainer:
        """The cluster's worker container."""

    @property
    def server_container(self) -> DockerContainer:
        """The cluster's server container."""


class WorkerStatus(str, enum.Enum):
    """The three states of a worker (or of the server)."""

    INITIALIZING = "initializing"
    RUNNING = "running"
    STOPPED = "stopped"

    def __str__(self) -> str:
        return self.value


class WorkerNumbers(NamedTuple):
    """Worker counts of a cluster."""

    initializing: int
    running: int
    expected: int


class CloudProvider(abc.ABC):
    """Abstract base of every provider.

    Subclasses must implement the server generics and the two worker-number
    generics; :class:`~dockerparallel.managed.ManagedCloudProvider` implements
    the latter for you.
    """

    #: Whether clusters on this provider use TLS unless told otherwise.
    tls_by_default: bool = True

    #: What the command line and the state store need to know of this class:
    #: its name, what it needs installed, its options (see :class:`ProviderPlugin`).
    plugin: ClassVar[ProviderPlugin | None] = None

    def spec_options(self) -> dict[str, Any]:
        """Constructor options that rebuild this provider in another process.

        JSON-able values only, and never a secret (credentials come from the
        environment of the process that rebuilds it). Default: none.
        """
        return {}

    @classmethod
    def from_spec_options(cls, options: dict[str, Any], store: Any) -> CloudProvider:
        """Rebuild a provider from :meth:`spec_options` (``store`` is the cluster's state store)."""
        return cls(**options)

    def initialize_cloud_provider(self, cluster: ClusterView, verbose: int = 0) -> None:
        """Prepare the cloud for ``cluster`` (networks, roles, ...). Default: nothing.

        Called before the server starts; must be idempotent.
        """

    @abc.abstractmethod
    def run_docker_server(
        self, cluster: ClusterView, container: DockerContainer, hardware: DockerHardware, verbose: int = 0
    ) -> None:
        """Start the server container. Returns nothing; raises on failure."""

    @abc.abstractmethod
    def stop_docker_server(self, cluster: ClusterView, verbose: int = 0) -> None:
        """Stop the server container. Stopping a stopped server is success."""

    @abc.abstractmethod
    def get_server_status(self, cluster: ClusterView, verbose: int = 0) -> str:
        """Return ``"initializing"``, ``"running"`` or ``"stopped"`` for the server."""

    @abc.abstractmethod
    def get_docker_server_ip(self, cluster: ClusterView, verbose: int = 0) -> ServerAddress | Mapping[str, Any]:
        """Return the server's :class:`ServerAddress` (or a mapping with its keys)."""

    @abc.abstractmethod
    def set_docker_worker_number(
        self,
        cluster: ClusterView,
        container: DockerContainer,
        hardware: DockerHardware,
        worker_number: int,
        verbose: int = 0,
    ) -> object:
        """Start or stop workers so that ``worker_number`` of them exist.

        ``container`` is already configured for the running server. May
        return a report of what was done (or ``None``).
        """

    @abc.abstractmethod
    def get_docker_worker_numbers(self, cluster: ClusterView, verbose: int = 0) -> tuple[int, int]:
        """Return ``(initializing, running)``: the number of workers in each state."""

    def docker_cluster_exists(self, cluster: ClusterView, verbose: int = 0) -> bool:
        """Return whether a cluster named ``cluster.name`` runs on the cloud. Default: ``False``."""
        return False

    def reconnect_docker_cluster(self, cluster: ClusterView, verbose: int = 0) -> None:
        """Adopt the server and workers of a running cluster named ``cluster.name``. Default: nothing."""

    def get_docker_logs(self, cluster: ClusterView, verbose: int = 0) -> dict[str, str]:
        """Return what the cluster's containers printed. Default: nothing (``{}``).

        Returns
        -------
        dict of str to str
            ``{"server": text, "worker <handle>": text, ...}``: one entry per
            container of the cluster that the provider can still read (live or
            stopped), the server first, each text whole (the newest lines last).
        """
        return {}

    def cleanup_docker_cluster(self, cluster: ClusterView, deep: bool = False, verbose: int = 0) -> None:
        """Release what the provider holds for ``cluster``. Default: nothing.

        With ``deep=True``, also remove every resource labelled with the
        cluster's name and what :meth:`initialize_cloud_provider` created.
        """
