"""The conformance kit: :func:`check_provider` runs a provider through the whole lifecycle.

A third-party provider author calls it from a test::

    from dockerparallel.testing import check_provider

    def test_my_provider():
        check_provider(MyProvider, my_worker_container)

It raises :class:`~dockerparallel.ConformanceError` naming the failing step,
and returns a :class:`ConformanceReport` saying which steps passed and which
were not run, with the reason (a provider that does not report existing
clusters cannot have its reconnect checked)::

    report = check_provider(MyProvider, my_worker_container)
    assert report.complete, str(report)
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

from .._errors import ConformanceError
from .._wait import wait_until
from ..cluster import DockerCluster
from ..container import DockerContainer, DockerHardware
from ..managed import ManagedCloudProvider

logger = logging.getLogger("dockerparallel.testing")


PASSED = "passed"
NOT_RUN = "not run"

#: Why the reconnect step is not run for a provider without ``docker_cluster_exists``.
NO_EXISTING_CLUSTERS = "the provider does not report existing clusters (docker_cluster_exists returned False)"


def unknown_handle() -> str:
    """A worker handle no cloud knows: its status must be ``"stopped"`` and its kill a success."""
    return f"dockerparallel-no-such-handle-{uuid.uuid4().hex[:8]}"


def stop_quietly(cluster: DockerCluster, deep: bool = False) -> None:
    """Stop ``cluster`` (and with ``deep`` remove what is labelled with its name), logging any failure.

    For cleaning up after a check that failed already: its own failure is the one to report.
    """
    try:
        cluster.stop_cluster()
        if deep:
            cluster.cleanup(deep=True)
    except Exception:
        logger.exception("cleaning up cluster %s after a provider check failed", cluster.name)


@dataclass(frozen=True)
class StepOutcome:
    """What became of one step: ``"passed"`` (in ``seconds``) or ``"not run"`` (for ``reason``)."""

    name: str
    status: str
    seconds: float = 0.0
    reason: str = ""


@dataclass
class ConformanceReport:
    """What :func:`check_provider` did: every step, in order, passed or not run.

    A step that fails raises :class:`~dockerparallel.ConformanceError`
    instead, so a report only holds steps that passed and steps that were
    not run, each of the latter with its reason.
    """

    provider: str
    outcomes: list[StepOutcome] = field(default_factory=list)

    @property
    def steps(self) -> list[tuple[str, float]]:
        """The steps that passed, as ``(name, seconds)``, in order."""
        return [(o.name, o.seconds) for o in self.outcomes if o.status == PASSED]

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """The steps that were not run, as ``(name, reason)``, in order."""
        return [(o.name, o.reason) for o in self.outcomes if o.status == NOT_RUN]

    @property
    def passed_names(self) -> list[str]:
        """The names of the steps that passed, in order."""
        return [name for name, _ in self.steps]

    @property
    def complete(self) -> bool:
        """Whether every step ran (and so passed)."""
        return not self.skipped

    def ran(self, name: str) -> bool:
        """Whether the step ``name`` ran (and so passed)."""
        return name in self.passed_names

    def __str__(self) -> str:
        lines = [f"{self.provider}: {len(self.steps)} conformance steps passed, {len(self.skipped)} not run"]
        for o in self.outcomes:
            lines.append(f"  ok       {o.name} ({o.seconds:.2f} s)" if o.status == PASSED
                         else f"  not run  {o.name}: {o.reason}")
        return "\n".join(lines)


class _NotRun(Exception):
    """Raised by a step's action that cannot check anything on this provider; the step is reported not run."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Checker:
    def __init__(self, cluster: DockerCluster, report: ConformanceReport, timeout: float, poll: float) -> None:
        self.cluster = cluster
        self.provider: ManagedCloudProvider = cluster.provider  # type: ignore[assignment]
        self.report = report
        self.timeout = timeout
        self.poll = poll
        self.seen: set[str] = set()

    def step(self, name: str, action: Callable[[], None]) -> None:
        started = time.monotonic()
        try:
            action()
        except _NotRun as skip:
            self.report.outcomes.append(StepOutcome(name, NOT_RUN, reason=skip.reason))
            logger.warning("%s: conformance step %r not run: %s", self.report.provider, name, skip.reason)
            return
        except ConformanceError:
            raise
        except Exception as exc:
            raise ConformanceError(f"{self.report.provider}: step {name!r} failed: {exc!r}") from exc
        self.report.outcomes.append(StepOutcome(name, PASSED, time.monotonic() - started))
        logger.info("conformance step %r passed", name)

    def expect(self, condition: bool, message: str) -> None:
        if not condition:
            raise ConformanceError(f"{self.report.provider}: {message}")

    def remember(self) -> list[str]:
        handles = self.provider.get_managed_worker_handles()
        self.seen.update(handles)
        return handles

    def wait_running(self, number: int) -> None:
        def ready() -> bool:
            numbers = self.cluster.update()  # one refresh: update() reports what it left
            return numbers.running == number and numbers.initializing == 0

        wait_until(ready, self.timeout, f"{number} running workers", self.poll)
        self.remember()

    def status_of(self, handles: list[str]) -> list[str]:
        return self.provider.checked_worker_status(self.cluster, handles, self.cluster.verbose)


def check_provider(provider_factory: Callable[[], ManagedCloudProvider], container: DockerContainer, *,
                   hardware: DockerHardware | None = None, server_container: DockerContainer | None = None,
                   timeout: float = 120.0, poll: float = 0.25) -> ConformanceReport:
    """Run a provider through the lifecycle every provider must support.

    Parameters
    ----------
    provider_factory : callable
        Returns a fresh provider object each call.
    container : DockerContainer
        The worker container; its ``max_workers_per_container`` (``k``) sets
        the sizes: scale to ``2k+1``, down to ``k+1``, and back.
    hardware : DockerHardware, optional
        Hardware of one worker.
    server_container : DockerContainer, optional
        The server container, when ``container`` cannot derive it.
    timeout, poll : float
        Seconds any single wait may take, and between polls.

    Returns
    -------
    ConformanceReport
        The steps passed and the steps not run, with the reason (see
        :attr:`ConformanceReport.complete`); a failing step raises :class:`ConformanceError`.
    """
    provider = provider_factory()
    if not isinstance(provider, ManagedCloudProvider):
        raise TypeError("provider_factory must return a ManagedCloudProvider")
    report = ConformanceReport(type(provider).__name__)
    cluster = DockerCluster(provider, container, server_container=server_container, worker_hardware=hardware,
                            name=f"conformance-{uuid.uuid4().hex[:8]}")
    checker = _Checker(cluster, report, timeout, poll)
    try:
        _run_steps(checker, provider_factory, container.max_workers_per_container)
    finally:
        stop_quietly(cluster)
    return report


def _run_steps(c: _Checker, provider_factory: Callable[[], ManagedCloudProvider], k: int) -> None:
    up, down = 2 * k + 1, k + 1
    c.step("start cluster", lambda: _start(c))
    c.step(f"scale up to {up}", lambda: _scale(c, up))
    c.step("shared handles counted", lambda: _shared(c, up, k))
    c.step(f"scale down to {down}", lambda: _scale(c, down))
    c.step("kill of unknown handles succeeds", lambda: _unknown_kill(c))
    c.step("killed worker reports stopped", lambda: _dead_status(c))
    c.step("update() heals", lambda: c.wait_running(down))
    c.step("reconnect from a fresh provider", lambda: _reconnect(c, provider_factory, down))
    c.step("stop leaves nothing running", lambda: _stop(c))


def _start(c: _Checker) -> None:
    c.cluster.start_cluster(timeout=c.timeout)
    c.expect(c.cluster.is_server_running(), "server is not running after start_cluster()")
    c.expect(c.cluster.get_worker_numbers()[:2] == (0, 0), "a new cluster has workers")


def _scale(c: _Checker, number: int) -> None:
    c.cluster.set_worker_number(number)
    c.wait_running(number)


def _shared(c: _Checker, up: int, k: int) -> None:
    handles = c.remember()
    c.expect(len(handles) == up, f"{len(handles)} managed handles for {up} workers")
    counts = {h: handles.count(h) for h in set(handles)}
    c.expect(max(counts.values()) <= k, f"a container holds more than {k} workers: {counts}")
    c.expect(len(counts) >= math.ceil(up / k), f"{len(counts)} containers cannot hold {up} workers")


def _unknown_kill(c: _Checker) -> None:
    bogus = unknown_handle()
    result = c.provider.checked_kill(c.cluster, [bogus])
    c.expect(result == [True], f"kill of an unknown handle returned {result}")
    c.expect(c.status_of([bogus]) == ["stopped"], "status of an unknown handle is not 'stopped'")


def _dead_status(c: _Checker) -> None:
    victim = c.remember()[0]
    c.expect(c.provider.checked_kill(c.cluster, [victim]) == [True], "kill of a live handle failed")
    c.expect(c.provider.checked_kill(c.cluster, [victim]) == [True], "a second kill of the same handle failed")
    wait_until(lambda: c.status_of([victim]) == ["stopped"], c.timeout, "a killed worker to stop", c.poll)


def _reconnect(c: _Checker, provider_factory: Callable[[], ManagedCloudProvider], number: int) -> None:
    fresh = provider_factory()
    twin = DockerCluster(fresh, c.cluster.worker_container, server_container=c.cluster.server_container,
                         name=c.cluster.name, worker_number=number)
    if not twin.cluster_exists():
        raise _NotRun(NO_EXISTING_CLUSTERS)
    twin.reconnect()
    c.expect(twin.is_server_running(), "a fresh provider does not see the running server after reconnect()")
    numbers = twin.get_worker_numbers()
    c.expect(numbers.running + numbers.initializing == number,
             f"a fresh provider sees {numbers} after reconnect(), expected {number} workers")


def _stop(c: _Checker) -> None:
    c.remember()
    c.cluster.stop_cluster()
    c.expect(not c.cluster.is_server_running(), "server still running after stop_cluster()")
    statuses = c.status_of(sorted(c.seen))
    alive = [h for h, s in zip(sorted(c.seen), statuses) if s != "stopped"]
    c.expect(not alive, f"workers still alive after stop_cluster(): {alive}")
    c.expect(c.cluster.get_worker_numbers()[:2] == (0, 0), "workers counted after stop_cluster()")
