"""The lifecycle: the one owner of a cluster's workers.

A cluster is created -> starting -> running -> closing -> closed. Every
change of workers (scale, update, the healing controller, adaptive scaling,
stop) goes through :class:`Lifecycle`, which checks the state under one
thread lock and, with a state store, one per-cluster lock shared with other
processes (released by the OS when its holder dies). Each change first
re-reads what the store knows, so workers that another process started are
counted and stopped. Background loops are told to stop and joined before
``stop`` takes the lock; after ``closing`` nothing starts a worker or writes
a record.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol, Sequence

from ._errors import ClusterExistsError, ClusterStateError, DockerParallelError, StopError
from ._records import INTENT, settle_workers, ClusterConfig, ReconnectReport, class_path, config_to_dict, warn_if_unimportable
from ._wait import wait_until
from .managed import LedgerEntry, ManagedCloudProvider
from .managed.calls import DEFAULT_CALL_TIMEOUT, call_with_deadline
from ._server import ExternalServer, ServerControl
from .provider import ClusterView, ServerAddress, WorkerNumbers

if TYPE_CHECKING:
    from .state import ClusterLock, StateStore


class BackgroundLoop(Protocol):
    """A loop the lifecycle owns (the healing controller, adaptive scaling): started and stopped by it."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

logger = logging.getLogger("dockerparallel.lifecycle")

#: Seconds a change waits for another process that holds the cluster's lock.
LOCK_TIMEOUT = 900.0


class State(enum.Enum):
    """Where a cluster is in its life."""

    CREATED = "created"
    STARTING = "starting"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


class Lifecycle:
    """Owns one cluster's state, its locks, its background loops and every change of its workers.

    Parameters
    ----------
    config : ClusterConfig
        The cluster's parts.
    view : ClusterView
        What the provider is handed as the cluster (the user's object).
    store : StateStore, optional
        Where the cluster is recorded; ``None`` records nothing.
    expected : int
        The expected number of workers.
    """

    def __init__(self, config: ClusterConfig, view: ClusterView, store: StateStore | None, expected: int) -> None:
        self.config, self.store = config, store
        self._view: Callable[[], ClusterView | None] = weakref.ref(view)  # a cluster object stays collectable
        self.expected = expected
        self.state = State.CREATED
        self.call_timeout: float | None = DEFAULT_CALL_TIMEOUT
        self._lock = threading.RLock()
        self._process_lock: ClusterLock | None = store.cluster_lock(config.name) if store is not None else None
        self._loops: dict[str, BackgroundLoop] = {}
        self.server: ServerControl | ExternalServer = ExternalServer(config, config.external_server) \
            if config.external_server is not None else ServerControl(config, self.call, lambda: self.view, self._lock)
        self._claimed = False  # the name is this cluster's (until it stops)
        self._store_checked = False
        if store is not None and self.manager is not None:
            self.manager.ledger.on_change = self._record_ledger_change

    @property
    def view(self) -> ClusterView:
        """What the provider is handed: the user's cluster object, or its parts once it is gone."""
        return self._view() or self.config

    @property
    def name(self) -> str:
        """The cluster's name."""
        return self.config.name

    @property
    def provider(self) -> Any:
        """The cluster's provider."""
        return self.config.provider

    @property
    def manager(self) -> Any:
        """The provider's worker manager, or ``None`` for a provider that manages workers itself."""
        provider = self.config.provider
        return provider.worker_manager if isinstance(provider, ManagedCloudProvider) else None

    @property
    def running(self) -> bool:
        """Whether workers may change now."""
        return self.state is State.RUNNING

    # -- locks -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the thread lock and the cluster's lock shared with other processes."""
        with self._lock:
            if self._process_lock is None:
                yield
                return
            if not self._store_checked:  # a corrupt state file is refused before a lock file is made beside it
                assert self.store is not None
                self.store.load_cluster(self.name)
                self._store_checked = True
            self._process_lock.acquire(timeout=LOCK_TIMEOUT)
            try:
                yield
            finally:
                self._process_lock.release()

    def call(self, method: str, func: Callable[..., Any], *args: Any) -> Any:
        """A provider call with the cluster's deadline, translated into :class:`ProviderError`."""
        return call_with_deadline(self.provider, method, func, args, self.call_timeout)

    # -- background loops ----------------------------------------------------------------------

    def add_loop(self, key: str, loop: BackgroundLoop) -> None:
        """Start ``loop`` (replacing and stopping the one under ``key``) while the cluster runs."""
        old = self._loops.pop(key, None)
        if old is not None:
            old.stop()
        self._loops[key] = loop
        if self.running:
            loop.start()

    def loop(self, key: str) -> BackgroundLoop | None:
        """The loop under ``key``, if any."""
        return self._loops.get(key)

    def start_loops(self) -> None:
        """Start the loops (again): safe to call twice; the cluster object calls it once it follows the scheduler."""
        if self.running:
            self._start_loops()

    def _start_loops(self) -> None:
        for loop in self._loops.values():
            loop.start()

    def _stop_loops(self) -> None:
        """Tell every loop to stop and join it; never called with the lock held."""
        for loop in list(self._loops.values()):
            loop.stop()

    # -- the server ------------------------------------------------------------------------------

    def server_status(self) -> str:
        """``"initializing"``, ``"running"`` or ``"stopped"``, checked."""
        return self.server.status()

    def server_address(self) -> ServerAddress:
        """Where the server listens (cached until the server restarts)."""
        return self.server.address()

    def wait_for_server(self, timeout: float) -> None:
        """Block until the server runs; raise if it stops or ``timeout`` passes."""
        self.server.wait(timeout)

    def start_server(self) -> None:
        """Start the server container (the name is claimed first)."""
        with self.exclusive():
            self._claim()
            self.server.start()

    def stop_server(self) -> None:
        """Stop the server container."""
        with self._lock:
            self.server.stop()

    # -- start and stop -------------------------------------------------------------------------------

    def start(self, timeout: float) -> None:
        """Claim the name, prepare the provider, start the server and, once its address is known, the workers.

        Workers start while the server boots (one boot, not two); a server
        that fails takes its early workers down.
        """
        with self.exclusive():
            if self.state is State.RUNNING:
                self._apply(self.expected)
                return
            self._claim()
            self.state = State.STARTING
            if self.manager is not None:
                self.manager.closed = False
            try:
                self.call("initialize_cloud_provider", self.provider.initialize_cloud_provider, self.view,
                          self.config.verbose)
                if self.server_status() == "stopped":
                    self.start_server()
                self._start_early(timeout)
                self.wait_for_server(timeout)
            except BaseException:
                self._take_down_early_workers()
                self.state = State.CREATED
                raise
            self.state = State.RUNNING
            self._apply(self.expected)
        self._start_loops()

    def _start_early(self, timeout: float) -> None:
        """Start the expected workers as soon as the server's address is known (before it runs)."""
        if not self.expected or not self.server.address_known(timeout):
            return
        try:
            self._apply(self.expected)
        except DockerParallelError as exc:  # tried again once the server runs
            logger.warning("%s: starting workers while the server boots failed: %s", self.name, exc)

    def _take_down_early_workers(self) -> None:
        manager = self.manager
        if manager is None or not len(manager.ledger):
            return
        logger.warning("%s: the server did not start; stopping the %d worker(s) started early", self.name,
                       manager.ledger.workers())
        try:
            survivors = manager.kill_all(self.view, self.config.verbose)
        except DockerParallelError as exc:
            logger.error("%s: stopping early workers failed: %s", self.name, exc)
            return
        if survivors:
            logger.error("%s: %d early worker handle(s) survived; 'dockerparallel down %s' stops them",
                         self.name, len(survivors), self.name)

    def _claim(self) -> None:
        """Make the name this cluster's, atomically in the store; a live cluster of that name is refused."""
        ours = self._claimed
        if self.store is not None and not ours:
            record = self.store.load_cluster(self.name)
            ours = record is not None and record.spec.get("owner") == self.config.owner
        if not ours and self._exists_on_provider():
            raise ClusterExistsError(self.name, f"its server runs on {type(self.provider).__name__}")
        if self.store is not None:
            warn_if_unimportable(self.provider, "provider class")
            self.store.claim_cluster(self.name, class_path(self.provider), self._spec(), self.config.owner)
        self._claimed = True

    def _exists_on_provider(self) -> bool:
        return bool(self.call("docker_cluster_exists", self.provider.docker_cluster_exists, self.view,
                              self.config.verbose))

    def stop_quietly(self) -> None:
        """:meth:`stop`, logging instead of raising (at interpreter exit or when the object is collected)."""
        if self.state is State.CLOSED:
            return
        try:
            self.stop()
        except Exception:
            logger.exception("%s: stopping the cluster on exit failed", self.name)

    def stop(self) -> None:
        """Kill every worker known to anyone, stop the server, forget the record; raise if workers survive."""
        self.state = State.CLOSING  # loops see it at once, without the lock
        self._stop_loops()
        with self.exclusive():
            self.state = State.CLOSING
            if self.manager is not None:
                self.manager.closed = True
            survivors, errors = self._stop_everything()
            self.state = State.CLOSED
            if survivors:
                raise StopError(self.name, survivors)
            if errors:
                raise errors[0]
            self._claimed = False
            if self.store is not None:
                self.store.delete_cluster(self.name)

    def _stop_everything(self) -> tuple[list[str], list[Exception]]:
        errors: list[Exception] = []
        survivors = self._stop_workers(errors)
        for method, func, args in (
            ("stop_docker_server", self.stop_server, ()),
            ("cleanup_docker_cluster", self.call, ("cleanup_docker_cluster", self.provider.cleanup_docker_cluster,
                                                   self.view, False, self.config.verbose)),
        ):
            try:
                func(*args)
            except DockerParallelError as exc:
                logger.warning("%s: %s failed while stopping: %s", self.name, method, exc)
                errors.append(exc)
        return survivors, errors

    def _stop_workers(self, errors: list[Exception]) -> list[str]:
        """Kill the union of the ledger, the store's rows and what the provider finds labelled."""
        manager = self.manager
        if manager is None:
            try:
                self.call("set_docker_worker_number", self.provider.set_docker_worker_number, self.view,
                          self.config.worker_container, self.config.worker_hardware, 0, self.config.verbose)
            except DockerParallelError as exc:
                errors.append(exc)
            return []
        self._adopt_rows()
        try:
            self.call("reconnect_docker_cluster", self.provider.reconnect_docker_cluster, self.view,
                      self.config.verbose)
        except DockerParallelError as exc:  # the known handles are still killed
            logger.warning("%s: finding labelled workers failed while stopping: %s", self.name, exc)
        return list(manager.kill_all(self.view, self.config.verbose))

    # -- worker changes -----------------------------------------------------------------------------------

    def _ensure_running(self) -> bool:
        """Whether workers may change now: the cluster runs (or its server was started by hand) and its server runs."""
        if self.state not in (State.CREATED, State.RUNNING) or self.server_status() != "running":
            return False
        if self.state is State.CREATED:
            self._claim()
            self.state = State.RUNNING
            if self.manager is not None:
                self.manager.closed = False
        return True

    def set_expected(self, number: int, apply: bool = True) -> None:
        """Ask for ``number`` workers: recorded, and applied when the cluster runs (and ``apply``)."""
        with self.exclusive():
            self.expected = number
            if not self._ensure_running():
                return
            self._adopt_rows()
            self.save_record()
            if apply:
                self._apply(number)

    def update(self) -> None:
        """Reconcile: adopt what other processes did, replace stopped workers up to the expected number."""
        with self.exclusive():
            if self._ensure_running() and self.sync():
                self._apply(self.expected)

    def apply(self, target: int) -> None:
        """Start or kill workers towards ``target`` now (for the controller; the cluster must run)."""
        with self.exclusive():
            if not self.running:
                raise ClusterStateError(f"cluster {self.name!r} is {self.state.value}; workers do not change")
            self._apply(target)

    def _apply(self, target: int) -> None:
        container = self._configured_container()
        if self.store is not None:
            self.store.put_resource(self.name, INTENT, INTENT, target, {"time": time.time()})
        self._set_number(container, target)
        if self.store is not None:
            self.store.delete_resources(self.name, [INTENT])

    def _set_number(self, container: Any, target: int) -> None:
        """The provider's set_docker_worker_number (a managed one puts a deadline on each primitive itself)."""
        config, func = self.config, self.provider.set_docker_worker_number
        args = (self.view, container, config.worker_hardware, target, config.verbose)
        if self.manager is not None:
            func(*args)
        else:
            self.call("set_docker_worker_number", func, *args)

    def _configured_container(self) -> Any:
        render = getattr(self.config.worker_container, "for_server", None)
        return render(self.server_address()) if render else self.config.worker_container

    def numbers(self) -> WorkerNumbers:
        """``WorkerNumbers(initializing, running, expected)``, counting what other processes recorded."""
        with self._lock:
            self._adopt_rows()
            func, verbose = self.provider.get_docker_worker_numbers, self.config.verbose
            if self.manager is not None:
                initializing, running = func(self.view, verbose)
            else:
                initializing, running = self.call("get_docker_worker_numbers", func, self.view, verbose)
            return WorkerNumbers(int(initializing), int(running), self.expected)

    def retire(self, expected: int, action: Callable[[], None], timeout: float = 30.0) -> None:
        """Lower the expected number to ``expected`` and let ``action`` end the workers gracefully.

        ``action`` retires the workers (their containers then exit); workers
        still above ``expected`` after ``timeout`` seconds are killed.
        """
        with self.exclusive():
            if not self.running:
                return
            self.expected = expected
            self.save_record()
            action()

            def gone() -> bool:
                numbers = self.numbers()
                return numbers.initializing + numbers.running <= expected

            try:
                wait_until(gone, timeout, "retired workers' containers to exit", poll=0.25)
            except TimeoutError:
                logger.warning("retired containers did not exit in %g s; killing what is above %d workers",
                               timeout, expected)
                self._apply(expected)

    # -- the store ----------------------------------------------------------------------------------------

    def sync(self) -> bool:
        """Adopt the store's expected number and worker rows; ``False`` if another process stopped the cluster."""
        if self.store is None:
            return True
        record = self.store.load_cluster(self.name)
        if record is None:
            logger.warning("cluster %s was stopped by another process", self.name)
            self.state = State.CLOSED
            if self.manager is not None:
                self.manager.closed = True
            return False
        self.expected = int(record.spec.get("expected", self.expected))
        self._adopt_rows()
        return True

    def _adopt_rows(self) -> int:
        """Add the store's worker rows that the ledger does not know; return how many."""
        manager = self.manager
        if self.store is None or manager is None:
            return 0
        with manager.lock:
            ledger = manager.ledger
            rows = {h: n for h, n in self.store.resource_counts(self.name, "worker").items() if h not in ledger}
            for handle, count in rows.items():
                ledger.add([handle] * count)
        return len(rows)

    def _spec(self) -> dict[str, Any]:
        return config_to_dict(self.config, self.expected)

    def save_record(self) -> None:
        """Record the cluster's spec (only while it starts or runs: a stopped cluster leaves no ghost)."""
        if self.store is not None and self.state in (State.STARTING, State.RUNNING):
            self.store.claim_cluster(self.name, class_path(self.provider), self._spec(), self.config.owner)

    def _record_ledger_change(self, event: str, entries: Sequence[LedgerEntry]) -> None:
        assert self.store is not None
        if event == "add" and self.state is not State.CLOSED:
            self.store.upsert_resources(self.name, "worker", [(e.handle, e.count) for e in entries])
        elif event == "remove":
            self.store.delete_resources(self.name, [e.handle for e in entries])

    # -- reconnect ------------------------------------------------------------------------------------------

    def reconnect(self, orphans: str) -> ReconnectReport:
        """Adopt the server and the workers the store and the provider know; see ``DockerCluster.reconnect``."""
        with self.exclusive():
            self.server.forget_address()
            self._adopt_owner()
            recorded = self._adopt_rows()
            manager = self.manager
            before = set(manager.ledger.handles()) if manager is not None else set()
            self.call("reconnect_docker_cluster", self.provider.reconnect_docker_cluster, self.view,
                      self.config.verbose)
            found = [h for h in manager.ledger.handles() if h not in before] if manager is not None else []
            report = self._settle_reconnect(recorded, found, orphans)
            self._claimed = True  # reconnecting adopts the name (and the record's owner)
            if report.server == "running":
                self.state = State.RUNNING
                if manager is not None:
                    manager.closed = False
            logger.info("reconnected to %s: %s", self.name, report)
        if self.running:
            self._start_loops()
        return report

    def _adopt_owner(self) -> None:
        """Become the recorded cluster of this name: its record's owner is now ours."""
        record = self.store.load_cluster(self.name) if self.store is not None else None
        if record is not None and record.spec.get("owner"):
            self.config.owner = str(record.spec["owner"])

    def _settle_reconnect(self, recorded: int, found: list[str], orphans: str) -> ReconnectReport:
        interrupted = bool(self.store and self.store.resources(self.name, INTENT))
        dead, killed = settle_workers(self.manager, self.view, found, orphans) if self.manager else (0, 0)
        return ReconnectReport(recorded, len(found), dead, killed, interrupted, self.server_status())
