"""The worker manager: a provider's ledger, its lock, and launch, refresh and shrink on three primitives.

One :class:`WorkerManager` belongs to each :class:`ManagedCloudProvider`
object. It records every handle a run call returns before anything else
happens, forgets a handle only after its kill succeeded, and calls the
primitives with a deadline (:mod:`.calls`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol, Sequence

from .._verbose import say
from .._errors import DockerParallelError, PartialLaunchError, ProviderError
from ..provider import ClusterView, WorkerStatus
from .calls import (
    DEFAULT_CALL_TIMEOUT, call_with_deadline, check_kills, check_run_result, check_statuses, salvage_handles, unique,
    well_formed_counts,
)
from .capabilities import ProviderCapabilities
from .ledger import WorkerLedger
from .selection import plan_kill

if TYPE_CHECKING:
    from ..container import DockerContainer, DockerHardware


class Primitives(Protocol):
    """What the manager calls: the three primitives and the launch limits (a ManagedCloudProvider)."""

    def run_docker_worker_containers(self, cluster: ClusterView, container: DockerContainer,
                                     hardware: DockerHardware, worker_number: int, verbose: int = 0) -> list[str]: ...

    def get_docker_worker_status(self, cluster: ClusterView, worker_handles: list[str],
                                 verbose: int = 0) -> list[str]: ...

    def kill_docker_worker_containers(self, cluster: ClusterView, worker_handles: list[str],
                                      verbose: int = 0) -> list[bool]: ...

    def launch_capabilities(self, container: DockerContainer, hardware: DockerHardware) -> ProviderCapabilities: ...

logger = logging.getLogger("dockerparallel.managed")

#: The primitives' names, as errors report them.
RUN, STATUS, KILL = "run_docker_worker_containers", "get_docker_worker_status", "kill_docker_worker_containers"


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

    def settle(self, provider: object, method: str) -> int:
        """The workers started; raise the first error, or :class:`PartialLaunchError` if only some started."""
        if self.errors:
            for later in self.errors[1:]:
                logger.warning("%s: another run call of the same launch failed too: %s", type(provider).__name__, later)
            raise self.errors[0]
        if self.short or self.started < self.asked:
            raise PartialLaunchError(provider, method, self.asked, self.started)
        return self.started


class WorkerManager:
    """The ledger of one provider's workers and the logic that changes them.

    Parameters
    ----------
    provider : Primitives
        Whose primitives are called (a ManagedCloudProvider).
    """

    def __init__(self, provider: Primitives) -> None:
        self.provider = provider
        self.ledger = WorkerLedger()
        self.lock = threading.RLock()
        #: Seconds each primitive call may take (``None``: no deadline).
        self.call_timeout: float | None = DEFAULT_CALL_TIMEOUT
        #: Set once the cluster is closed: handles of a late run call are then killed, not recorded.
        self.closed = False
        self._late_cluster: Callable[[], ClusterView | None] = lambda: None
        self._inexact: tuple[int, int, int] | None = None

    # -- checked primitive calls ---------------------------------------------------------

    def _call(self, method: str, func: Any, *args: Any, on_late: Any = None) -> Any:
        return call_with_deadline(self.provider, method, func, args, self.call_timeout, on_late)

    def run(self, cluster: ClusterView, container: DockerContainer, hardware: DockerHardware,
            number: int, verbose: int = 0) -> list[str]:
        """One run call: record what it returns (late results too), then check it."""
        func = self.provider.run_docker_worker_containers
        self._remember(cluster)
        result = self._call(RUN, func, cluster, container, hardware, number, verbose, on_late=self._late_run)
        return self.record_run(result, number)

    def record_run(self, result: object, number: int) -> list[str]:
        """Record the handles of a run ``result`` for ``number`` workers, then check it."""
        counts = well_formed_counts(result)
        well_formed = counts is not None
        if counts is None:  # the slow way, for a result that breaks the contract: keep every usable handle
            counts = Counter(salvage_handles(result))
        with self.lock:
            known = self.ledger.known(counts)
            self.ledger.add_counts(counts)
        check_run_result(self.provider, RUN, result, number, known, well_formed)
        return result if isinstance(result, list) else list(counts.elements())  # type: ignore[return-value]

    def _late_run(self, result: object) -> None:
        """A run call that passed its deadline returned: record its handles, or kill them if the cluster closed."""
        handles = salvage_handles(result)
        logger.warning("%s.run_docker_worker_containers returned %d handle(s) after its deadline; %s",
                       type(self.provider).__name__, len(handles), "killing them" if self.closed else "recording them")
        with self.lock:
            if not self.closed:
                self.ledger.add(handles)
                return
        cluster = self._late_cluster()
        if handles and cluster is not None:
            with contextlib.suppress(DockerParallelError):
                self.kill_checked(cluster, unique(handles))

    def _remember(self, cluster: ClusterView) -> None:
        """The cluster a late run result belongs to, held weakly (a cluster object must stay collectable)."""
        try:
            self._late_cluster = weakref.ref(cluster)  # type: ignore[assignment]
        except TypeError:
            self._late_cluster = lambda: cluster

    def status(self, cluster: ClusterView, handles: Sequence[str], verbose: int = 0) -> list[WorkerStatus]:
        """The checked statuses of unique ``handles``."""
        if not handles:
            return []
        result = self._call(STATUS, self.provider.get_docker_worker_status, cluster, list(handles), verbose)
        return check_statuses(self.provider, STATUS, result, len(handles))

    def kill_checked(self, cluster: ClusterView, handles: Sequence[str], verbose: int = 0) -> list[bool]:
        """The checked kill results of unique ``handles``."""
        if not handles:
            return []
        result = self._call(KILL, self.provider.kill_docker_worker_containers, cluster, list(handles), verbose)
        return check_kills(self.provider, KILL, result, len(handles))

    # -- the managed operations -----------------------------------------------------------

    def set_number(self, cluster: ClusterView, container: DockerContainer, hardware: DockerHardware,
                   number: int, verbose: int = 0) -> ScaleReport:
        """Refresh, then start or kill workers so that ``number`` of them exist."""
        with self.lock:
            self.refresh(cluster, verbose)
            before = self.ledger.workers()
            if number > before:
                started = self._launch(cluster, container, hardware, number - before, verbose)
                return ScaleReport(number, before, started=started)
            if number < before:
                return ScaleReport(number, before, killed=self._shrink(cluster, before - number, verbose))
            return ScaleReport(number, before)

    def numbers(self, cluster: ClusterView, verbose: int = 0) -> tuple[int, int]:
        """``(initializing, running)`` after a refresh."""
        with self.lock:
            self.refresh(cluster, verbose)
            return self.ledger.workers(WorkerStatus.INITIALIZING), self.ledger.workers(WorkerStatus.RUNNING)

    def refresh(self, cluster: ClusterView, verbose: int = 0) -> None:
        """Retry failed kills, ask every handle's status in one call, then kill and forget the stopped ones.

        A handle read as stopped is killed (kill is idempotent) before it is
        forgotten, so that one false reading cannot lose a live worker; a
        failed kill keeps it in the ledger for the next refresh.
        """
        with self.lock:
            self._retry_kills(cluster, verbose)
            handles = self.ledger.handles()
            if not handles:
                return
            self.ledger.apply_status(handles, self.status(cluster, handles, verbose))
            stopped = self.ledger.stopped()
            if stopped:
                self._kill(cluster, stopped, verbose, quiet=True)
                say(logger, verbose, "%d stopped worker handle(s) killed and forgotten", len(stopped))

    def kill_handles(self, cluster: ClusterView, handles: Iterable[str], verbose: int = 0) -> None:
        """Kill ``handles`` (each once) and forget those killed; failed kills are retried at the next refresh."""
        with self.lock:
            self._kill(cluster, unique(list(handles)), verbose)

    def kill_all(self, cluster: ClusterView, verbose: int = 0, attempts: int = 3, backoff: float = 0.5) -> list[str]:
        """Kill every handle without a refresh, retrying failures; return the handles that survived."""
        with self.lock:
            for attempt in range(attempts):
                handles = self.ledger.handles()
                if not handles:
                    return []
                self._kill(cluster, handles, verbose, quiet=True)  # a failed call leaves them kill-pending
                if self.ledger.handles() and attempt + 1 < attempts:
                    time.sleep(backoff * 2 ** attempt)
            return self.ledger.handles()

    # -- steps ------------------------------------------------------------------------------

    def _launch(self, cluster: ClusterView, container: DockerContainer, hardware: DockerHardware,
                number: int, verbose: int) -> int:
        capabilities = self.provider.launch_capabilities(container, hardware)
        if not isinstance(capabilities, ProviderCapabilities):
            raise ProviderError(self.provider, "launch_capabilities",
                                f"must return a ProviderCapabilities, got {type(capabilities).__name__}")
        sizes = capabilities.batch_sizes(number)
        say(logger, verbose, "starting %d worker(s) in %d run call(s)", number, len(sizes))
        if len(sizes) == 1:
            return len(self.run(cluster, container, hardware, number, verbose))
        self._remember(cluster)
        func = self.provider.run_docker_worker_containers
        threads = min(capabilities.max_concurrent_calls, len(sizes))
        with ThreadPoolExecutor(threads, thread_name_prefix="dockerparallel-run") as pool:
            futures = {pool.submit(self._call, RUN, func, cluster, container, hardware, size, verbose,
                                   on_late=self._late_run): size for size in sizes}
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
        return outcome.settle(self.provider, RUN)

    def _record_call(self, future: Future[Any], size: int, outcome: _LaunchOutcome) -> None:
        if future.cancelled():
            return
        try:
            outcome.started += len(self.record_run(future.result(), size))
        except PartialLaunchError as exc:
            outcome.started += exc.got
            outcome.short = True
        except Exception as exc:
            outcome.errors.append(exc)

    def _shrink(self, cluster: ClusterView, excess: int, verbose: int) -> int:
        plan = plan_kill(self.ledger.active_entries(), excess)
        if not plan.exact:
            situation = (excess, plan.workers, len(self.ledger))  # said once: a controller meets it every cycle
            repeated, self._inexact = self._inexact == situation, situation
            logger.log(
                logging.DEBUG if repeated else logging.WARNING,
                "%s: asked to remove %d worker(s) but no set of containers holds exactly that many; "
                "removing %d and keeping %d extra",
                type(self.provider).__name__, excess, plan.workers, excess - plan.workers,
            )
        say(logger, verbose, "killing %d worker(s) in %d handle(s)", plan.workers, len(plan.handles))
        self._kill(cluster, plan.handles, verbose)
        return plan.workers

    def _kill(self, cluster: ClusterView, handles: list[str], verbose: int, quiet: bool = False) -> None:
        """Kill unique ``handles``: forget those killed, keep the rest as kill-pending."""
        self.ledger.mark_kill_pending(handles)
        try:
            results = self.kill_checked(cluster, handles, verbose)
        except DockerParallelError as exc:
            if not quiet:
                raise
            logger.warning("%s: killing %d handle(s) failed (%s); they stay kill-pending and are retried",
                           type(self.provider).__name__, len(handles), exc)
            return
        self.ledger.remove(h for h, ok in zip(handles, results) if ok)
        failed = [h for h, ok in zip(handles, results) if not ok]
        if failed:
            logger.warning("%s: %d kill(s) failed; they are retried on the next refresh",
                           type(self.provider).__name__, len(failed))

    def _retry_kills(self, cluster: ClusterView, verbose: int) -> None:
        pending = self.ledger.pending_kills()
        if pending:
            say(logger, verbose, "retrying %d failed kill(s)", len(pending))
            self._kill(cluster, pending, verbose, quiet=True)
