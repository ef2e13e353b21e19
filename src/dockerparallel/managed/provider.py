"""`ManagedCloudProvider`: worker management built on three provider primitives."""

from __future__ import annotations

import abc
import threading
from typing import TYPE_CHECKING, ClassVar, Iterable, Sequence

from ..provider import CloudProvider, ClusterView, WorkerStatus
from .capabilities import ProviderCapabilities
from .ledger import WorkerLedger
from .workers import ScaleReport, WorkerManager

if TYPE_CHECKING:
    from ..container import DockerContainer, DockerHardware

class ManagedCloudProvider(CloudProvider):
    """A provider whose workers are managed for it.

    A subclass implements :meth:`run_docker_worker_containers`,
    :meth:`get_docker_worker_status` and :meth:`kill_docker_worker_containers`
    (plus the server methods of :class:`~dockerparallel.CloudProvider`), and
    gets :meth:`set_docker_worker_number` and
    :meth:`get_docker_worker_numbers` for free: statuses are refreshed in one
    call, stopped workers forgotten, shared handles counted, and scale-down
    picks handles by exact subset-sum over their worker counts.

    Everything a subclass returns is checked; a broken contract raises
    :class:`~dockerparallel.ProviderError` naming the class and method, after
    every handle it did return has been recorded.

    A provider declares its launch limits in :attr:`capabilities` (or per
    container, by overriding :meth:`launch_capabilities`): a large scale-up
    is then split into run calls that fit, run concurrently where allowed.
    """

    #: The launch limits of the run primitive (default: one call at a time, no size limit).
    capabilities: ClassVar[ProviderCapabilities] = ProviderCapabilities()

    # -- the three primitives -------------------------------------------------

    @abc.abstractmethod
    def run_docker_worker_containers(
        self,
        cluster: ClusterView,
        container: DockerContainer,
        hardware: DockerHardware,
        worker_number: int,
        verbose: int = 0,
    ) -> list[str]:
        """Start ``worker_number`` workers.

        Returns
        -------
        list of str
            Exactly ``worker_number`` handles, one per worker. Workers that
            share one lifecycle (one container) share one handle, which then
            appears once per worker. Pack at most
            ``container.max_workers_per_container`` workers per container and
            run ``container.for_workers(k, hardware)`` for a container of ``k``.

        Notes
        -----
        With ``max_concurrent_calls > 1`` in the provider's capabilities,
        several calls run at once in worker threads: the method must be
        thread-safe and must not call back into the managed layer (such as
        :meth:`add_managed_worker_handles`); its result is recorded for it.
        """

    @abc.abstractmethod
    def get_docker_worker_status(
        self, cluster: ClusterView, worker_handles: list[str], verbose: int = 0
    ) -> list[str]:
        """Return the status of each of ``worker_handles`` (unique handles).

        Returns
        -------
        list of str
            One of ``"initializing"``, ``"running"``, ``"stopped"`` per handle,
            in order. A handle the cloud does not know is ``"stopped"``.
        """

    @abc.abstractmethod
    def kill_docker_worker_containers(
        self, cluster: ClusterView, worker_handles: list[str], verbose: int = 0
    ) -> list[bool]:
        """Kill every worker of each of ``worker_handles`` (unique handles).

        Returns
        -------
        list of bool
            Whether each kill succeeded. An unknown or already dead handle is
            success (``True``); never raise for one.
        """

    def launch_capabilities(self, container: DockerContainer, hardware: DockerHardware) -> ProviderCapabilities:
        """The launch limits for workers of ``container`` on ``hardware``.

        Returns :attr:`capabilities`; override when the limits depend on the
        container (a limit counted in containers per call, say).
        """
        return self.capabilities

    # -- optional, derived from the status --------------------------------------

    def is_docker_worker_initializing(
        self, cluster: ClusterView, worker_handles: list[str], verbose: int = 0
    ) -> list[bool]:
        """Whether each handle is initializing. Override only to be faster."""
        return self._is_status(cluster, worker_handles, WorkerStatus.INITIALIZING, verbose)

    def is_docker_worker_running(
        self, cluster: ClusterView, worker_handles: list[str], verbose: int = 0
    ) -> list[bool]:
        """Whether each handle is running. Override only to be faster."""
        return self._is_status(cluster, worker_handles, WorkerStatus.RUNNING, verbose)

    def is_docker_worker_stopped(
        self, cluster: ClusterView, worker_handles: list[str], verbose: int = 0
    ) -> list[bool]:
        """Whether each handle is stopped. Override only to be faster."""
        return self._is_status(cluster, worker_handles, WorkerStatus.STOPPED, verbose)

    def _is_status(
        self, cluster: ClusterView, handles: list[str], wanted: WorkerStatus, verbose: int
    ) -> list[bool]:
        unique = list(dict.fromkeys(handles))
        by_handle = dict(zip(unique, self.worker_manager.status(cluster, unique, verbose)))
        return [by_handle[h] == wanted for h in handles]

    # -- bookkeeping --------------------------------------------------------------

    @property
    def worker_manager(self) -> WorkerManager:
        """The ledger, lock and launch/shrink logic of this provider's workers (created on first use)."""
        manager = self.__dict__.get("_dp_workers")
        if manager is None:
            manager = self.__dict__.setdefault("_dp_workers", WorkerManager(self))
        return manager

    @property
    def worker_ledger(self) -> WorkerLedger:
        """The ledger of this provider's workers."""
        return self.worker_manager.ledger

    @property
    def _managed_lock(self) -> threading.RLock:
        return self.worker_manager.lock

    @property
    def call_timeout(self) -> float | None:
        """Seconds each primitive call may take before :class:`~dockerparallel.ProviderTimeout` (default 600)."""
        return self.worker_manager.call_timeout

    @call_timeout.setter
    def call_timeout(self, seconds: float | None) -> None:
        from .._validation import check_seconds

        self.worker_manager.call_timeout = None if seconds is None else check_seconds(
            seconds, "call_timeout", allow_zero=False)

    def add_managed_worker_handles(self, handles: Iterable[str]) -> None:
        """Record worker handles (a handle repeated once per worker it holds)."""
        if isinstance(handles, str):
            raise TypeError("handles must be a list of handles, not a single string")
        handles = list(handles)
        if not all(isinstance(h, str) and h for h in handles):
            raise TypeError("handles must be non-empty strings")
        with self._managed_lock:
            self.worker_ledger.add(handles)

    def get_managed_worker_handles(self) -> list[str]:
        """Every managed handle, repeated once per worker it holds."""
        with self._managed_lock:
            return self.worker_ledger.expanded_handles()

    # -- the generics of CloudProvider ----------------------------------------------

    def set_docker_worker_number(
        self,
        cluster: ClusterView,
        container: DockerContainer,
        hardware: DockerHardware,
        worker_number: int,
        verbose: int = 0,
    ) -> ScaleReport:
        """Start or kill workers so that ``worker_number`` of them exist."""
        return self.worker_manager.set_number(cluster, container, hardware, worker_number, verbose)

    def get_docker_worker_numbers(self, cluster: ClusterView, verbose: int = 0) -> tuple[int, int]:
        """Return ``(initializing, running)`` after refreshing the statuses."""
        return self.worker_manager.numbers(cluster, verbose)

    def refresh_workers(self, cluster: ClusterView, verbose: int = 0) -> None:
        """Retry failed kills, ask every handle's status in one call, kill and forget stopped ones."""
        self.worker_manager.refresh(cluster, verbose)

    def kill_worker_handles(self, cluster: ClusterView, handles: Iterable[str], verbose: int = 0) -> None:
        """Kill ``handles`` and forget those killed; failed kills are retried at the next refresh."""
        self.worker_manager.kill_handles(cluster, handles, verbose)

    def kill_all_workers(self, cluster: ClusterView, verbose: int = 0) -> bool:
        """Kill every managed handle; return whether none is left to retry."""
        return not self.worker_manager.kill_all(cluster, verbose, attempts=1)

    # -- checked calls to the primitives ------------------------------------------------

    def checked_run(self, cluster: ClusterView, container: DockerContainer, hardware: DockerHardware,
                    worker_number: int, verbose: int = 0) -> list[str]:
        """Call :meth:`run_docker_worker_containers`, record what it returns, then check it."""
        return self.worker_manager.run(cluster, container, hardware, worker_number, verbose)

    def checked_worker_status(self, cluster: ClusterView, handles: Sequence[str], verbose: int = 0) -> list[str]:
        """Call :meth:`get_docker_worker_status` on unique ``handles`` and check the answer."""
        return [s.value for s in self.worker_manager.status(cluster, handles, verbose)]

    def checked_kill(self, cluster: ClusterView, handles: Sequence[str], verbose: int = 0) -> list[bool]:
        """Call :meth:`kill_docker_worker_containers` on unique ``handles`` and check the answer."""
        return self.worker_manager.kill_checked(cluster, handles, verbose)
