"""`DockerCluster`: the object a user holds.

It is plain data (a :class:`~dockerparallel._records.ClusterConfig`) plus a
:class:`~dockerparallel._lifecycle.Lifecycle` through which every change of
workers goes.
"""

from __future__ import annotations

import logging
import math
import uuid
import weakref
from types import TracebackType
from typing import TYPE_CHECKING, Any, Mapping

from ._errors import DockerParallelError
from ._config import cluster_defaults
from ._cluster_parts import (
    HybridMethod, check_client_address, seconds_or_config, check_hardware, check_parts, check_state, external_server, secure,
    with_idle_timeout,
)
from ._dask_cluster import DaskClusterManager
from ._lifecycle import Lifecycle
from ._records import ClusterConfig, ReconnectReport, config_from_dict
from ._validation import check_count, check_flag, check_name, check_seconds, check_verbose
from .backends.dask import secure_container
from .container import DockerContainer, DockerHardware
from .controller import Controller
from .provider import CloudProvider, ServerAddress, WorkerNumbers
from .state import StateStore

if TYPE_CHECKING:
    from distributed import Client


__all__ = ["DockerCluster", "ReconnectReport"]

logger = logging.getLogger("dockerparallel.cluster")


class DockerCluster(DaskClusterManager):
    """A server container plus worker containers run by a provider; a Dask cluster manager.

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
    asynchronous : bool
        Use the cluster from ``async`` code: ``await cluster`` or ``async with``
        starts it, ``await cluster.close()`` stops it (Dask's convention).
    loop : tornado.ioloop.IOLoop, optional
        The event loop, as for every Dask cluster manager.
    idle_timeout : float or str, optional
        Stop the whole cluster, workers included, once its scheduler has been
        idle (no task) this long: seconds or a Dask time string; ``0`` turns
        it off. Default: ``dockerparallel.idle-timeout.<provider>`` (1 hour on
        Docker and ECS, off on local processes). Applies to a Dask worker
        container whose server container is derived from it.
    server : ServerAddress or str, optional
        A scheduler this library did not start (the R original's
        ``CloudPrivateServer``), as ``"tls://10.0.0.5:8786"`` or a
        :class:`ServerAddress`: workers join it, and it is never started or
        stopped. A ``tls://`` one needs ``security=`` (a
        ``distributed.Security`` with its certificates).
    client_address : {"auto", "public", "private"}
        Which address of the server the client uses: the public one when it
        exists (``"auto"``), or the private one when the client shares the
        server's network (``"private"``, the R original's ``serverClientSameLAN``).
    stop_on_exit : bool
        Stop the cluster when this object is collected or the Python process
        exits (the R original's ``stopClusterOnExit``). Off by default: a
        cluster is meant to outlive the process that started it. Reconnecting
        turns it off.
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
        worker_number: int | None = None,
        worker_hardware: DockerHardware | None = None,
        server_hardware: DockerHardware | None = None,
        name: str | None = None,
        verbose: int | None = None,
        security: Any = None,
        state: StateStore | bool | None = None,
        auto_heal: bool | None = None,
        heal_interval: float | str | None = None,
        init_timeout: float | str | None = None,
        call_timeout: float | str | None = None,
        idle_timeout: float | str | None = None,
        server: ServerAddress | str | Mapping[str, Any] | None = None,
        client_address: str = "auto",
        stop_on_exit: bool = False,
        asynchronous: bool = False,
        loop: Any = None,
    ) -> None:
        check_parts(provider, worker_container, server_container)
        given = {"worker_number": worker_number, "worker_hardware": worker_hardware, "name": name,
                 "server_hardware": server_hardware, "verbose": verbose, "security": security,
                 "auto_heal": auto_heal, "heal_interval": heal_interval, "init_timeout": init_timeout,
                 "call_timeout": call_timeout}
        options = {**cluster_defaults(), **{k: v for k, v in given.items() if v is not None}}
        expected = check_count(options["worker_number"], "worker_number")
        worker_hardware = check_hardware(options["worker_hardware"], "worker_hardware")
        server_hardware = check_hardware(options["server_hardware"], "server_hardware")
        name = check_name(options["name"]) if options["name"] is not None else self.new_name()
        verbose = check_verbose(options["verbose"])
        store = check_state(state)
        auto_heal = check_flag(options["auto_heal"], "auto_heal")
        timeout = options["call_timeout"]
        timeout = None if timeout is None else check_seconds(timeout, "call_timeout", allow_zero=False)
        worker_container = with_idle_timeout(worker_container, idle_timeout, provider)
        external, worker_container, options["security"] = external_server(server, worker_container, security)
        security, worker_container = secure(provider, worker_container, options["security"])
        if server_container is not None and security is not None:
            server_container = secure_container(server_container, security)
        config = ClusterConfig(name, provider, worker_container,
                               server_container or worker_container.server_container(),
                               worker_hardware, server_hardware, security, verbose,
                               external_server=external, client_address=check_client_address(client_address))
        self._setup(config, store, expected, timeout, asynchronous, loop)
        if auto_heal:
            controller = Controller(self, options["heal_interval"] or 5.0, options["init_timeout"])
            self.lifecycle.add_loop("controller", controller)
        self.stop_on_exit = check_flag(stop_on_exit, "stop_on_exit")

    def _setup(self, config: ClusterConfig, store: StateStore | None, expected: int,
               call_timeout: float | None, asynchronous: bool = False, loop: Any = None) -> None:
        self.config = config
        self._dp_asynchronous = check_flag(asynchronous, "asynchronous")
        super().__init__(asynchronous=asynchronous, loop=loop, quiet=True, name=config.name)
        self.store = store
        #: The one owner of this cluster's state and workers.
        self.lifecycle = Lifecycle(config, self, store, expected)
        if call_timeout is not None:
            self.lifecycle.call_timeout = call_timeout
            if hasattr(config.provider, "worker_manager"):
                config.provider.call_timeout = call_timeout  # type: ignore[attr-defined]
        #: What the last ``DockerCluster.reconnect(name)`` found.
        self.last_reconnect: ReconnectReport | None = None
        self._exit_stop: weakref.finalize | None = None

    @property
    def stop_on_exit(self) -> bool:
        """Whether the cluster stops when this object is collected or the process exits (the R original's ``stopClusterOnExit``)."""
        return self._exit_stop is not None and self._exit_stop.alive

    @stop_on_exit.setter
    def stop_on_exit(self, value: bool) -> None:
        if self._exit_stop is not None:
            self._exit_stop.detach()
            self._exit_stop = None
        if check_flag(value, "stop_on_exit"):
            self._exit_stop = weakref.finalize(self, self.lifecycle.stop_quietly)

    @classmethod
    def _from_config(cls, config: ClusterConfig, store: StateStore, expected: int,
                     asynchronous: bool = False) -> DockerCluster:
        """A cluster object for recorded parts (their containers already carry the TLS settings)."""
        cluster = cls.__new__(cls)
        cluster._setup(config, store, expected, None, asynchronous)
        return cluster

    @classmethod
    def from_name(cls, name: str) -> DockerCluster:
        """The running cluster recorded as ``name`` (for dask-ctl: ``DockerCluster.reconnect(name)``)."""
        return cls.reconnect(name)  # type: ignore[no-any-return]

    def __del__(self, _warn: Any = None) -> None:
        """Nothing: a cluster outlives the object (and the process) that started it."""

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
        if self._dp_asynchronous:
            raise TypeError("asynchronous=True: use 'async with DockerCluster(...)'")
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

    @name.setter
    def name(self, value: str) -> None:
        if value != self.config.name:
            raise AttributeError("name: a cluster's name cannot change; build a new cluster object")

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
        check_parts(self.provider, container, None)
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

    def wait_for_server(self, timeout: float | str | None = None) -> None:
        """Block until the server runs; raise if it stops or ``timeout`` passes (default: ``dockerparallel.start-timeout``)."""
        self.lifecycle.wait_for_server(seconds_or_config(timeout, "timeout", "start-timeout"))

    def server_address(self) -> ServerAddress:
        """Where the server listens (cached until the server restarts)."""
        return self.lifecycle.server_address()

    # -- cluster ------------------------------------------------------------------

    def start_cluster(self, timeout: float | str | None = None) -> None:
        """Claim the name, prepare the provider, start the server, wait for it, then start the expected workers.

        Raises
        ------
        ClusterExistsError
            When a cluster of this name is live (recorded by another cluster
            object, or running on the provider); reconnect to it instead.
        """
        seconds = seconds_or_config(timeout, "timeout", "start-timeout")
        self.lifecycle.start(seconds)
        self._connect_sync()
        self.lifecycle.start_loops()  # adaptive scaling needs the event loop the connection started

    def stop_cluster(self) -> None:
        """Kill every worker (those other processes started too) and stop the server.

        Background loops end first. Kills that fail are retried; workers that
        survive them raise :class:`~dockerparallel.StopError` listing their
        handles, and the record is kept so that a later stop can retry. The
        expected number is kept.
        """
        try:
            self.lifecycle.stop()
        finally:
            self._disconnect_sync()

    def close(self, timeout: float | None = None) -> Any:
        """Stop the cluster (Dask's name); with ``asynchronous=True``, an awaitable."""
        if self._dp_asynchronous:
            return super().close(timeout)
        self.stop_cluster()
        return None

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
        self.stop_on_exit = False  # as in the R original: a reconnected cluster outlives this process
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

    reconnect = HybridMethod(_reconnect_by_name, _reconnect_instance)

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

    def scale(self, n: int | None = None, memory: str | int | None = None, cores: float | None = None) -> None:
        """Ask for ``n`` workers, or enough workers for ``memory`` (a Dask size) or ``cores``, as in ``distributed``."""
        if n is None:
            n = self._workers_for(memory, cores)
        self.set_worker_number(n)

    def _workers_for(self, memory: str | int | None, cores: float | None) -> int:
        from dask.utils import parse_bytes

        hardware, wanted = self.worker_hardware, 0
        if memory is not None:
            wanted = math.ceil(parse_bytes(memory) / (hardware.memory * 2**20))
        if cores is not None:
            wanted = max(wanted, math.ceil(float(cores) / hardware.cores))
        return wanted

    def adapt(self, Adaptive: Any = None, **kwargs: Any) -> Any:
        """Let the Dask scheduler's load decide the worker number (``minimum``, ``maximum``, ``interval``, ...).

        Scale-down retires Dask workers gracefully: their results move to other
        workers before their containers go away.
        """
        from .backends.dask import Adaptive as DefaultAdaptive

        adaptive = (Adaptive or DefaultAdaptive)(self, **kwargs)
        self.lifecycle.add_loop("adaptive", adaptive)
        return adaptive

    # -- client ------------------------------------------------------------------------

    @property
    def scheduler_address(self) -> str:
        """The address a ``distributed.Client`` connects to."""
        address = self.server_address().for_client(self.config.client_address)
        render = getattr(self.worker_container, "scheduler_address", None)
        return render(address) if render else f"tcp://{address.client_ip}:{address.client_port}"

    @property
    def dashboard_link(self) -> str:
        """The link to the server's dashboard ('' when the backend has none or the server is not up)."""
        render = getattr(self.worker_container, "dashboard_link", None)
        if render is None or not self.lifecycle.running:
            return ""
        try:
            return str(render(self.server_address().for_client(self.config.client_address)))
        except DockerParallelError:
            return ""

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
