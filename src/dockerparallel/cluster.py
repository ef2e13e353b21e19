"""`DockerCluster`: the object a user holds.

It is plain data (a :class:`~dockerparallel._records.ClusterConfig`) plus a
:class:`~dockerparallel._lifecycle.Lifecycle` through which every change of
workers goes.
"""

from __future__ import annotations

import functools
import uuid
from types import TracebackType
from typing import TYPE_CHECKING, Any

from distributed.core import Status

from ._lifecycle import Lifecycle, State
from ._records import ClusterConfig, ReconnectReport, config_from_dict
from ._validation import check_count, check_flag, check_name, check_seconds, check_verbose
from ._wait import wait_until
from .backends.dask import new_security, security_environment
from .container import DockerContainer, DockerHardware
from .controller import Controller
from .provider import CloudProvider, ServerAddress, WorkerNumbers
from .state import StateStore

if TYPE_CHECKING:
    from distributed import Client

    from .backends.dask import Adaptive

__all__ = ["DockerCluster", "ReconnectReport"]

_STATUS = {State.CREATED: Status.created, State.STARTING: Status.starting, State.RUNNING: Status.running,
           State.CLOSING: Status.closing, State.CLOSED: Status.closed}


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


def _check_parts(provider: object, worker_container: object, server_container: object) -> None:
    if not isinstance(provider, CloudProvider):
        raise TypeError(f"provider must be a CloudProvider, got {type(provider).__name__}")
    if not isinstance(worker_container, DockerContainer):
        raise TypeError(f"worker_container must be a DockerContainer, got {type(worker_container).__name__}")
    if server_container is not None and not isinstance(server_container, DockerContainer):
        raise TypeError(f"server_container must be a DockerContainer, got {type(server_container).__name__}")


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
    call_timeout : float, optional
        Seconds any single provider call may take before
        :class:`~dockerparallel.ProviderTimeout` (default 600); the cluster
        stays usable, and what a late call returns is still recorded.

    Notes
    -----
    Every change of workers goes through the cluster's lifecycle, which
    holds one lock per cluster shared with other processes that use the same
    state store: ``dockerparallel scale NAME`` from a shell and this object
    never change the workers at the same time, and each counts what the
    other started. Starting a cluster whose name is live raises
    :class:`~dockerparallel.ClusterExistsError`.
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
        call_timeout: float | None = None,
    ) -> None:
        _check_parts(provider, worker_container, server_container)
        expected = check_count(worker_number, "worker_number")
        worker_hardware = _check_hardware(worker_hardware, "worker_hardware")
        server_hardware = _check_hardware(server_hardware, "server_hardware")
        name = check_name(name) if name is not None else self.new_name()
        verbose = check_verbose(verbose)
        store = _check_state(state)
        check_flag(auto_heal, "auto_heal")
        if call_timeout is not None:
            call_timeout = check_seconds(call_timeout, "call_timeout", allow_zero=False)
        security, worker_container = _secure(provider, worker_container, security)
        if server_container is not None and security is not None:
            server_container = server_container.with_environment(**security_environment(security))
        config = ClusterConfig(name, provider, worker_container,
                               server_container or worker_container.server_container(),
                               worker_hardware, server_hardware, security, verbose)
        self._setup(config, store, expected, call_timeout)
        if auto_heal:
            self.lifecycle.add_loop("controller", Controller(self, heal_interval, init_timeout))

    def _setup(self, config: ClusterConfig, store: StateStore | None, expected: int,
               call_timeout: float | None) -> None:
        self.config = config
        self.store = store
        #: The one owner of this cluster's state and workers.
        self.lifecycle = Lifecycle(config, self, store, expected)
        if call_timeout is not None:
            self.lifecycle.call_timeout = call_timeout
            if hasattr(config.provider, "worker_manager"):
                config.provider.call_timeout = call_timeout  # type: ignore[attr-defined]
        #: What the last ``DockerCluster.reconnect(name)`` found.
        self.last_reconnect: ReconnectReport | None = None

    @classmethod
    def _from_config(cls, config: ClusterConfig, store: StateStore, expected: int) -> DockerCluster:
        """A cluster object for recorded parts (their containers already carry the TLS settings)."""
        cluster = cls.__new__(cls)
        cluster._setup(config, store, expected, None)
        return cluster

    @staticmethod
    def new_name() -> str:
        """A fresh cluster name."""
        return f"dockerparallel-{uuid.uuid4().hex[:10]}"

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.name!r} provider={type(self.provider).__name__} "
            f"status={self.lifecycle.state.value} expected_workers={self.expected_workers}>"
        )

    def __enter__(self) -> DockerCluster:
        if not self.lifecycle.running:
            self.start_cluster()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_cluster()

    # -- the parts (a ClusterView for providers) ----------------------------------------

    @property
    def name(self) -> str:
        """Identifies the cluster on the cloud."""
        return self.config.name

    @property
    def provider(self) -> CloudProvider:
        """Where the containers run."""
        return self.config.provider

    @property
    def worker_container(self) -> DockerContainer:
        """The worker container (with the cluster's TLS settings)."""
        return self.config.worker_container

    @worker_container.setter
    def worker_container(self, container: DockerContainer) -> None:
        _check_parts(self.provider, container, None)
        self.config.worker_container = container

    @property
    def server_container(self) -> DockerContainer:
        """The server container."""
        return self.config.server_container

    @property
    def worker_hardware(self) -> DockerHardware:
        """Hardware of one worker."""
        return self.config.worker_hardware

    @property
    def server_hardware(self) -> DockerHardware:
        """Hardware of the server."""
        return self.config.server_hardware

    @property
    def security(self) -> Any:
        """The cluster's ``distributed.Security``, or ``None`` without TLS."""
        return self.config.security

    @property
    def verbose(self) -> int:
        """0 (quiet), 1 (progress) or 2 (details)."""
        return self.config.verbose

    @verbose.setter
    def verbose(self, value: int) -> None:
        self.config.verbose = check_verbose(value)

    @property
    def status(self) -> Status:
        """Dask's view of the cluster's state, read by ``distributed.Client``."""
        return _STATUS[self.lifecycle.state]

    @property
    def controller(self) -> Controller | None:
        """The healing controller (with ``auto_heal=True``)."""
        return self.lifecycle.loop("controller")  # type: ignore[return-value]

    # -- server -----------------------------------------------------------------

    def start_server(self) -> None:
        """Start the server container."""
        self.lifecycle.start_server()

    def stop_server(self) -> None:
        """Stop the server container."""
        self.lifecycle.stop_server()

    def server_status(self) -> str:
        """The server's status: ``"initializing"``, ``"running"`` or ``"stopped"``."""
        return self.lifecycle.server_status()

    def is_server_running(self) -> bool:
        """Whether the server runs."""
        return self.server_status() == "running"

    def wait_for_server(self, timeout: float = 300.0) -> None:
        """Block until the server runs; raise if it stops or ``timeout`` passes."""
        self.lifecycle.wait_for_server(check_seconds(timeout, "timeout"))

    def server_address(self) -> ServerAddress:
        """Where the server listens (cached until the server restarts)."""
        return self.lifecycle.server_address()

    # -- cluster ------------------------------------------------------------------

    def start_cluster(self, timeout: float = 300.0) -> None:
        """Claim the name, prepare the provider, start the server, wait for it, then start the expected workers.

        Raises
        ------
        ClusterExistsError
            When a cluster of this name is live (recorded by another cluster
            object, or running on the provider); reconnect to it instead.
        """
        self.lifecycle.start(check_seconds(timeout, "timeout"))

    def stop_cluster(self) -> None:
        """Kill every worker (those other processes started too) and stop the server.

        Background loops end first. Kills that fail are retried; workers that
        survive them raise :class:`~dockerparallel.StopError` listing their
        handles, and the record is kept so that a later stop can retry. The
        expected number is kept.
        """
        self.lifecycle.stop()

    def close(self) -> None:
        """Stop the cluster (the name ``distributed`` uses)."""
        self.stop_cluster()

    def cluster_exists(self) -> bool:
        """Whether a cluster with this name runs on the provider."""
        return self.lifecycle._exists_on_provider()

    def _reconnect_instance(self, orphans: str = "adopt") -> ReconnectReport:
        """Adopt the server and workers of the running cluster with this name.

        The ledger is rebuilt from the state store and from what the provider
        finds labelled with the name; dead handles are forgotten, and workers
        the store did not know (orphans of a crash mid-launch) are adopted or,
        with ``orphans="kill"``, killed.
        """
        if orphans not in ("adopt", "kill"):
            raise ValueError(f"orphans must be 'adopt' or 'kill', got {orphans!r}")
        return self.lifecycle.reconnect(orphans)

    @classmethod
    def _reconnect_by_name(cls, name: str, *, state: StateStore | None = None,
                           orphans: str = "adopt") -> DockerCluster:
        """Rebuild the cluster recorded as ``name`` and reconnect to it (``cluster.last_reconnect`` says what was found)."""
        store = state if state is not None else StateStore()
        record = store.load_cluster(check_name(name))
        if record is None:
            raise ValueError(f"name: no cluster named {name!r} in {store.path}")
        config, expected = config_from_dict(name, record.spec, store)
        cluster = cls._from_config(config, store, expected)
        cluster.last_reconnect = cluster._reconnect_instance(orphans)
        return cluster

    reconnect = _HybridMethod(_reconnect_by_name, _reconnect_instance)

    def cleanup(self, deep: bool = False) -> None:
        """Release what the provider holds; ``deep=True`` removes everything labelled with the name."""
        check_flag(deep, "deep")
        self.lifecycle.call("cleanup_docker_cluster", self.provider.cleanup_docker_cluster, self, deep, self.verbose)

    # -- workers --------------------------------------------------------------------

    @property
    def expected_workers(self) -> int:
        """The number of workers the cluster should have."""
        return self.lifecycle.expected

    def set_worker_number(self, worker_number: int) -> None:
        """Ask for ``worker_number`` workers.

        Before the cluster runs (and after it stopped) the number is only
        kept; it is applied when the cluster starts.
        """
        self.lifecycle.set_expected(check_count(worker_number, "worker_number"))

    def record_worker_number(self, worker_number: int) -> None:
        """Change the expected number without applying it (the controller or ``update()`` applies it)."""
        self.lifecycle.set_expected(check_count(worker_number, "worker_number"), apply=False)

    def get_worker_numbers(self) -> WorkerNumbers:
        """Return ``WorkerNumbers(initializing, running, expected)``."""
        return self.lifecycle.numbers()

    def update(self) -> WorkerNumbers:
        """Reconcile: forget stopped workers and start replacements up to the expected number."""
        self.lifecycle.update()
        return self.get_worker_numbers()

    def apply_worker_number(self, target: int) -> None:
        """Have the provider start or kill workers towards ``target`` now (an intent is recorded first)."""
        self.lifecycle.apply(check_count(target, "target"))

    def wait_for_workers(self, number: int | None = None, timeout: float = 300.0) -> WorkerNumbers:
        """Block until ``number`` workers (default: the expected number) run."""
        wanted = self.expected_workers if number is None else check_count(number, "number")
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

        adaptive = Adaptive(self, minimum, maximum, interval=interval, wait_count=wait_count)
        self.lifecycle.add_loop("adaptive", adaptive)
        return adaptive

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

    def save_record(self) -> None:
        """Record the cluster's spec in the state store (while it starts or runs; nothing without a store)."""
        self.lifecycle.save_record()
