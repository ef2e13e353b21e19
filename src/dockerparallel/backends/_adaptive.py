"""Adaptive scaling: Dask's ``Adaptive``, whose scale-down retires whole containers.

:class:`Adaptive` is a :class:`distributed.deploy.adaptive.Adaptive`: it
takes Dask's arguments, defaults and ``distributed.adaptive.*`` config keys
(``interval``, ``minimum``, ``maximum``, ``wait-count``, ``target-duration``),
runs as a periodic callback on the cluster's event loop, and asks the
scheduler for its ``adaptive_target``. Two things differ:

- scale-down asks the scheduler's ``workers_to_close`` to choose *groups*
  keyed by container (:func:`container_key`), retires the chosen workers
  through the scheduler (their results move first) and lowers the cluster's
  expected number by as many workers, all inside the cluster's lifecycle;
- every change of workers is a blocking lifecycle call, run in a private
  worker thread, never on the event loop.

What it needs from the cluster is :class:`AdaptiveCluster`:

- ``loop``, ``status`` and ``scheduler_comm``, as in every
  ``distributed.deploy.Cluster`` (the event loop it runs on; it adapts while
  ``status`` is ``Status.running``, waits while the cluster starts and stops
  once it closes; an rpc to the scheduler: ``adaptive_target``,
  ``workers_to_close``, ``retire_workers`` and, with ``minimum_memory``,
  ``identity``);
- ``expected_workers``: how many workers the cluster should have;
- ``set_worker_number(n)``: scale up (blocking);
- ``lifecycle.retire(expected, action, timeout)``: under the cluster's lock,
  lower the expected number to ``expected`` and call ``action()``, which
  retires the chosen workers; kill what is above ``expected`` if their
  containers have not exited after ``timeout`` seconds (blocking).

``start()`` and ``stop(timeout=...)`` make it one of the lifecycle's
background loops: off the event loop, ``stop`` waits for a running
cluster call to end.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import math
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Callable, Hashable, Iterable, Protocol, cast

import dask.config
from dask.utils import parse_bytes, parse_timedelta
from distributed.core import Status
from distributed.deploy.adaptive import Adaptive as DaskAdaptive
from tornado.ioloop import PeriodicCallback

from .._validation import check_count
from ._names import WORKER_NAME_PREFIX, container_token

if TYPE_CHECKING:
    from tornado.ioloop import IOLoop

logger = logging.getLogger("dockerparallel.backends.adaptive")

#: Config key of ``minimum_memory`` (dockerparallel's, beside Dask's ``distributed.adaptive.*``).
MINIMUM_MEMORY_KEY = "distributed.adaptive.minimum-memory"
#: Statuses of a cluster after which adapting ends.
_CLOSED = frozenset({Status.closing, Status.closed, Status.failed, Status.closing_gracefully})


class _Retiring(Protocol):
    """What adaptive scaling asks of a cluster's lifecycle."""

    def retire(self, expected: int, action: Callable[[], None], timeout: float = 30.0) -> None: ...


class AdaptiveCluster(Protocol):
    """What :class:`Adaptive` uses of a cluster (a :class:`~dockerparallel.DockerCluster` is one)."""

    @property
    def loop(self) -> IOLoop | None: ...

    @property
    def status(self) -> Status: ...

    @property
    def scheduler_comm(self) -> Any: ...

    @property
    def lifecycle(self) -> _Retiring: ...

    @property
    def expected_workers(self) -> int: ...

    def set_worker_number(self, worker_number: int) -> None: ...


# -- options --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdaptiveOptions:
    """Checked adaptive options, in seconds and bytes."""

    interval: float
    minimum: int
    maximum: int | float
    wait_count: int
    target_duration: float
    minimum_memory: int


def _seconds(value: Any, name: str, allow_zero: bool = False) -> float:
    """``value`` (seconds, a ``timedelta`` or a Dask time string such as ``"500ms"``) in seconds."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a duration, not a bool ({value!r})")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        try:
            seconds = float(parse_timedelta(value, "seconds"))  # type: ignore[arg-type]
        except (TypeError, ValueError, KeyError) as exc:
            raise ValueError(f"{name}: cannot read {value!r} as a duration ({exc})") from None
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite duration {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return seconds


def _bytes(value: Any, name: str) -> int:
    """``value`` (bytes or a Dask size such as ``"1 GiB"``) in bytes."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a size, not a bool ({value!r})")
    if isinstance(value, str):
        try:
            return int(parse_bytes(value))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name}: cannot read {value!r} as a size ({exc})") from None
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a size >= 0 (bytes or a string like '1 GiB'), got {value!r}")
    return int(value)


def _maximum(value: Any, minimum: int) -> int | float:
    """``value`` as an ``int`` or ``math.inf``, at least ``minimum``."""
    if isinstance(value, float) and math.isinf(value) and value > 0:
        return math.inf
    maximum = check_count(value, "maximum")
    if maximum < minimum:
        raise ValueError(f"maximum ({maximum}) must be at least minimum ({minimum})")
    return maximum


def adaptive_options(interval: str | float | timedelta | None = None, minimum: int | None = None,
                     maximum: int | float | None = None, wait_count: int | None = None,
                     target_duration: str | float | timedelta | None = None,
                     minimum_memory: str | int | None = None) -> AdaptiveOptions:
    """Check adaptive options; each one left ``None`` comes from the Dask config.

    The config keys are Dask's ``distributed.adaptive.interval``,
    ``minimum``, ``maximum``, ``wait-count`` and ``target-duration``, and
    :data:`MINIMUM_MEMORY_KEY` (default 0). A cluster may call this before
    stopping its running :class:`Adaptive`, so that bad input changes nothing.

    Raises
    ------
    ValueError, TypeError
        Naming the bad argument.
    """

    def config(key: str, value: Any) -> Any:
        return dask.config.get(f"distributed.adaptive.{key}") if value is None else value

    low = check_count(config("minimum", minimum), "minimum")
    memory = dask.config.get(MINIMUM_MEMORY_KEY, 0) if minimum_memory is None else minimum_memory
    return AdaptiveOptions(
        interval=_seconds(config("interval", interval), "interval", allow_zero=True),
        minimum=low,
        maximum=_maximum(config("maximum", maximum), low),
        wait_count=check_count(config("wait-count", wait_count), "wait_count", minimum=1),
        target_duration=_seconds(config("target-duration", target_duration), "target_duration"),
        minimum_memory=_bytes(memory or 0, "minimum_memory"),
    )


def container_key(prefix: str = WORKER_NAME_PREFIX, token_length: int = 8) -> Callable[[Any], Hashable]:
    """The ``worker_key`` that groups the Dask workers of one container: a WorkerState -> its container token.

    Workers named ``dp-<token>`` or ``dp-<token>-<i>`` map to ``dp-<token>``
    (as :func:`~dockerparallel.backends.dask.container_token` does); any other
    worker is a group of its own (its address). The function refers to no
    module, so it is pickled by value and a scheduler without dockerparallel
    installed (the plain Dask image) can call it.
    """
    end = len(prefix) + token_length

    def key(ws: Any) -> Hashable:
        name = ws.name
        if isinstance(name, str) and name.startswith(prefix):
            return name[:end]
        return ws.address

    return key


def _ticker(ref: weakref.ref[Adaptive]) -> Callable[[], Any]:
    """The periodic callback of an :class:`Adaptive` (a weak reference, as Dask's)."""

    async def tick() -> None:
        adaptive = ref()
        if adaptive is not None and adaptive.state == "running":
            await adaptive.tick()

    return tick


# -- the adaptive ---------------------------------------------------------------------------------


class Adaptive(DaskAdaptive):
    """Follows the Dask scheduler's ``adaptive_target`` between ``minimum`` and ``maximum``, whole containers at a time.

    Parameters
    ----------
    cluster : AdaptiveCluster
        The cluster (a :class:`~dockerparallel.DockerCluster`).
    minimum, maximum : int, optional
        Bounds of the worker number (``maximum`` may be ``math.inf``).
    interval : str, float or timedelta, optional
        Time between checks (``"500ms"``, ``0.5``); 0 adapts only when
        :meth:`adapt` is awaited.
    wait_count : int, optional
        Consecutive checks that must suggest closing a container before it is retired.
    target_duration : str, float or timedelta, optional
        How long a computation should take; shorter scales up harder.
    worker_key : callable, optional
        ``WorkerState -> group`` for ``workers_to_close``; default
        :func:`container_key`. A key of your own must keep each container in one group.
    minimum_memory : str or int, optional
        Worker memory to keep (``"1 GiB"``): the target is at least the number
        of workers, of the current average memory limit, that hold it.
    **kwargs
        Passed to the scheduler's ``workers_to_close`` (e.g. ``memory_ratio``).

    Notes
    -----
    Each option left ``None`` comes from the ``distributed.adaptive.*`` config
    (:func:`adaptive_options`). ``history`` holds ``(time, target)`` of every
    change of the expected number.
    """

    #: Seconds retired workers' containers get to exit before the lifecycle kills them.
    retire_timeout: float = 30.0
    #: Seconds the scheduler's ``retire_workers`` may take (results move to other workers).
    retire_call_timeout: float = 300.0

    def __init__(self, cluster: AdaptiveCluster, minimum: int | None = None, maximum: int | float | None = None, *,
                 interval: str | float | timedelta | None = None, wait_count: int | None = None,
                 target_duration: str | float | timedelta | None = None,
                 worker_key: Callable[[Any], Hashable] | None = None,
                 minimum_memory: str | int | None = None, **kwargs: Any) -> None:
        options = adaptive_options(interval, minimum, maximum, wait_count, target_duration, minimum_memory)
        self._gate = threading.Lock()
        self._stopped = False
        self._inflight: concurrent.futures.Future[Any] | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._aio_loop: asyncio.AbstractEventLoop | None = None
        self._last_target: int | None = None
        self._start_scheduled = False
        self._close_rounds: dict[Hashable, int] = {}
        self.minimum_memory = options.minimum_memory
        self.history: deque[tuple[float, int]] = deque(
            maxlen=dask.config.get("distributed.admin.low-level-log-length"))
        # interval 0: Dask's own periodic callback would stop for good while the cluster starts,
        # and Dask's constructor needs a running event loop; start() arms ours, or waits for the loop.
        super().__init__(cast(Any, cluster), interval=0, minimum=options.minimum,
                         maximum=options.maximum, wait_count=options.wait_count,
                         target_duration=options.target_duration, worker_key=worker_key or container_key(),
                         **kwargs)
        self.interval = options.interval
        if self.interval:
            self.state = "stopped"
            self.start()

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} minimum={self.minimum} maximum={self.maximum} "
                f"interval={self.interval:g}s state={self.state}>")

    @property
    def _cluster(self) -> AdaptiveCluster:
        return cast(AdaptiveCluster, self.cluster)

    # -- Dask's state: the cluster tracks a number of workers, not names -------------------------------

    @property
    def plan(self) -> set[Any]:
        """One placeholder per expected worker (only the size is meaningful)."""
        return set(range(self._cluster.expected_workers))

    @property
    def requested(self) -> set[Any]:
        """As :attr:`plan`: the lifecycle asks the provider for every expected worker."""
        return self.plan

    @property
    def observed(self) -> set[Any]:
        """Names of the workers the scheduler knows (from the cluster's ``scheduler_info``)."""
        info = getattr(self.cluster, "scheduler_info", None) or {}
        return {worker.get("name") for worker in info.get("workers", {}).values()}

    # -- running and stopping ------------------------------------------------------------------------------

    def _start(self) -> None:
        self._start_scheduled = False
        self._aio_loop = asyncio.get_running_loop()
        super()._start()

    def start(self) -> None:
        """Adapt every ``interval`` (again, after :meth:`stop`); idempotent.

        The constructor calls it, and so may the cluster's lifecycle when the
        cluster starts. While the cluster's event loop does not run (a
        synchronous cluster not connected yet), the adaptive stays
        ``"starting"`` until ``start()`` is called again once it runs.
        """
        with self._gate:
            self._stopped = False
        if not self.interval or self.state == "running" or self._start_scheduled:
            return
        self.state = "starting"
        try:
            loop = self.loop
        except RuntimeError:
            logger.debug("adaptive: the cluster's event loop does not run yet; start() again once it does")
            return
        self.periodic_callback = PeriodicCallback(_ticker(weakref.ref(self)), self.interval * 1000)
        self._start_scheduled = True
        loop.add_callback(self._start)

    def stop(self, reason: str = "unknown", timeout: float | None = 120.0) -> None:
        """Stop adapting.

        Off the event loop, also wait up to ``timeout`` seconds (``None``: no
        limit; 0: no wait) for a running cluster call to end.
        """
        with self._gate:
            self._stopped = True
            inflight, executor, self._executor = self._inflight, self._executor, None
        self._stop_callback(reason)
        if inflight is not None and timeout != 0 and not self._in_event_loop():
            concurrent.futures.wait([inflight], timeout=timeout)
        if executor is not None:
            executor.shutdown(wait=False)

    def _stop_callback(self, reason: str) -> None:
        """Dask's ``stop`` (it stops the periodic callback), on the event loop when that runs elsewhere."""
        loop = self._aio_loop or self._cluster_event_loop()
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if loop is None or here is loop or loop.is_closed() or not loop.is_running():
            super().stop(reason=reason)
            return
        try:
            loop.call_soon_threadsafe(functools.partial(DaskAdaptive.stop, self, reason=reason))
        except RuntimeError:  # closed meanwhile
            super().stop(reason=reason)

    def _cluster_event_loop(self) -> asyncio.AbstractEventLoop | None:
        """The asyncio loop under the cluster's event loop, if that runs."""
        try:
            return cast("asyncio.AbstractEventLoop | None", getattr(self.loop, "asyncio_loop", None))
        except RuntimeError:
            return None

    @staticmethod
    def _in_event_loop() -> bool:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return True

    def __del__(self) -> None:
        if hasattr(self, "state") and hasattr(self, "_gate"):
            self.stop(reason="adaptive-deleted", timeout=0)

    async def tick(self) -> None:
        """One periodic check: wait while the cluster starts, stop once it closes, else adapt."""
        status = getattr(self.cluster, "status", Status.running)
        if status in _CLOSED:
            self.stop(reason="cluster-not-running", timeout=0)
            return
        if status != Status.running:
            return
        try:
            await self.adapt()
        except Exception:
            logger.warning("adaptive: a check failed", exc_info=True)

    async def adapt(self) -> None:
        """One check: ask the scheduler, then scale up or retire containers."""
        self._aio_loop = asyncio.get_running_loop()
        await super().adapt()

    async def _blocking(self, func: Callable[..., Any], *args: Any) -> bool:
        """Run a blocking cluster call in this object's worker thread; ``False`` once stopped."""
        with self._gate:
            if self._stopped:
                logger.debug("adaptive: stopped; %s not called", getattr(func, "__name__", func))
                return False
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="dockerparallel-adaptive")
            self._inflight = future = self._executor.submit(func, *args)
        await asyncio.wrap_future(future)
        return True

    # -- decisions ---------------------------------------------------------------------------------------------

    async def target(self) -> int:
        """The scheduler's ``adaptive_target``, raised to hold ``minimum_memory``."""
        wanted = int(await self.scheduler.adaptive_target(target_duration=self.target_duration))
        if self.minimum_memory:
            wanted = max(wanted, await self._memory_floor())
        return wanted

    async def _memory_floor(self) -> int:
        """Workers of the current average memory limit that hold ``minimum_memory`` (1 without workers)."""
        info = await self.scheduler.identity(n_workers=0)
        workers, total = int(info.get("n_workers", 0)), float(info.get("total_memory", 0) or 0)
        if workers == 0 or total <= 0:
            return 1
        return math.ceil(self.minimum_memory / (total / workers))

    async def recommendations(self, target: int) -> dict[str, Any]:
        """Up to ``target`` now; down only for containers suggested ``wait_count`` checks in a row."""
        self._last_target = target
        expected = self._cluster.expected_workers
        if target >= expected:
            self._close_rounds.clear()
            return {"status": "same"} if target == expected else {"status": "up", "n": target}
        groups: dict[Hashable, list[Any]] = {}
        for name in await self.workers_to_close(target=target):
            groups.setdefault(container_token(name) or name, []).append(name)
        rounds = {group: self._close_rounds.get(group, 0) + 1 for group in groups}
        firm = [group for group, count in rounds.items() if count >= self.wait_count]
        self._close_rounds = {group: count for group, count in rounds.items() if count < self.wait_count}
        if not firm:
            return {"status": "same"}
        return {"status": "down", "workers": [name for group in firm for name in groups[group]]}

    # -- changes, through the cluster's lifecycle ------------------------------------------------------------------

    # AdaptiveCore declares the argument types of scale_up and scale_down swapped; Adaptive's are these.
    async def scale_up(self, n: int) -> None:  # type: ignore[override]
        """Ask the cluster for ``n`` workers."""
        logger.info("adaptive: %d workers wanted", n)
        if await self._blocking(self._cluster.set_worker_number, n):
            self.history.append((time.time(), n))

    async def scale_down(self, workers: Iterable[Any]) -> None:  # type: ignore[override]
        """Retire the Dask workers named ``workers`` (whole containers) and lower the expected number as much."""
        names = [name for name in workers if container_token(name) is not None]
        if not names:
            return
        floor = self.minimum if self._last_target is None else self._last_target
        expected = max(floor, self._cluster.expected_workers - len(names))
        loop, scheduler, call_timeout = asyncio.get_running_loop(), self.scheduler, self.retire_call_timeout

        def retire_workers() -> None:  # under the lifecycle's lock, in the worker thread
            self.history.append((time.time(), expected))
            retiring = scheduler.retire_workers(names=names, remove=True, close_workers=True)
            asyncio.run_coroutine_threadsafe(retiring, loop).result(call_timeout)

        logger.info("adaptive: retiring workers %s; %d expected", names, expected)
        await self._blocking(self._cluster.lifecycle.retire, expected, retire_workers, self.retire_timeout)
