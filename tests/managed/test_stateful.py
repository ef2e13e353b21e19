"""Random set / kill / death sequences: the ledger and the fake cloud always agree."""

from __future__ import annotations

import random
import uuid
from typing import Callable

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from dockerparallel import PartialLaunchError
from dockerparallel.testing import FakeCloud, FakeCloudProvider

from .._helpers import (
    ManualClock, assert_no_leak, assert_no_phantom, live_worker_counts, started_cluster,
    worker_container,
)

PER_CONTAINER = 3


class LedgerMatchesCloud(RuleBasedStateMachine):
    """Drives a cluster on a FakeCloudProvider through random operations.

    ``stale`` is set when the cloud changed behind the ledger's back (a death,
    a kill from outside); until the next refresh the ledger may then name
    dead containers, but it may never miss a live one.
    """

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock()
        self.provider = FakeCloudProvider(FakeCloud(self.clock), seed=0)
        # A fresh name per example: the state store outlives the example.
        self.name = f"stateful-{uuid.uuid4().hex[:8]}"
        self.cluster = started_cluster(self.provider, worker_container(PER_CONTAINER), name=self.name)
        self.provider.boot_delay = 1.0
        self.stale = False

    # -- operations ------------------------------------------------------------

    @rule(number=st.integers(0, 14))
    def set_worker_number(self, number: int) -> None:
        self._apply(lambda: self.cluster.set_worker_number(number))

    @rule()
    def update(self) -> None:
        self._apply(self.cluster.update)

    @rule()
    def refresh(self) -> None:
        self.provider.refresh_workers(self.cluster)
        self.stale = False

    @rule(number=st.integers(1, 3), seed=st.integers(0, 2**16))
    def deaths(self, number: int, seed: int) -> None:
        if self.provider.cloud.kill_random(number, random.Random(seed), self.name):
            self.stale = True

    @precondition(lambda self: len(self.provider.worker_ledger) > 0)
    @rule(data=st.data())
    def kill_from_outside(self, data: st.DataObject) -> None:
        handle = data.draw(st.sampled_from(self.provider.worker_ledger.handles()))
        assert self.provider.kill_docker_worker_containers(self.cluster, [handle]) in ([True], [False])
        self.stale = True

    @rule(seconds=st.sampled_from([0.5, 1.0]))
    def advance_clock(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(failing=st.booleans())
    def kill_failures(self, failing: bool) -> None:
        self.provider.kill_failure_rate = 1.0 if failing else 0.0

    @rule(limit=st.sampled_from([None, 1, 2]))
    def launch_limit(self, limit: int | None) -> None:
        self.provider.max_containers_per_call = limit

    def _apply(self, action: Callable[[], object]) -> None:
        """Run a set/update, then check the number of workers against the expected one.

        Never fewer than asked (unless the launch was partial), and never more
        than one container's worth of extra workers (no exact choice to kill).
        """
        partial = False
        try:
            action()
        except PartialLaunchError:
            partial = True
        self.stale = False
        expected, active = self.cluster.expected_workers, self.provider.worker_ledger.workers()
        assert active <= expected + PER_CONTAINER - 1, f"{active} workers for {expected} expected"
        assert partial or active >= expected, f"{active} workers for {expected} expected"

    # -- invariants ---------------------------------------------------------------

    @invariant()
    def no_leaked_worker(self) -> None:
        assert_no_leak(self.provider, self.name)

    @invariant()
    def no_phantom_worker(self) -> None:
        if not self.stale:
            assert_no_phantom(self.provider, self.name)

    @invariant()
    def pending_kills_are_not_workers(self) -> None:
        ledger = self.provider.worker_ledger
        pending = set(ledger.pending_kills())
        assert ledger.workers() == sum(e.count for e in ledger if e.handle not in pending and e.status != "stopped")

    def teardown(self) -> None:
        self.provider.faults_off()
        self.cluster.stop_cluster()
        assert live_worker_counts(self.provider.cloud, self.name) == {}
        assert len(self.provider.worker_ledger) == 0


LedgerMatchesCloud.TestCase.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)
TestLedgerMatchesCloud = LedgerMatchesCloud.TestCase
