"""The server of one cluster: its status, its address (cached) and starting, stopping and waiting for it."""

from __future__ import annotations

import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from ._errors import ClusterStateError, DockerParallelError, ProviderError
from ._wait import wait_until
from .provider import ClusterView, ServerAddress

if TYPE_CHECKING:
    from ._records import ClusterConfig

_SERVER_STATUSES = frozenset({"initializing", "running", "stopped"})


class ServerControl:
    """The provider's server methods for one cluster, checked, each call with the cluster's deadline.

    Parameters
    ----------
    config : ClusterConfig
        The cluster's parts (its provider, server container and hardware).
    call : callable
        ``call(method, func, *args)``: a provider call with a deadline.
    view : callable
        Returns what the provider is handed as the cluster.
    lock : threading.RLock
        The lifecycle's lock, which guards the cached address.
    """

    def __init__(self, config: ClusterConfig, call: Callable[..., Any], view: Callable[[], ClusterView],
                 lock: threading.RLock) -> None:
        self.config, self.call, self.view, self.lock = config, call, view, lock
        self._address: ServerAddress | None = None

    def status(self) -> str:
        """``"initializing"``, ``"running"`` or ``"stopped"``, checked."""
        provider = self.config.provider
        status = self.call("get_server_status", provider.get_server_status, self.view(), self.config.verbose)
        status = getattr(status, "value", status)
        if status not in _SERVER_STATUSES:
            raise ProviderError(provider, "get_server_status",
                                f"returned {status!r}; expected 'initializing', 'running' or 'stopped'")
        return str(status)

    def address(self) -> ServerAddress:
        """Where the server listens (cached until the server restarts)."""
        with self.lock:
            if self._address is None:
                provider = self.config.provider
                answer = self.call("get_docker_server_ip", provider.get_docker_server_ip, self.view(),
                                   self.config.verbose)
                try:
                    self._address = ServerAddress.coerce(answer)
                except (TypeError, KeyError, ValueError) as exc:
                    raise ProviderError(provider, "get_docker_server_ip",
                                        f"returned {type(answer).__name__}, not a ServerAddress ({exc})") from None
            return self._address

    def forget_address(self) -> None:
        """Ask the provider again next time (the server restarted, or another one was adopted)."""
        with self.lock:
            self._address = None

    def address_known(self, timeout: float) -> bool:
        """Wait until the provider knows the server's address (before it runs); ``False`` if it stops or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.status() == "stopped":
                return False
            try:
                self.address()
                return True
            except DockerParallelError:
                time.sleep(0.25)
        return False

    def wait(self, timeout: float) -> None:
        """Block until the server runs; raise if it stops or ``timeout`` passes."""
        name = self.config.name

        def running() -> bool:
            status = self.status()
            if status == "stopped":
                raise ClusterStateError(f"the server of cluster {name!r} stopped while starting")
            return status == "running"

        wait_until(running, timeout, f"the server of cluster {name!r}", poll=0.02, max_poll=0.25)

    def start(self) -> None:
        """Start the server container."""
        config = self.config
        self.forget_address()
        self.call("run_docker_server", config.provider.run_docker_server, self.view(), config.server_container,
                  config.server_hardware, config.verbose)

    def stop(self) -> None:
        """Stop the server container."""
        self.forget_address()
        self.call("stop_docker_server", self.config.provider.stop_docker_server, self.view(), self.config.verbose)


class ExternalServer:
    """A server this library did not start (the R original's ``CloudPrivateServer``): never started or stopped.

    It reads as running while it accepts connections at its private address
    (``"initializing"`` otherwise: it may be on its way up).
    """

    def __init__(self, config: ClusterConfig, address: ServerAddress) -> None:
        self.config, self._address = config, address

    def status(self) -> str:
        """``"running"`` while the server accepts connections, else ``"initializing"``."""
        try:
            with socket.create_connection((self._address.private_ip, self._address.private_port), timeout=1.0):
                return "running"
        except OSError:
            return "initializing"

    def address(self) -> ServerAddress:
        """The address given."""
        return self._address

    def forget_address(self) -> None:
        """Nothing to forget: the address was given."""

    def address_known(self, timeout: float) -> bool:
        """Always: the address was given."""
        return True

    def wait(self, timeout: float) -> None:
        """Block until the server accepts connections."""
        where = f"{self._address.private_ip}:{self._address.private_port}"
        wait_until(lambda: self.status() == "running", timeout, f"the server at {where} to accept connections",
                   poll=0.05, max_poll=1.0)

    def start(self) -> None:
        """Nothing: this server runs elsewhere."""

    def stop(self) -> None:
        """Nothing: this server runs elsewhere, and keeps running."""
