"""The Dask side of :class:`~dockerparallel.DockerCluster`: a ``distributed.deploy.Cluster``.

It follows the scheduler (``scheduler_info``, the notebook widget,
``wait_for_workers`` counted by the scheduler), runs sync or ``async`` (the
blocking lifecycle calls run off the event loop) and gathers the containers'
logs from the provider. Every change of workers still goes through the
cluster's lifecycle.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from distributed.core import Status, rpc
from distributed.deploy import Cluster
from distributed.utils import Log, Logs

from ._validation import check_count, check_seconds
from ._wait import wait_until

if TYPE_CHECKING:
    from ._lifecycle import Lifecycle
    from .provider import WorkerNumbers

logger = logging.getLogger("dockerparallel.cluster")

#: Seconds the cluster object tries to follow its scheduler before it goes on without (clients still connect).
CONNECT_TIMEOUT = 10.0


async def _answers(address: str, timeout: float = 2.0) -> bool:
    """Whether something accepts TCP connections at ``address`` (``tcp://host:port``): a quick look first."""
    host, _, port = address.partition("://")[2].rpartition(":")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host.strip("[]"), int(port)), timeout)
    except (OSError, ValueError, asyncio.TimeoutError):
        return False
    writer.close()
    return True


class DaskClusterManager(Cluster):
    """What every Dask cluster manager offers, on top of a cluster's lifecycle (a base of DockerCluster)."""

    lifecycle: Lifecycle
    _dp_asynchronous: bool

    # provided by the subclass
    name: Any
    security: Any
    worker_container: Any
    provider: Any
    verbose: Any
    expected_workers: Any

    def get_worker_numbers(self) -> WorkerNumbers:
        raise NotImplementedError

    def server_address(self) -> Any:
        raise NotImplementedError

    def __await__(self) -> Any:
        async def start() -> DaskClusterManager:
            await self._start()
            return self

        return start().__await__()

    async def __aenter__(self) -> DaskClusterManager:
        return await self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._close()

    # -- the connection to the scheduler ----------------------------------------------------

    def _speaks_dask(self) -> bool:
        return hasattr(self.worker_container, "scheduler_address")

    async def _start(self) -> None:
        """Start the cluster (off the event loop) and connect to its scheduler."""
        if not self.lifecycle.running:
            await asyncio.get_running_loop().run_in_executor(None, self.lifecycle.start, 300.0)
        if self.scheduler_comm is None:
            await self._connect()
        self.lifecycle.start_loops()

    async def _connect(self) -> None:
        """Follow the scheduler's workers (``scheduler_info``); a cluster without Dask only runs."""
        if not self._speaks_dask():
            self.status = Status.running
            return
        address = await asyncio.get_running_loop().run_in_executor(None, lambda: self.scheduler_address)
        if not await _answers(address):
            logger.warning("%s: nothing answers at %s; not following the scheduler", self.name, address)
            self.status = Status.running
            return
        args = self.security.get_connection_args("client") if self.security is not None else {}
        self.scheduler_comm = rpc(address, connection_args=args)
        try:
            await asyncio.wait_for(super()._start(), CONNECT_TIMEOUT)
        except Exception as exc:  # the cluster runs; only Dask's view of it is missing
            logger.warning("%s: cannot follow the scheduler at %s (%s)", self.name, address, exc)
            await self.scheduler_comm.close_rpc()
            self.scheduler_comm = None
            self.status = Status.running

    def _connect_sync(self) -> None:
        if self._dp_asynchronous or self.scheduler_comm is not None:
            return
        if not self._speaks_dask():
            self.status = Status.running
            return
        if not getattr(self, "_dp_loop_started", False):
            self._loop_runner.start()
            self._dp_loop_started = True
        self.sync(self._connect)

    def _disconnect_sync(self) -> None:
        if self._dp_asynchronous or self.scheduler_comm is None:
            self.status = Status.closed
            return
        self.sync(super()._close)
        self.scheduler_comm = None
        if getattr(self, "_dp_loop_started", False):
            self._loop_runner.stop()
            self._dp_loop_started = False

    async def _close(self) -> None:
        """Stop the cluster (off the event loop) and close the connection to the scheduler."""
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.lifecycle.stop)
        finally:
            if self.scheduler_comm is not None:
                await super()._close()
                self.scheduler_comm = None
            self.status = Status.closed

    def wait_for_workers(self, n_workers: int | None = None, timeout: float | str | None = None) -> Any:
        """Block until ``n_workers`` workers (default: the expected number) run; Dask's signature.

        Workers are counted by the scheduler (those connected and running)
        when this object follows it, else by the provider. ``timeout`` is
        seconds or a Dask time string ("30s"); ``None`` waits as long as it
        takes. Returns the :class:`WorkerNumbers` seen last (an awaitable
        with ``asynchronous=True``).
        """
        wanted = self.expected_workers if n_workers is None else check_count(n_workers, "n_workers")
        seconds = None if timeout is None else check_seconds(timeout, "timeout")
        if self.scheduler_comm is not None:
            if self._dp_asynchronous:
                return self.sync(self._wait_for_workers, wanted, timeout=seconds)
            self.sync(self._wait_for_workers, wanted, timeout=seconds)
            return self.get_worker_numbers()
        numbers: list[WorkerNumbers] = []

        def enough() -> bool:
            numbers.append(self.get_worker_numbers())
            return numbers[-1].running >= wanted

        wait_until(enough, 1e9 if seconds is None else seconds, f"{wanted} running worker(s) in cluster {self.name!r}")
        return numbers[-1]

    # -- Dask's views: notebook, logs ----------------------------------------------------------

    def _repr_html_(self, cluster_status: str | None = None) -> str:
        numbers = self.lifecycle.expected
        status = (f"<p>Provider: {type(self.provider).__name__} &middot; state: {self.lifecycle.state.value} "
                  f"&middot; expected workers: {numbers}</p>")
        return str(super()._repr_html_(cluster_status=(cluster_status or "") + status))

    def _scaling_status(self) -> str:
        mode = "Adaptive" if self.lifecycle.loop("adaptive") is not None or self._adaptive else "Manual"
        seen = len(self.scheduler_info["workers"])
        return (f'<table><tr><td style="text-align: left;">Scaling mode: {mode}</td></tr>'
                f'<tr><td style="text-align: left;">Workers: {seen} / {self.expected_workers}</td></tr></table>')

    def get_logs(self, cluster: bool = True, scheduler: bool = True, workers: Any = True) -> Any:
        """What the server and the workers printed, from the provider (local files, ``docker logs``, CloudWatch).

        Returns a ``distributed`` ``Logs`` mapping: ``"Cluster"`` (this
        object's messages), ``"server"`` and ``"worker <handle>"`` (an
        awaitable with ``asynchronous=True``). ``workers`` may be a list of
        strings: only handles containing one of them are kept.
        """
        if self._dp_asynchronous:
            return self._get_logs(cluster, scheduler, workers)
        return self._collect_logs(cluster, scheduler, workers)

    async def _get_logs(self, cluster: bool = True, scheduler: bool = True, workers: Any = True) -> Logs:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._collect_logs, cluster, scheduler, workers)

    def _collect_logs(self, cluster: bool, scheduler: bool, workers: Any) -> Logs:
        logs = Logs()
        if cluster:
            logs["Cluster"] = Log("\n".join(str(line) for _, line in self._cluster_manager_logs))
        texts = self.lifecycle.call("get_docker_logs", self.provider.get_docker_logs, self, self.verbose) or {}
        for key, text in texts.items():
            is_server = key == "server"
            wanted = scheduler if is_server else workers is True or (
                bool(workers) and not isinstance(workers, bool) and any(str(w) in key for w in workers))
            if wanted:
                logs[key] = Log(str(text))
        return logs

    def logs(self, cluster: bool = True, scheduler: bool = True, workers: Any = True) -> Any:
        """Alias of :meth:`get_logs`."""
        return self.get_logs(cluster, scheduler, workers)

