"""`ManagedCloudProvider`: worker management built on three provider primitives."""

from __future__ import annotations

import abc
import contextlib
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Sequence

from .._errors import DockerParallelError, PartialLaunchError, ProviderError
from ..provider import CloudProvider, ClusterView, WorkerStatus
from .capabilities import ProviderCapabilities
from .ledger import WorkerLedger
from .selection import plan_kill

if TYPE_CHECKING:
    from ..container import DockerContainer, DockerHardware

logger = logging.getLogger("dockerparallel.managed")

STATUSES = frozenset(s.value for s in WorkerStatus)
RUN = "run_docker_worker_containers"


@dataclass(frozen=True)
class ScaleReport:
    """What one :meth:`ManagedCloudProvider.set_docker_worker_number` call did."""

    requested: int
    before: int
    started: int = 0
    killed: int = 0

    @property
    def extra(self) -> int:
        """Workers kept above the request because no exact choice of handles existed."""
        return max(0, self.before + self.started - self.killed - self.requested)


@dataclass
class _LaunchOutcome:
    """What the run calls of one launch did, gathered as each call completes."""

    asked: int
    started: int = 0
    short: bool = False
    errors: list[Exception] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.short or bool(self.errors)

    def settle(self, provider: object) -> int:
        """The workers started; raise the first error, or :class:`PartialLaunchError` if only some started."""
        if self.errors:
            for later in self.errors[1:]:
                logger.warning("%s: another run call of the same launch failed too: %s", type(provider).__name__, later)
            raise self.errors[0]
        if self.short or self.started < self.asked:
            raise PartialLaunchError(provider, RUN, self.asked, self.started)
        return self.started


def _salvage_handles(result: object) -> list[str]:
    """The string handles in a wrongly typed run result (a set, a generator), so none is lost."""
    if not isinstance(result, Iterable):
        return []
    return [h for h in result if isinstance(h, str) and h]


def _log(verbose: int, message: str, *args: Any) -> None:
    logger.log(logging.INFO if verbose else logging.DEBUG, message, *args)


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
        by_handle = dict(zip(unique, self.checked_worker_status(cluster, unique, verbose)))
        return [by_handle[h] == wanted.value for h in handles]

    # -- bookkeeping --------------------------------------------------------------

    @property
    def worker_ledger(self) -> WorkerLedger:
        """The ledger of this provider's workers (created on first use)."""
        ledger = self.__dict__.get("_dp_ledger")
        if ledger is None:
            ledger = self.__dict__.setdefault("_dp_ledger", WorkerLedger())
        return ledger

    @property
    def _managed_lock(self) -> threading.RLock:
        lock = self.__dict__.get("_dp_lock")
        if lock is None:
            lock = self.__dict__.setdefault("_dp_lock", threading.RLock())
        return lock

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
        with self._managed_lock:
            self.refresh_workers(cluster, verbose)
            before = self.worker_ledger.workers()
            if worker_number > before:
                started = self._launch(cluster, container, hardware, worker_number - before, verbose)
                return ScaleReport(worker_number, before, started=started)
            if worker_number < before:
                killed = self._shrink(cluster, before - worker_number, verbose)
                return ScaleReport(worker_number, before, killed=killed)
            return ScaleReport(worker_number, before)

    def get_docker_worker_numbers(self, cluster: ClusterView, verbose: int = 0) -> tuple[int, int]:
        """Return ``(initializing, running)`` after refreshing the statuses."""
        with self._managed_lock:
            self.refresh_workers(cluster, verbose)
            ledger = self.worker_ledger
            return ledger.workers("initializing"), ledger.workers("running")

    def refresh_workers(self, cluster: ClusterView, verbose: int = 0) -> None:
        """Retry failed kills, ask every handle's status in one call, forget stopped ones."""
        with self._managed_lock:
            self._retry_kills(cluster, verbose)
            handles = self.worker_ledger.handles()
            if not handles:
                return
            statuses = self.checked_worker_status(cluster, handles, verbose)
            self.worker_ledger.apply_status(handles, statuses)
            gone = self.worker_ledger.forget_stopped()
            if gone:
                _log(verbose, "%d stopped worker handle(s) forgotten", len(gone))

    def kill_worker_handles(self, cluster: ClusterView, handles: Iterable[str], verbose: int = 0) -> None:
        """Kill ``handles`` and forget those killed; failed kills are retried at the next refresh."""
        with self._managed_lock:
            self._kill(cluster, list(dict.fromkeys(handles)), verbose)

    def kill_all_workers(self, cluster: ClusterView, verbose: int = 0) -> bool:
        """Kill every managed handle; return whether none is left to retry."""
        with self._managed_lock:
            handles = self.worker_ledger.handles()
            if handles:
                self._kill(cluster, handles, verbose)
            return not self.worker_ledger.pending_kills()

    # -- checked calls to the primitives ------------------------------------------------

    def checked_run(
        self,
        cluster: ClusterView,
        container: DockerContainer,
        hardware: DockerHardware,
        worker_number: int,
        verbose: int = 0,
    ) -> list[str]:
        """Call :meth:`run_docker_worker_containers`, record what it returns, then check it."""
        result = self._call_primitive(RUN, cluster, container, hardware, worker_number, verbose)
        return self._record_run(result, worker_number)

    def _record_run(self, result: object, worker_number: int) -> list[str]:
        """Record the handles in a run call's ``result``, then check it against ``worker_number``."""
        method = RUN
        if isinstance(result, str):
            self.worker_ledger.add([result])
            raise ProviderError(self, method, "returned a single string, not a list of handles; it is recorded")
        if not isinstance(result, (list, tuple)):
            salvaged = _salvage_handles(result)
            self.worker_ledger.add(salvaged)
            raise ProviderError(
                self, method, f"must return a list of handles, got {type(result).__name__}; "
                f"the {len(salvaged)} string handles in it are recorded"
            )
        handles = [h for h in result if isinstance(h, str) and h]
        self.worker_ledger.add(handles)
        if len(handles) != len(result):
            bad = [h for h in result if not (isinstance(h, str) and h)][:3]
            raise ProviderError(
                self, method, f"returned handles that are not non-empty strings: {bad!r}; "
                f"the {len(handles)} valid handles are recorded"
            )
        if len(handles) > worker_number:
            raise ProviderError(
                self, method, f"returned {len(handles)} handles for {worker_number} workers; all are recorded"
            )
        if len(handles) < worker_number:
            raise PartialLaunchError(self, method, worker_number, len(handles))
        return handles

    def checked_worker_status(
        self, cluster: ClusterView, handles: Sequence[str], verbose: int = 0
    ) -> list[str]:
        """Call :meth:`get_docker_worker_status` on unique ``handles`` and check the answer."""
        if not handles:
            return []
        method = "get_docker_worker_status"
        result = self._call_primitive(method, cluster, list(handles), verbose)
        if not isinstance(result, (list, tuple)) or len(result) != len(handles):
            got = len(result) if isinstance(result, (list, tuple)) else type(result).__name__
            raise ProviderError(self, method, f"must return {len(handles)} statuses, got {got}")
        statuses = [s.value if isinstance(s, WorkerStatus) else s for s in result]
        unknown = sorted({repr(s) for s in statuses if not (isinstance(s, str) and s in STATUSES)})
        if unknown:
            raise ProviderError(
                self, method, f"returned unknown status {', '.join(unknown)}; "
                "expected 'initializing', 'running' or 'stopped'"
            )
        return statuses

    def checked_kill(self, cluster: ClusterView, handles: Sequence[str], verbose: int = 0) -> list[bool]:
        """Call :meth:`kill_docker_worker_containers` on unique ``handles`` and check the answer."""
        if not handles:
            return []
        method = "kill_docker_worker_containers"
        result = self._call_primitive(method, cluster, list(handles), verbose)
        if not isinstance(result, (list, tuple)) or len(result) != len(handles):
            got = len(result) if isinstance(result, (list, tuple)) else type(result).__name__
            raise ProviderError(self, method, f"must return {len(handles)} booleans, got {got}")
        if not all(isinstance(ok, bool) for ok in result):
            raise ProviderError(self, method, "must return booleans (True for a successful kill)")
        return list(result)

    def _call_primitive(self, method: str, *args: Any) -> Any:
        """Call the primitive ``method``; an unexpected exception becomes a :class:`ProviderError`.

        Errors of dockerparallel itself (:class:`~dockerparallel.ProviderThrottled`, say)
        pass through unchanged so that callers can retry them.
        """
        try:
            return getattr(self, method)(*args)
        except DockerParallelError:
            raise
        except Exception as exc:
            raise ProviderError(self, method, f"raised {exc!r}") from exc

    # -- steps ------------------------------------------------------------------------------

    def _launch(
        self, cluster: ClusterView, container: DockerContainer, hardware: DockerHardware,
        number: int, verbose: int,
    ) -> int:
        capabilities = self.launch_capabilities(container, hardware)
        if not isinstance(capabilities, ProviderCapabilities):
            raise ProviderError(self, "launch_capabilities",
                                f"must return a ProviderCapabilities, got {type(capabilities).__name__}")
        sizes = capabilities.batch_sizes(number)
        _log(verbose, "starting %d worker(s) in %d run call(s)", number, len(sizes))
        if len(sizes) == 1:
            return len(self.checked_run(cluster, container, hardware, number, verbose))
        threads = min(capabilities.max_concurrent_calls, len(sizes))
        with ThreadPoolExecutor(threads, thread_name_prefix="dockerparallel-run") as pool:
            futures = {pool.submit(self._call_primitive, RUN, cluster, container, hardware, size, verbose): size
                       for size in sizes}
            return self._gather_launch(futures, number)

    def _gather_launch(self, futures: dict[Future[Any], int], number: int) -> int:
        """Record each run call's handles as it completes, in this thread; then settle the launch.

        After a failed call, the calls not yet started are cancelled. If this
        thread is interrupted, the calls already running are still waited for
        and recorded, so that no returned handle is lost.
        """
        outcome = _LaunchOutcome(number)
        pending = dict(futures)
        try:
            for future in as_completed(futures):
                self._record_call(future, pending.pop(future), outcome)
                if outcome.failed:
                    for waiting in pending:
                        waiting.cancel()
        finally:  # pending is empty unless this thread is being interrupted
            for future in pending:
                future.cancel()
            wait_futures(pending)
            for future, size in pending.items():
                with contextlib.suppress(BaseException):  # the interruption propagates, not this
                    self._record_call(future, size, outcome)
        return outcome.settle(self)

    def _record_call(self, future: Future[Any], size: int, outcome: _LaunchOutcome) -> None:
        if future.cancelled():
            return
        try:
            outcome.started += len(self._record_run(future.result(), size))
        except PartialLaunchError as exc:
            outcome.started += exc.got
            outcome.short = True
        except Exception as exc:
            outcome.errors.append(exc)

    def _shrink(self, cluster: ClusterView, excess: int, verbose: int) -> int:
        plan = plan_kill(self.worker_ledger.active_entries(), excess)
        if not plan.exact:
            # said once per situation: a controller meets the same one every cycle
            situation = (excess, plan.workers, len(self.worker_ledger))
            repeated = self.__dict__.get("_dp_inexact") == situation
            self.__dict__["_dp_inexact"] = situation
            logger.log(
                logging.DEBUG if repeated else logging.WARNING,
                "%s: asked to remove %d worker(s) but no set of containers holds exactly that many; "
                "removing %d and keeping %d extra",
                type(self).__name__, excess, plan.workers, excess - plan.workers,
            )
        _log(verbose, "killing %d worker(s) in %d handle(s)", plan.workers, len(plan.handles))
        self._kill(cluster, plan.handles, verbose)
        return plan.workers

    def _kill(self, cluster: ClusterView, handles: list[str], verbose: int) -> None:
        ledger = self.worker_ledger
        ledger.mark_kill_pending(handles)
        results = self.checked_kill(cluster, handles, verbose)
        ledger.remove(h for h, ok in zip(handles, results) if ok)
        failed = [h for h, ok in zip(handles, results) if not ok]
        if failed:
            logger.warning("%s: %d kill(s) failed; they are retried on the next refresh",
                           type(self).__name__, len(failed))

    def _retry_kills(self, cluster: ClusterView, verbose: int) -> None:
        pending = self.worker_ledger.pending_kills()
        if pending:
            _log(verbose, "retrying %d failed kill(s)", len(pending))
            self._kill(cluster, pending, verbose)
