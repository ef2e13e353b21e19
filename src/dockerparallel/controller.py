"""The desired-state controller: a background loop that drives the worker count to the expected one.

Each cycle starts or kills workers towards the expected number (refreshing
the statuses first, in one call), then kills the workers stuck in
``initializing`` past a timeout and replaces them at once. Failures and
throttling back off exponentially with jitter, never beyond ``backoff_max``;
after repeated failures, a cycle launches in slow-start batches (1, 2, 4, ...
workers, stopping at the first failure, as the Kubernetes ReplicaSet
controller does) instead of flooding the provider. Throttling is retried,
never fatal.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from contextlib import AbstractContextManager
from typing import Any, Callable, Protocol

from ._errors import ProviderThrottled
from ._loop import BackgroundLoop
from ._validation import check_seconds
from .managed import ManagedCloudProvider
from .provider import ClusterView, WorkerNumbers


class Reconcilable(Protocol):
    """What the controller drives: a cluster's lifecycle."""

    name: str
    expected: int
    view: ClusterView

    @property
    def provider(self) -> Any: ...

    @property
    def running(self) -> bool: ...

    def exclusive(self) -> AbstractContextManager[None]: ...

    def sync(self) -> bool: ...

    def server_status(self) -> str: ...

    def apply(self, target: int) -> None: ...

    def numbers(self) -> WorkerNumbers: ...

logger = logging.getLogger("dockerparallel.controller")

#: Failures in a row after which launches go in slow-start batches.
SLOW_START_AFTER = 2


@dataclass
class ControllerStats:
    """What the controller did so far."""

    cycles: int = 0
    launches: int = 0
    failures: int = 0
    throttled: int = 0
    stuck_killed: int = 0


class Controller(BackgroundLoop):
    """Reconciles a cluster's observed workers with its expected number.

    Parameters
    ----------
    cluster : DockerCluster or Reconcilable
        The cluster to reconcile (its ``lifecycle``, through which every change goes).
    interval : float
        Seconds between cycles of the background loop.
    init_timeout : float, optional
        Kill and replace workers initializing longer than this (seconds).
    backoff_base, backoff_max : float
        The wait after a failed or throttled cycle doubles from about
        ``backoff_base`` with each one in a row, never beyond ``backoff_max``
        (seconds); the jitter draws it between half the step and the step.
    seed : int, optional
        Seed of the jitter.
    clock : callable
        Monotonic time source (tests pass a manual one).
    """

    def __init__(self, cluster: Any, interval: float = 5.0, init_timeout: float | None = None,
                 backoff_base: float = 1.0, backoff_max: float = 60.0, seed: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        interval = check_seconds(interval, "heal_interval", allow_zero=False)
        if init_timeout is not None:
            init_timeout = check_seconds(init_timeout, "init_timeout", allow_zero=False)
        check_seconds(backoff_base, "backoff_base", allow_zero=False)
        check_seconds(backoff_max, "backoff_max", allow_zero=False)
        if not backoff_base <= backoff_max:
            raise ValueError(f"backoff_base and backoff_max must satisfy 0 < base <= max, "
                             f"got {backoff_base!r} and {backoff_max!r}")
        super().__init__(f"controller-{cluster.name}")
        self.target: Reconcilable = getattr(cluster, "lifecycle", cluster)
        self.interval = float(interval)
        self.init_timeout = init_timeout
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.stats = ControllerStats()
        self._rng = random.Random(seed)
        self._clock = clock
        self._failures_in_row = 0  # failed cycles in a row (throttling excluded): slow start
        self._errors_in_row = 0  # failed or throttled cycles in a row: the backoff's exponent
        self._not_before = 0.0
        self._first_seen_initializing: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"<Controller {self.target.name!r} interval={self.interval:g}s {self.stats}>"

    def step(self) -> None:
        """One cycle of the background loop."""
        self.reconcile()

    # -- one cycle -----------------------------------------------------------------------

    def reconcile(self) -> bool:
        """One cycle; return whether the expected number of workers exists afterwards.

        Nothing is done while a backoff lasts or unless the cluster and its
        server run. The cycle holds the lifecycle's locks, and first adopts
        what other processes recorded. Provider errors and throttling are
        counted and backed off, never raised.
        """
        self.stats.cycles += 1
        if self._clock() < self._not_before:
            return False
        target = self.target
        managed = target.provider if isinstance(target.provider, ManagedCloudProvider) else None
        try:
            with target.exclusive():
                if not (target.running and target.sync()):
                    self._stop.set()  # closed, here or by another process: this loop ends
                    return False
                if target.server_status() != "running":
                    return False
                self._drive(managed)
                if managed is not None and self._kill_stuck(managed):
                    self._drive(managed)
        except ProviderThrottled as exc:
            self.stats.throttled += 1
            self._back_off(f"throttled: {exc}")
            return False
        except Exception as exc:
            self.stats.failures += 1
            self._failures_in_row += 1
            self._back_off(f"reconcile failed: {exc}")
            return False
        self.stats.launches += 1
        self._failures_in_row = self._errors_in_row = 0
        return self._observed(target.provider) == target.expected

    def _drive(self, provider: ManagedCloudProvider | None) -> None:
        """Apply the expected number, in slow-start batches after repeated failures."""
        expected = self.target.expected
        if provider is None or self._failures_in_row < SLOW_START_AFTER:
            self.target.apply(expected)
        else:
            self._slow_start(provider, expected)
        if provider is not None:
            self._note_initializing(provider)

    def _slow_start(self, provider: ManagedCloudProvider, expected: int) -> None:
        """Launch 1, 2, 4, ... workers until ``expected`` exist; a failure ends the cycle."""
        provider.refresh_workers(self.target.view, self.target.view.verbose)
        batch = 1
        while True:
            current = provider.worker_ledger.workers()
            target = min(expected, current + batch) if expected > current else expected
            self.target.apply(target)
            if target == expected:
                return
            batch *= 2

    def _back_off(self, reason: str) -> None:
        self._errors_in_row += 1
        step = min(self.backoff_max, self.backoff_base * 2.0 ** min(self._errors_in_row - 1, 64))
        delay = step * (0.5 + 0.5 * self._rng.random())  # jitter: half the step to the whole step
        self._not_before = self._clock() + delay
        logger.warning("%s: %s; next try in %.1f s", self.target.name, reason, delay)

    def _observed(self, provider: object) -> int:
        if isinstance(provider, ManagedCloudProvider):
            return provider.worker_ledger.workers()
        numbers = self.target.numbers()
        return numbers.initializing + numbers.running

    def _note_initializing(self, provider: ManagedCloudProvider) -> None:
        """Remember since when each handle is initializing (as the fresh statuses say)."""
        now = self._clock()
        initializing = {e.handle for e in provider.worker_ledger.active_entries() if e.status == "initializing"}
        seen = self._first_seen_initializing
        for handle in list(seen):
            if handle not in initializing:
                del seen[handle]
        for handle in initializing:
            seen.setdefault(handle, now)

    def _kill_stuck(self, provider: ManagedCloudProvider) -> int:
        """Kill the handles initializing for over ``init_timeout``; return how many."""
        if self.init_timeout is None:
            return 0
        now = self._clock()
        stuck = [h for h, since in self._first_seen_initializing.items() if now - since > self.init_timeout]
        if stuck:
            logger.warning("%s: %d worker handle(s) stuck initializing for over %g s; replacing them",
                           self.target.name, len(stuck), self.init_timeout)
            provider.kill_worker_handles(self.target.view, stuck, self.target.view.verbose)
            self.stats.stuck_killed += len(stuck)
            for handle in stuck:
                del self._first_seen_initializing[handle]
        return len(stuck)
