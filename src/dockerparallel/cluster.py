"""`DockerCluster`: the object a user holds."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable

from distributed.core import Status

from ._errors import ClusterStateError
from ._validation import check_count, check_name, check_verbose
from .container import DockerContainer, DockerHardware
from .provider import CloudProvider, ServerAddress, WorkerNumbers

if TYPE_CHECKING:
    from distributed import Client

    from .backends.dask import Adaptive

logger = logging.getLogger("dockerparallel.cluster")


def _check_hardware(value: DockerHardware | None, name: str) -> DockerHardware:
    if value is None:
        return DockerHardware()
    if not isinstance(value, DockerHardware):
        raise TypeError(f"{name} must be a DockerHardware, got {type(value).__name__}")
    return value


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.25
) -> None:
    """Call ``condition`` until it is true; raise ``TimeoutError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)


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
        self.worker_container = worker_container
        self.server_container = server_container or worker_container.server_container()
        self._address: ServerAddress | None = None
        self._lock = threading.RLock()
        self._adaptive: Adaptive | None = None
        #: Dask's view of the cluster's state, read by ``distributed.Client``.
        self.status = Status.created
        #: TLS settings a ``distributed.Client`` uses (``None``: plain TCP).
        self.security: Any = None

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
        return str(self.provider.get_server_status(self, self.verbose))

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
                self._address = ServerAddress.coerce(self.provider.get_docker_server_ip(self, self.verbose))
            return self._address

    # -- cluster ------------------------------------------------------------------

    def start_cluster(self, timeout: float = 300.0) -> None:
        """Prepare the provider, start the server, wait for it, then start the expected workers."""
        with self._lock:
            self.provider.initialize_cloud_provider(self, self.verbose)
            if self.server_status() == "stopped":
                self.start_server()
            self.wait_for_server(timeout)
            self.status = Status.running
            self._apply_worker_number()

    def stop_cluster(self) -> None:
        """Kill every worker and stop the server. The expected number is kept."""
        with self._lock:
            self.status = Status.closing
            if self._adaptive is not None:
                self._adaptive.stop()
                self._adaptive = None
            self.provider.set_docker_worker_number(
                self, self.worker_container, self.worker_hardware, 0, self.verbose
            )
            self.stop_server()
            self.provider.cleanup_docker_cluster(self, deep=False, verbose=self.verbose)
            self.status = Status.closed

    def close(self) -> None:
        """Stop the cluster (the name ``distributed`` uses)."""
        self.stop_cluster()

    def cluster_exists(self) -> bool:
        """Whether a cluster with this name runs on the provider."""
        return bool(self.provider.docker_cluster_exists(self, self.verbose))

    def reconnect(self) -> None:
        """Adopt the server and workers of the running cluster with this name."""
        with self._lock:
            self._address = None
            self.provider.reconnect_docker_cluster(self, self.verbose)
            if self.is_server_running():
                self.status = Status.running

    def cleanup(self, deep: bool = False) -> None:
        """Release what the provider holds; ``deep=True`` removes everything labelled with the name."""
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
        self.provider.set_docker_worker_number(
            self, self.configured_worker_container(), self.worker_hardware, self._expected, self.verbose
        )
