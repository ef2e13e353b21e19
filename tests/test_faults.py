"""Fault injection: over a thousand random operations on a fake cloud, with invariants checked after each.

The operations: scale up and down, reconcile cycles of the controller,
worker deaths, changes of the fault knobs (failed, partial and throttled
calls, failed kills, status errors, workers stuck booting), and controller
"crashes": the cluster and provider objects are dropped (sometimes in the
middle of a launch, after the containers started but before their handles
reached the ledger) and a fresh pair is rebuilt from the state store with
``DockerCluster.reconnect(name, state=store)``.

After every step:

* no live worker is unknown to the ledger (the window of a crash mid-launch
  ends with the reconnect, which is part of the same step);
* after the next refresh, no ledger entry names a dead worker;
* periodically, once the faults stop, the expected number of workers
  exists within three reconcile cycles;
* at the end of each episode, ``stop_cluster`` leaves zero live workers.

The counts go to the terminal summary of the test run.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from dockerparallel import DockerCluster, DockerParallelError
from dockerparallel.controller import Controller
from dockerparallel.managed import plan_kill
from dockerparallel.state import StateStore
from dockerparallel.testing import FakeCloud, FakeCloudProvider

from ._helpers import ManualClock, assert_agree, assert_no_leak, assert_no_phantom, make_cluster

SEED = 20_240_605
OPERATIONS = 1_200
EPISODES = 4
CALM_EVERY = 50
NAME = "chaos"
BOOT_DELAY = 2.0
INIT_TIMEOUT = 30.0
BACKOFF = (0.5, 8.0)
MAX_WORKERS = 24

#: Fault knob -> the rates it is set to at random (0 most often).
FAULT_KNOBS: dict[str, tuple[float, ...]] = {
    "failure_rate": (0.0, 0.0, 0.1, 0.3),
    "partial_launch_rate": (0.0, 0.0, 0.2, 0.5),
    "throttle_rate": (0.0, 0.0, 0.1, 0.3),
    "kill_failure_rate": (0.0, 0.0, 0.2, 0.5),
    "death_rate": (0.0, 0.0, 0.0, 0.05),
    "stuck_rate": (0.0, 0.0, 0.0, 0.1),
}


class SimulatedCrash(BaseException):
    """The client process dies: nothing of it survives, no ``except Exception`` catches it."""


class CrashableProvider(FakeCloudProvider):
    """A fake provider whose process can "die" in a run call after the containers started."""

    crash_armed = False

    def run_docker_worker_containers(self, *args: Any, **kwargs: Any) -> list[str]:
        handles = super().run_docker_worker_containers(*args, **kwargs)
        if self.crash_armed and handles:
            raise SimulatedCrash(f"process died after starting {len(set(handles))} container(s)")
        return handles


class Chaos:
    """One cluster on one fake cloud and state store, driven by a seeded random generator."""

    def __init__(self, store_path: Path) -> None:
        self.rng = random.Random(SEED)
        self.clock = ManualClock()
        self.cloud = FakeCloud(self.clock)
        self.store = StateStore(store_path)
        self.ops: Counter[str] = Counter()
        self.checks: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.profile = dict.fromkeys(FAULT_KNOBS, 0.0)
        provider = CrashableProvider(self.cloud, seed=SEED, max_containers_per_call=2, max_concurrent_calls=2)
        self.cluster = make_cluster(provider, name=NAME, state=self.store, worker_number=8)
        self.cluster.start_cluster(timeout=5)
        self.controller = self._new_controller()
        self._configure()

    @property
    def provider(self) -> CrashableProvider:
        return self.cluster.provider  # type: ignore[return-value]

    def _new_controller(self) -> Controller:
        return Controller(self.cluster, init_timeout=INIT_TIMEOUT, backoff_base=BACKOFF[0],
                          backoff_max=BACKOFF[1], seed=self.rng.getrandbits(32), clock=self.clock)

    def _configure(self) -> None:
        """Give the provider the boot delay and the present fault profile."""
        self.provider.boot_delay = BOOT_DELAY
        for knob, rate in self.profile.items():
            setattr(self.provider, knob, rate)

    def attempt(self, action: Callable[[], object]) -> None:
        """Run ``action``; a library error is an expected outcome under faults, counted by type."""
        try:
            action()
        except DockerParallelError as exc:
            self.errors[type(exc).__name__] += 1

    # -- operations ----------------------------------------------------------------------------

    def scale(self) -> None:
        self.attempt(lambda: self.cluster.set_worker_number(self.rng.randint(0, MAX_WORKERS)))

    def reconcile(self) -> None:
        self.controller.reconcile()
        self.clock.advance(self.rng.choice((0.5, 1.0, 3.0)))

    def status(self) -> None:
        self.attempt(self.cluster.get_worker_numbers)

    def deaths(self) -> None:
        self.faults["worker_death"] += len(self.cloud.kill_random(self.rng.randint(1, 3), self.rng, NAME))

    def advance(self) -> None:
        self.clock.advance(self.rng.choice((1.0, 5.0, 20.0, 40.0)))

    def change_faults(self) -> None:
        knob = self.rng.choice(sorted(FAULT_KNOBS))
        self.profile[knob] = self.rng.choice(FAULT_KNOBS[knob])
        setattr(self.provider, knob, self.profile[knob])

    def crash(self) -> None:
        """The process dies between two calls; a fresh one reconnects."""
        self.faults["crash between calls"] += 1
        self._reconnect()

    def crash_mid_launch(self) -> None:
        """The process dies inside a run call, after its containers started; a fresh one reconnects."""
        self.provider.crash_armed = True
        target = min(MAX_WORKERS, self.provider.worker_ledger.workers() + self.rng.randint(1, 8))
        try:
            self.cluster.set_worker_number(target)
        except SimulatedCrash:
            orphans = set(self._live_ids()) - set(self.provider.worker_ledger.handles())
            assert orphans, "a crash mid-launch leaves started containers unknown to the ledger"
            self.faults["crash mid-launch"] += 1
            self._reconnect()
            assert orphans <= set(self.provider.worker_ledger.handles()), "reconnect missed orphans"
            self.checks["orphans adopted after a crash mid-launch"] += 1
            return
        except DockerParallelError as exc:  # the launch failed before starting anything
            self.errors[type(exc).__name__] += 1
        self.provider.crash_armed = False

    def _live_ids(self) -> list[str]:
        return [box.id for box in self.cloud.live(NAME, "worker")]

    def _reconnect(self) -> None:
        """Drop the cluster, provider and controller objects; rebuild them from the state store."""
        self.faults.update(self.provider.injected)
        del self.cluster, self.controller
        for _ in range(100):
            try:
                self.cluster = DockerCluster.reconnect(NAME, state=self.store)
                break
            except DockerParallelError as exc:  # its refresh met an injected fault: try again
                self.errors[f"reconnect {type(exc).__name__}"] += 1
        else:
            raise AssertionError("reconnect failed 100 times in a row")
        assert isinstance(self.cluster.provider, CrashableProvider)
        self.provider.rng.seed(self.rng.getrandbits(32))
        self.provider.injected.clear()
        self._configure()
        self.controller = self._new_controller()

    # -- invariants -----------------------------------------------------------------------------

    def check_step(self) -> None:
        """No live worker unknown to the ledger; after a refresh, no ledger entry for a dead one."""
        assert_no_leak(self.provider, NAME)
        self.checks["no live worker unknown to the ledger"] += 1
        try:
            self.provider.refresh_workers(self.cluster)
        except DockerParallelError as exc:
            self.errors[f"check refresh {type(exc).__name__}"] += 1
            return
        assert_no_phantom(self.provider, NAME)
        assert_no_leak(self.provider, NAME)
        self.checks["no ledger entry for a dead worker after a refresh"] += 1

    def check_settles(self) -> None:
        """Once the faults stop, the expected number exists within three reconcile cycles."""
        self.provider.faults_off()
        self.clock.advance(BACKOFF[1] + 0.01)  # the longest backoff ends
        for _ in range(3):
            self.controller.reconcile()
            if self._settled():
                break
            self.clock.advance(BOOT_DELAY)
        assert self._settled(), f"not settled: {self.provider.worker_ledger.workers()} of " \
                                f"{self.cluster.expected_workers} after three cycles"
        assert_agree(self.provider, NAME)
        self.checks["expected count within three cycles once faults stop"] += 1
        self._configure()

    def _settled(self) -> bool:
        """The expected number exists, or the excess cannot be killed exactly (no handle small enough)."""
        ledger = self.provider.worker_ledger
        excess = ledger.workers() - self.cluster.expected_workers
        if excess < 0 or ledger.pending_kills():
            return False
        return excess == 0 or plan_kill(ledger.active_entries(), excess).workers == 0

    def end_episode(self) -> None:
        """Stop the cluster (faults off): zero live workers; then start it again."""
        self.check_settles()
        self.provider.faults_off()
        self.cluster.stop_cluster()
        assert self._live_ids() == [] and len(self.provider.worker_ledger) == 0
        self.checks["zero live workers after stop_cluster"] += 1
        self.provider.boot_delay = 0.0  # the server boots at once: start_cluster waits in real time
        self.cluster.start_cluster(timeout=5)
        self._configure()


#: Every fault the run must have met (injected by the fake, or by the test itself).
EXPECTED_FAULTS = ("failure", "partial_launch", "throttle", "kill_failure", "death", "stuck", "worker_death",
                   "crash between calls", "crash mid-launch")

#: Operation -> weight.
OPERATIONS_WEIGHTS: dict[str, int] = {
    "scale": 20, "reconcile": 25, "status": 8, "deaths": 10, "advance": 8, "change_faults": 20,
    "crash": 4, "crash_mid_launch": 5,
}


def run_chaos(chaos: Chaos) -> None:
    names = sorted(OPERATIONS_WEIGHTS)
    weights = [OPERATIONS_WEIGHTS[n] for n in names]
    for step in range(1, OPERATIONS + 1):
        name = chaos.rng.choices(names, weights)[0]
        getattr(chaos, name)()
        chaos.ops[name] += 1
        chaos.check_step()
        if step % (OPERATIONS // EPISODES) == 0:
            chaos.end_episode()
        elif step % CALM_EVERY == 0:
            chaos.check_settles()
    chaos.faults.update(chaos.provider.injected)


def counts(counter: Counter[str]) -> str:
    return f"{sum(counter.values())} (" + ", ".join(f"{k} {v}" for k, v in sorted(counter.items())) + ")"


def test_random_operations_keep_the_ledger_true(tmp_path: Path, summary_lines: list[str]) -> None:
    started = time.perf_counter()
    chaos = Chaos(tmp_path / "chaos.sqlite3")
    run_chaos(chaos)
    chaos.provider.faults_off()
    chaos.cluster.stop_cluster()
    assert chaos.cloud.live(NAME, "worker") == []
    # The run tried what it claims to: every operation and every fault, each invariant as often as scheduled.
    assert sum(chaos.ops.values()) == OPERATIONS and set(chaos.ops) == set(OPERATIONS_WEIGHTS)
    assert [fault for fault in EXPECTED_FAULTS if not chaos.faults[fault]] == [], \
        f"faults never met: faults injected {counts(chaos.faults)}"
    checks = chaos.checks
    assert checks["no live worker unknown to the ledger"] == OPERATIONS
    assert checks["no ledger entry for a dead worker after a refresh"] >= OPERATIONS * 3 // 4, counts(checks)
    assert checks["expected count within three cycles once faults stop"] == OPERATIONS // CALM_EVERY
    assert checks["zero live workers after stop_cluster"] == EPISODES
    assert checks["orphans adopted after a crash mid-launch"] == chaos.faults["crash mid-launch"] > 0
    assert {"PartialLaunchError", "ProviderError", "ProviderThrottled"} <= set(chaos.errors), counts(chaos.errors)
    summary_lines += [
        f"fault injection (seed {SEED}, {time.perf_counter() - started:.1f} s):",
        f"  operations {counts(chaos.ops)}",
        f"  invariant checks {counts(chaos.checks)}",
        f"  faults injected {counts(chaos.faults)}",
        f"  errors met {counts(chaos.errors)}",
    ]
