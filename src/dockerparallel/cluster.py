"""`DockerCluster`: the object a user holds."""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Sequence

from distributed.core import Status

from ._errors import ClusterStateError, ProviderError, ProviderThrottled
from ._validation import check_count, check_flag, check_name, check_seconds, check_verbose
from ._wait import wait_until
from .backends.dask import new_security
from .container import DockerContainer, DockerHardware
from .controller import Controller
from .managed import LedgerEntry, ManagedCloudProvider
from .provider import CloudProvider, ServerAddress, WorkerNumbers
from .state import StateStore

if TYPE_CHECKING:
    from distributed import Client

    from .backends.dask import Adaptive

logger = logging.getLogger("dockerparallel.cluster")

_SERVER_STATUSES = frozenset({"initializing", "running", "stopped"})

#: Handle and role of the record written before each launch and removed after it.
INTENT = "intent"


def _check_hardware(value: DockerHardware | None, name: str) -> DockerHardware:
    if value is None:
        return DockerHardware()
    if not isinstance(value, DockerHardware):
        raise TypeError(f"{name} must be a DockerHardware, got {type(value).__name__}")
    return value


def _check_state(state: StateStore | bool | None) -> StateStore | None:
    if state is None or state is True:
        return StateStore()
    if state is False:
        return None
    if not isinstance(state, StateStore):
        raise TypeError(f"state must be a StateStore or a bool, got {type(state).__name__}")
    return state


def _tls_environment(security: Any) -> dict[str, str]:
    from .backends.dask import security_environment

    return security_environment(security)


def _secure(provider: CloudProvider, container: DockerContainer, security: Any) -> tuple[Any, DockerContainer]:
    """The cluster's TLS settings and the worker container that uses them."""
    can_tls = hasattr(container, "with_security")
    if security is None:
        security = bool(provider.tls_by_default and can_tls)
    if security is False:
        return None, container
    if not can_tls:
        raise TypeError(f"security: {type(container).__name__} cannot use TLS; pass security=False")
    if security is True:
        security = new_security()
    return security, container.with_security(security)  # type: ignore[attr-defined]


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


class _HybridMethod:
    """``Class.method(...)`` calls one function, ``instance.method(...)`` another."""

    def __init__(self, on_class: Any, on_instance: Any) -> None:
        self.on_class = on_class.__func__ if isinstance(on_class, classmethod) else on_class
        self.on_instance = on_instance
        self.__doc__ = on_instance.__doc__

    def __get__(self, obj: object, owner: type) -> Any:
        if obj is None:
            return functools.partial(self.on_class, owner)
        return functools.partial(self.on_instance, obj)


class DockerCluster:
    """A server container plus worker containers run by a provider.

    Parameters
    ----------
    provider : CloudProvider
        Where the containers run.
    worker_container : DockerContainer
        The worker container.
    server_container : DockerContainer, optional
        The server container; derived with ``worker_container.server_container()``
        when omitted.
    worker_number : int
        How many workers the cluster should have once it runs.
    worker_hardware, server_hardware : DockerHardware, optional
        Hardware of one worker and of the server (default: 1 core, 2 GB).
    name : str, optional
        Identifies the cluster on the cloud; generated when omitted.
    verbose : int
        0 (quiet), 1 (progress) or 2 (details), logged through :mod:`logging`.
    security : bool or distributed.Security, optional
        TLS between client, server and workers. ``True`` makes per-cluster
        certificates, ``False`` turns TLS off; the default is the provider's
        ``tls_by_default`` (on everywhere except local processes). The
        certificates reach the containers through their environment.
    state : StateStore or bool, optional
        Where the cluster's spec, its worker handles and an intent before
        each launch are recorded, so that ``DockerCluster.reconnect(name)``
        finds it from another process. Default: the user's state store;
        ``False`` records nothing.
    auto_heal : bool
        Run a background controller that replaces dead workers, retries
        failed launches with backoff and slow start, and (with
        ``init_timeout``) replaces workers stuck initializing.
    heal_interval : float
        Seconds between the controller's cycles.
    init_timeout : float, optional
        Seconds a worker may stay initializing before the controller replaces it.
    """

    def __init__(
        self,
        provider: CloudProvider,
        worker_container: DockerContainer,
        *,
        server_container: DockerContainer | None = None,
        worker_number: int = 0,
        worker_hardware: DockerHardware | None = None,
        server_hardware: DockerHardware | None = None,
        name: str | None = None,
        verbose: int = 0,
        security: Any = None,
        state: StateStore | bool | None = None,
        auto_heal: bool = False,
        heal_interval: float = 5.0,
        init_timeout: float | None = None,
    ) -> None:
        if not isinstance(provider, CloudProvider):
            raise TypeError(f"provider must be a CloudProvider, got {type(provider).__name__}")
        if not isinstance(worker_container, DockerContainer):
            raise TypeError(f"worker_container must be a DockerContainer, got {type(worker_container).__name__}")
        if server_container is not None and not isinstance(server_container, DockerContainer):
            raise TypeError(f"server_container must be a DockerContainer, got {type(server_container).__name__}")
        self._expected = check_count(worker_number, "worker_number")
        self.worker_hardware = _check_hardware(worker_hardware, "worker_hardware")
        self.server_hardware = _check_hardware(server_hardware, "server_hardware")
        self.name = check_name(name) if name is not None else self.new_name()
        self.verbose = check_verbose(verbose)
        self.provider = provider
        self.security, self.worker_container = _secure(provider, worker_container, security)
        if server_container is not None and self.security is not None:
            server_container = server_container.with_environment(**_tls_environment(self.security))
        self.server_container = server_container or self.worker_container.server_container()
        self._address: ServerAddress | None = None
        self._lock = threading.RLock()
        self.store = _check_state(state)
        check_flag(auto_heal, "auto_heal")
        self.controller = Controller(self, heal_interval, init_timeout) if auto_heal else None
        #: What the last ``DockerCluster.reconnect(name)`` found.
        self.last_reconnect: ReconnectReport | None = None
        if self.store is not None and isinstance(provider, ManagedCloudProvider):
            provider.worker_ledger.on_change = self._record_ledger_change
        self._adaptive: Adaptive | None = None
        #: Dask's view of the cluster's state, read by ``distributed.Client``.
        self.status = Status.created

    @staticmethod
    def new_name() -> str:
        """A fresh cluster name."""
        return f"dockerparallel-{uuid.uuid4().hex[:10]}"

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.name!r} provider={type(self.provider).__name__} "
            f"expected_workers={self._expected}>"
        )

    def __enter__(self) -> DockerCluster:
        if not self.is_server_running():
            self.start_cluster()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_cluster()

    # -- server -----------------------------------------------------------------

    def start_server(self) -> None:
        """Start the server container."""
        with self._lock:
            self._address = None
            self.provider.run_docker_server(self, self.server_container, self.server_hardware, self.verbose)

    def stop_server(self) -> None:
        """Stop the server container."""
        with self._lock:
            self._address = None
            self.provider.stop_docker_server(self, self.verbose)

    def server_status(self) -> str:
        """The server's status: ``"initializing"``, ``"running"`` or ``"stopped"``."""
        status = self.provider.get_server_status(self, self.verbose)
        status = getattr(status, "value", status)
        if status not in _SERVER_STATUSES:
            raise ProviderError(self.provider, "get_server_status",
                                f"returned {status!r}; expected 'initializing', 'running' or 'stopped'")
        return str(status)

    def is_server_running(self) -> bool:
        """Whether the server runs."""
        return self.server_status() == "running"

    def wait_for_server(self, timeout: float = 300.0) -> None:
        """Block until the server runs; raise if it stops or ``timeout`` passes."""

        def running() -> bool:
            status = self.server_status()
            if status == "stopped":
                raise ClusterStateError(f"the server of cluster {self.name!r} stopped while starting")
            return status == "running"

        wait_until(running, timeout, f"the server of cluster {self.name!r}")

    def server_address(self) -> ServerAddress:
        """Where the server listens (cached until the server restarts)."""
        with self._lock:
            if self._address is None:
                answer = self.provider.get_docker_server_ip(self, self.verbose)
                try:
                    self._address = ServerAddress.coerce(answer)
                except (TypeError, KeyError, ValueError) as exc:
                    raise ProviderError(self.provider, "get_docker_server_ip",
                                        f"returned {type(answer).__name__}, not a ServerAddress ({exc})") from None
            return self._address

    # -- cluster ------------------------------------------------------------------

    def start_cluster(self, timeout: float = 300.0) -> None:
        """Prepare the provider, start the server, wait for it, then start the expected workers."""
        check_seconds(timeout, "timeout")
        with self._lock:
            self.provider.initialize_cloud_provider(self, self.verbose)
            self.save_record()
            if self.server_status() == "stopped":
                self.start_server()
            self.wait_for_server(timeout)
            self.status = Status.running
            self._apply_worker_number()
            if self.controller is not None:
                self.controller.start()

    def stop_cluster(self) -> None:
        """Kill every worker and stop the server. The expected number is kept."""
        with self._lock:
            self.status = Status.closing
            if self.controller is not None:
                self.controller.stop()
            if self._adaptive is not None:
                self._adaptive.stop()
                self._adaptive = None
            self.provider.set_docker_worker_number(
                self, self.worker_container, self.worker_hardware, 0, self.verbose
            )
            self.stop_server()
            self.provider.cleanup_docker_cluster(self, deep=False, verbose=self.verbose)
            self.status = Status.closed
            self._forget_record()

    def close(self) -> None:
        """Stop the cluster (the name ``distributed`` uses)."""
        self.stop_cluster()

    def cluster_exists(self) -> bool:
        """Whether a cluster with this name runs on the provider."""
        return bool(self.provider.docker_cluster_exists(self, self.verbose))

    def _reconnect_instance(self, orphans: str = "adopt") -> ReconnectReport:
        """Adopt the server and workers of the running cluster with this name.

        The ledger is rebuilt from the state store and from what the provider
        finds labelled with the name; dead handles are forgotten, and workers
        the store did not know (orphans of a crash mid-launch) are adopted or,
        with ``orphans="kill"``, killed.
        """
        if orphans not in ("adopt", "kill"):
            raise ValueError(f"orphans must be 'adopt' or 'kill', got {orphans!r}")
        with self._lock:
            self._address = None
            recorded = self._adopt_recorded()
            before = set(self._ledger_handles())
            self.provider.reconnect_docker_cluster(self, self.verbose)
            found = [h for h in self._ledger_handles() if h not in before]
            report = self._settle_reconnect(recorded, found, orphans)
            if report.server == "running":
                self.status = Status.running
            logger.info("reconnected to %s: %s", self.name, report)
            return report

    @classmethod
    def _reconnect_by_name(cls, name: str, *, state: StateStore | None = None,
                           orphans: str = "adopt") -> DockerCluster:
        """Rebuild the cluster recorded as ``name`` and reconnect to it (``cluster.last_reconnect`` says what was found)."""
        from ._persist import cluster_from_dict

        store = state if state is not None else StateStore()
        record = store.load_cluster(check_name(name))
        if record is None:
            raise ValueError(f"name: no cluster named {name!r} in {store.path}")
        cluster = cluster_from_dict(name, record.spec, store)
        cluster.last_reconnect = cluster._reconnect_instance(orphans)
        return cluster

    reconnect = _HybridMethod(_reconnect_by_name, _reconnect_instance)

    def _ledger_handles(self) -> list[str]:
        provider = self.provider
        return provider.worker_ledger.handles() if isinstance(provider, ManagedCloudProvider) else []

    def _adopt_recorded(self) -> int:
        if self.store is None or not isinstance(self.provider, ManagedCloudProvider):
            return 0
        known = set(self.provider.worker_ledger.handles())
        records = [r for r in self.store.resources(self.name, "worker") if r.handle not in known]
        for record in records:
            self.provider.add_managed_worker_handles([record.handle] * record.count)
        return len(records)

    def _settle_reconnect(self, recorded: int, found: list[str], orphans: str) -> ReconnectReport:
        dead = killed = 0
        interrupted = bool(self.store and self.store.resources(self.name, INTENT))
        provider = self.provider
        if isinstance(provider, ManagedCloudProvider):
            alive_before = len(provider.worker_ledger)
            self._refresh_with_retries(provider)
            dead = alive_before - len(provider.worker_ledger)
            live_found = [h for h in found if h in provider.worker_ledger]
            if orphans == "kill" and live_found:
                provider.kill_worker_handles(self, live_found, self.verbose)
                killed = len(live_found)
        return ReconnectReport(recorded, len(found), dead, killed, interrupted, self.server_status())

    def _refresh_with_retries(self, provider: ManagedCloudProvider, attempts: int = 4) -> None:
        """Refresh the statuses; a passing provider fault is retried with backoff (a reconnect should not fail on one)."""
        for attempt in range(1, attempts + 1):
            try:
                provider.refresh_workers(self, self.verbose)
                return
            except (ProviderError, ProviderThrottled) as exc:
                if attempt == attempts:
                    raise
                delay = 0.25 * 2 ** (attempt - 1)
                logger.warning("reconnect to %s: status refresh failed (%s); retrying in %.2f s", self.name, exc, delay)
                time.sleep(delay)

    def cleanup(self, deep: bool = False) -> None:
        """Release what the provider holds; ``deep=True`` removes everything labelled with the name."""
        check_flag(deep, "deep")
        self.provider.cleanup_docker_cluster(self, deep=deep, verbose=self.verbose)

    # -- workers --------------------------------------------------------------------

    @property
    def expected_workers(self) -> int:
        """The number of workers the cluster should have."""
        return self._expected

    def set_worker_number(self, worker_number: int) -> None:
        """Ask for ``worker_number`` workers.

        Before the server runs the number is only recorded; it is applied when
        the cluster starts.
        """
        number = check_count(worker_number, "worker_number")
        with self._lock:
            self._expected = number
            self.save_record()
            if self.is_server_running():
                self._apply_worker_number()

    def record_worker_number(self, worker_number: int) -> None:
        """Change the expected number without applying it (the workers already went away)."""
        self._expected = check_count(worker_number, "worker_number")

    def get_worker_numbers(self) -> WorkerNumbers:
        """Return ``WorkerNumbers(initializing, running, expected)``."""
        initializing, running = self.provider.get_docker_worker_numbers(self, self.verbose)
        return WorkerNumbers(int(initializing), int(running), self._expected)

    def update(self) -> WorkerNumbers:
        """Reconcile: forget stopped workers and start replacements up to the expected number."""
        with self._lock:
            if self.is_server_running():
                self._apply_worker_number()
            return self.get_worker_numbers()

    def wait_for_workers(self, number: int | None = None, timeout: float = 300.0) -> WorkerNumbers:
        """Block until ``number`` workers (default: the expected number) run."""
        wanted = self._expected if number is None else check_count(number, "number")
        numbers: list[WorkerNumbers] = []

        def enough() -> bool:
            numbers.append(self.get_worker_numbers())
            return numbers[-1].running >= wanted

        wait_until(enough, timeout, f"{wanted} running worker(s) in cluster {self.name!r}")
        return numbers[-1]

    def scale(self, n: int) -> None:
        """Alias of :meth:`set_worker_number`, as in ``distributed``."""
        self.set_worker_number(n)

    def adapt(self, minimum: int = 0, maximum: int | None = None, interval: float = 1.0,
              wait_count: int = 3) -> Adaptive:
        """Let the Dask scheduler's load decide the worker number between ``minimum`` and ``maximum``.

        Scale-down retires Dask workers gracefully: their results move to other
        workers before their containers go away.
        """
        from .backends.dask import Adaptive

        with self._lock:
            if self._adaptive is not None:
                self._adaptive.stop()
            self._adaptive = Adaptive(self, minimum, maximum, interval=interval, wait_count=wait_count)
            self._adaptive.start()
            return self._adaptive

    # -- client ------------------------------------------------------------------------

    @property
    def scheduler_address(self) -> str:
        """The address a ``distributed.Client`` connects to."""
        address = self.server_address()
        render = getattr(self.worker_container, "scheduler_address", None)
        return render(address) if render else f"tcp://{address.client_ip}:{address.client_port}"

    @property
    def dashboard_link(self) -> str:
        """The link to the server's dashboard ('' when the backend has none)."""
        render = getattr(self.worker_container, "dashboard_link", None)
        return render(self.server_address()) if render else ""

    def get_client(self, **kwargs: Any) -> Client:
        """A ``distributed.Client`` connected to this cluster."""
        from distributed import Client

        return Client(self.scheduler_address, security=self.security, **kwargs)

    def configured_worker_container(self) -> DockerContainer:
        """The worker container configured for the running server."""
        return self.worker_container.for_server(self.server_address())

    def _apply_worker_number(self) -> None:
        self.apply_worker_number(self._expected)

    def apply_worker_number(self, target: int) -> None:
        """Have the provider start or kill workers towards ``target`` now (an intent is recorded first)."""
        with self._lock:
            container = self.configured_worker_container()
            if self.store is not None:
                self.store.put_resource(self.name, INTENT, INTENT, target, {"time": time.time()})
            self.provider.set_docker_worker_number(self, container, self.worker_hardware, target, self.verbose)
            if self.store is not None:
                self.store.delete_resources(self.name, [INTENT])

    # -- state store ---------------------------------------------------------------------

    def save_record(self) -> None:
        """Record the cluster's spec in the state store (nothing without one)."""
        if self.store is not None:
            from ._persist import class_path, cluster_to_dict

            self.store.save_cluster(self.name, class_path(self.provider), cluster_to_dict(self))

    def _forget_record(self) -> None:
        managed = isinstance(self.provider, ManagedCloudProvider)
        if self.store is not None and not (managed and len(self.provider.worker_ledger)):  # type: ignore[attr-defined]
            self.store.delete_cluster(self.name)

    def _record_ledger_change(self, event: str, entries: Sequence[LedgerEntry]) -> None:
        assert self.store is not None
        if event == "add":
            self.store.upsert_resources(self.name, "worker", [(e.handle, e.count) for e in entries])
        elif event == "remove":
            self.store.delete_resources(self.name, [e.handle for e in entries])
