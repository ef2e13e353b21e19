"""The provider contract as tests: one named pytest test per rule a provider must keep.

Subclass :class:`ProviderContract` in a test module and give it fixtures that
build your provider; pytest then runs every rule against it, each on a
cluster of its own, and a broken rule fails its own test with a message that
says what broke and how to fix it. Importing this module imports pytest
(``dockerparallel.testing`` itself does not).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, cast

import pytest

from .._wait import wait_until
from ..cluster import DockerCluster
from ..container import DockerContainer, DockerHardware
from ..managed import ManagedCloudProvider
from ..managed.calls import salvage_handles, unique
from ..state import StateStore
from .conformance import NO_EXISTING_CLUSTERS, stop_quietly, unknown_handle

STATUSES = ("initializing", "running", "stopped")
RUN, STATUS, KILL = "run_docker_worker_containers", "get_docker_worker_status", "kill_docker_worker_containers"


@dataclass(frozen=True)
class Rule:
    """One rule of the provider contract: its name and how to keep it."""

    name: str
    fix: str

    def broke(self, what: str, fix: str | None = None) -> str:
        """The message of a failure: which rule broke, what happened, how to fix it."""
        return f"rule '{self.name}': {what}; {fix or self.fix}"

    def expect(self, condition: bool, what: str, fix: str | None = None) -> None:
        """Fail the test with :meth:`broke` unless ``condition``."""
        __tracebackhide__ = True
        if not condition:
            raise AssertionError(self.broke(what, fix))


R_RUN = Rule("run returns exactly n handles",
             "return one handle per worker, repeating a container's handle once per worker it holds")
R_NEW = Rule("each run returns new handles",
             "return the handles of the containers this call started, never one an earlier call returned")
R_SHARED = Rule("a shared container repeats its handle and holds at most k",
                "pack up to k = container.max_workers_per_container workers into one container "
                "(run container.for_workers(m, hardware) for a container of m) and return its handle m times")
R_STATUS = Rule("status gets unique handles and answers each",
                "return one of 'initializing', 'running', 'stopped' per handle, in the order given, "
                "and read a live container as 'initializing' or 'running'")
R_UNKNOWN = Rule("status of an unknown handle is stopped",
                 "answer 'stopped' for a handle the cloud does not know; never raise for it")
R_KILL = Rule("kill of unknown and dead handles is success",
              "return True for each handle that is unknown or already dead, and never raise for one")
R_KILLED = Rule("a killed worker reads stopped",
                "kill every worker of the handle, and read it 'stopped' once the kill returned True; "
                "kill only the handles given")
R_UPDATE = Rule("update replaces a dead worker",
                "read a worker whose container died 'stopped', so that update() forgets it and starts another")
R_SCALE = Rule("scale down removes whole containers exactly",
               "kill every worker of a handle (its whole container) and read the handle 'stopped' afterwards")
R_RECONNECT = Rule("reconnect from a fresh provider adopts the workers",
                   "label every worker container with the cluster's name; in reconnect_docker_cluster call "
                   "add_managed_worker_handles([handle] * workers) for each live one not yet in worker_ledger")
R_SERVER = Rule("labels let a fresh provider find the server",
                "label the server container with the cluster's name: docker_cluster_exists returns True while "
                "it lives, and after reconnect_docker_cluster get_server_status and get_docker_server_ip answer")
R_STOP = Rule("stop leaves nothing running",
              "stop_docker_server must stop the server, kill_docker_worker_containers every worker of each handle "
              "(True for dead ones), and docker_cluster_exists must return False once nothing of the cluster lives")
R_LOST = Rule("labels let stop find an unrecorded worker",
              "label worker containers with the cluster's name and adopt them in reconnect_docker_cluster: "
              "stop_cluster() calls it to find workers that a process which crashed started")


def _timed_wait(rule: Rule, condition: Callable[[], bool], timeout: float, poll: float,
                what: Callable[[], str]) -> None:
    """Wait for ``condition``; past ``timeout`` fail with ``rule`` and ``what()`` (told the time waited)."""
    __tracebackhide__ = True
    try:
        wait_until(condition, timeout, "a rule", poll)
    except TimeoutError:
        raise AssertionError(rule.broke(f"{what()} (waited {timeout:g} s)")) from None


def attempt(rule: Rule, what: str, func: Callable[..., Any], *args: Any) -> Any:
    """``func(*args)``; an exception fails ``rule``, saying that ``what`` raised it."""
    __tracebackhide__ = True
    try:
        return func(*args)
    except Exception as exc:
        raise AssertionError(rule.broke(f"{what} raised {exc!r}")) from exc


def managed(cluster: DockerCluster) -> ManagedCloudProvider:
    """The provider of ``cluster``, a ManagedCloudProvider in every contract test."""
    return cast(ManagedCloudProvider, cluster.provider)


def _kept_after_scale_down(counts: list[int], target: int) -> int:
    """Workers left when scaling ``counts`` down to ``target``: kill the most worth at most the excess."""
    excess, sums = sum(counts) - target, {0}
    for count in counts:
        sums |= {s + count for s in sums if s + count <= excess}
    return sum(counts) - max(sums)


@dataclass
class ContractSetup:
    """What the author's fixtures give a contract test; :meth:`cluster` starts a cluster of its own."""

    provider_factory: Callable[[], ManagedCloudProvider]
    worker_container: DockerContainer
    server_container: DockerContainer | None
    hardware: DockerHardware | None
    timeout: float
    state_store: StateStore
    poll: float = 0.2

    def new_provider(self) -> ManagedCloudProvider:
        """A fresh provider object from the factory (checked to be a ManagedCloudProvider)."""
        provider = self.provider_factory()
        if not isinstance(provider, ManagedCloudProvider):
            raise TypeError(f"provider_factory returned {type(provider).__name__}, not a ManagedCloudProvider")
        return provider

    def new_cluster(self, provider: ManagedCloudProvider, name: str | None = None,
                    state: StateStore | bool = False) -> DockerCluster:
        """A cluster object on ``provider`` (a new unique name unless ``name``), not started."""
        return DockerCluster(provider, self.worker_container, server_container=self.server_container,
                             worker_hardware=self.hardware, name=name or f"contract-{uuid.uuid4().hex[:8]}",
                             state=state)

    @contextlib.contextmanager
    def cluster(self) -> Iterator[ContractCase]:
        """A started cluster of a unique name, stopped and deep-cleaned afterwards.

        A failure to stop fails the test only when the test itself passed.
        """
        cluster = self.new_cluster(self.new_provider(), state=self.state_store)
        passed = False
        try:
            cluster.start_cluster(timeout=self.timeout)
            yield ContractCase(self, cluster)
            passed = True
        finally:
            if passed:
                attempt(R_STOP, "stop_cluster() after the test", cluster.stop_cluster)
                cluster.cleanup(deep=True)
            else:
                stop_quietly(cluster, deep=True)


class ContractCase:
    """One contract test's cluster, with the primitives called directly and checked against the rules."""

    def __init__(self, setup: ContractSetup, cluster: DockerCluster) -> None:
        self.setup = setup
        self.cluster = cluster
        self.provider = managed(cluster)
        self.name = type(self.provider).__name__
        self.k = cluster.worker_container.max_workers_per_container

    def call(self, rule: Rule, method: str, *args: Any, provider: ManagedCloudProvider | None = None,
             view: DockerCluster | None = None) -> Any:
        """``provider.method(view, *args)``; an exception fails ``rule``."""
        __tracebackhide__ = True
        func = getattr(provider or self.provider, method)
        return attempt(rule, f"{self.name}.{method}", func, view or self.cluster, *args, self.cluster.verbose)

    def run(self, n: int, provider: ManagedCloudProvider | None = None, view: DockerCluster | None = None,
            record: bool = True) -> list[str]:
        """Start ``n`` workers with the run primitive (recorded, so that stop kills them); check the result."""
        __tracebackhide__ = True
        container = self.cluster.configured_worker_container()
        result = self.call(R_RUN, RUN, container, self.cluster.worker_hardware, n, provider=provider, view=view)
        if record:
            self.provider.add_managed_worker_handles(salvage_handles(result))
        R_RUN.expect(isinstance(result, list), f"{self.name}.{RUN} returned a {type(result).__name__}, not a list")
        bad = [h for h in result if not (isinstance(h, str) and h)]
        R_RUN.expect(not bad, f"{self.name}.{RUN} returned handles that are not non-empty strings: {bad[:3]!r}")
        R_RUN.expect(len(result) == n, f"{self.name}.{RUN} returned {len(result)} handles for {n} workers")
        return list(result)

    def status(self, rule: Rule, handles: list[str], provider: ManagedCloudProvider | None = None) -> list[str]:
        """The status primitive on unique ``handles``; an exception fails ``rule``, a malformed answer R_STATUS."""
        __tracebackhide__ = True
        result = self.call(rule, STATUS, list(handles), provider=provider)
        answers = rule if rule is R_UNKNOWN else R_STATUS
        answers.expect(isinstance(result, list) and len(result) == len(handles),
                       f"{self.name}.{STATUS} answered {result!r} for {len(handles)} handle(s)")
        bad = sorted({repr(s) for s in result if s not in STATUSES})
        answers.expect(not bad, f"{self.name}.{STATUS} answered unknown status(es) {', '.join(bad)}")
        return [str(s) for s in result]

    def kill(self, rule: Rule, handles: list[str], provider: ManagedCloudProvider | None = None) -> list[bool]:
        """The kill primitive on unique ``handles``; a malformed answer fails ``rule``."""
        __tracebackhide__ = True
        result = self.call(rule, KILL, list(handles), provider=provider)
        rule.expect(isinstance(result, list) and len(result) == len(handles)
                    and all(isinstance(ok, bool) for ok in result),
                    f"{self.name}.{KILL} answered {result!r} for {len(handles)} handle(s), not one bool each")
        return list(result)

    def wait_stopped(self, rule: Rule, handles: list[str], what: str,
                     provider: ManagedCloudProvider | None = None) -> None:
        """Wait until every one of ``handles`` reads ``"stopped"``; else fail ``rule``."""
        __tracebackhide__ = True
        last: list[list[str]] = [[]]

        def stopped() -> bool:
            last[0] = self.status(rule, handles, provider)
            return all(s == "stopped" for s in last[0])

        _timed_wait(rule, stopped, self.setup.timeout, self.setup.poll,
                    lambda: f"{what}: {self.name}.{STATUS} still reads {dict(zip(handles, last[0]))}")

    def scale(self, rule: Rule, n: int) -> list[str]:
        """Ask the cluster for ``n`` workers and wait until they run; return the managed handles."""
        __tracebackhide__ = True
        attempt(rule, f"set_worker_number({n})", self.cluster.set_worker_number, n)
        numbers: list[Any] = [None]

        def ready() -> bool:
            numbers[0] = attempt(rule, "update()", self.cluster.update)
            return bool(numbers[0].running == n and numbers[0].initializing == 0)

        _timed_wait(rule, ready, self.setup.timeout, self.setup.poll,
                    lambda: f"asked for {n} workers, the cluster has {numbers[0]}")
        return self.provider.get_managed_worker_handles()

    def twin(self, rule: Rule) -> DockerCluster:
        """A cluster object of the same name on a fresh provider, reconnected (skips without reconnect support)."""
        __tracebackhide__ = True
        twin = self.setup.new_cluster(self.setup.new_provider(), name=self.cluster.name)
        if not twin.cluster_exists():
            pytest.skip(f"rule '{rule.name}' not checked: {NO_EXISTING_CLUSTERS}")
        try:
            twin.reconnect()
        except Exception as exc:
            raise AssertionError(rule.broke(f"reconnect() on a fresh provider raised {exc!r}")) from exc
        return twin


class ProviderContract:
    """The provider contract as pytest tests: subclass it and give it your provider.

    Each ``test_*`` method checks one rule on a cluster of its own (a unique
    name, stopped and deep-cleaned at the end). Override the fixtures
    ``provider_factory`` (a callable returning a fresh provider object that
    finds the same clusters), ``worker_container`` (``max_workers_per_container
    >= 2``) and, when needed, ``server_container``, ``hardware``, ``timeout``
    and ``state_store``::

        import pytest
        from dockerparallel.backends.dask import DaskWorkerContainer
        from dockerparallel.testing import ProviderContract

        class TestMyProvider(ProviderContract):
            @pytest.fixture
            def provider_factory(self):
                return lambda: MyProvider(region="test")  # each object finds the clusters of the others

            @pytest.fixture
            def worker_container(self):
                return DaskWorkerContainer(image="me/dask:2024.1", max_workers_per_container=2)

    A provider whose ``docker_cluster_exists`` returns ``False`` gets the
    reconnect rules reported as skipped, with the reason.
    """

    #: Seconds between polls while a test waits for a state.
    poll: ClassVar[float] = 0.2

    @pytest.fixture
    def provider_factory(self) -> Callable[[], ManagedCloudProvider]:
        """Override: return a callable that builds a fresh provider object each call."""
        raise NotImplementedError(f"{type(self).__name__}: define a provider_factory fixture returning "
                                  "a callable that builds a fresh provider object each call")

    @pytest.fixture
    def worker_container(self) -> DockerContainer:
        """Override: return the worker container (``max_workers_per_container >= 2``)."""
        raise NotImplementedError(f"{type(self).__name__}: define a worker_container fixture returning "
                                  "a DockerContainer with max_workers_per_container >= 2")

    @pytest.fixture
    def server_container(self) -> DockerContainer | None:
        """The server container (default: derived from the worker container)."""
        return None

    @pytest.fixture
    def hardware(self) -> DockerHardware | None:
        """Hardware of one worker (default: the cluster's)."""
        return None

    @pytest.fixture
    def timeout(self) -> float:
        """Seconds any one wait may take."""
        return 120.0

    @pytest.fixture
    def state_store(self, tmp_path: Path) -> StateStore:
        """The state store of the test clusters (default: a private one)."""
        return StateStore(tmp_path / "contract-state.sqlite3")

    @pytest.fixture
    def contract(self, provider_factory: Callable[[], ManagedCloudProvider], worker_container: DockerContainer,
                 server_container: DockerContainer | None, hardware: DockerHardware | None, timeout: float,
                 state_store: StateStore) -> ContractSetup:
        """The author's fixtures, together."""
        if worker_container.max_workers_per_container < 2:
            raise ValueError("worker_container: the contract needs max_workers_per_container >= 2 "
                             "to check shared handles")
        return ContractSetup(provider_factory, worker_container, server_container, hardware, timeout,
                             state_store, self.poll)

    # -- run ---------------------------------------------------------------------------------------

    def test_run_returns_exactly_n_handles(self, contract: ContractSetup) -> None:
        with contract.cluster() as case:
            for n in (1, case.k + 1, 2 * case.k):
                case.run(n)

    def test_each_run_returns_new_handles(self, contract: ContractSetup) -> None:
        with contract.cluster() as case:
            first, second = set(case.run(case.k)), set(case.run(case.k))
            again = sorted(first & second)
            R_NEW.expect(not again, f"two {RUN} calls both returned {again[:3]!r}")

    def test_a_shared_container_repeats_its_handle_and_holds_at_most_k(self, contract: ContractSetup) -> None:
        with contract.cluster() as case:
            n, k = 2 * case.k + 1, case.k
            counts = Counter(case.run(n))
            most = max(counts.values())
            R_SHARED.expect(most <= k, f"{RUN} put {most} workers under one handle, k = {k}: {dict(counts)}")
            R_SHARED.expect(most >= 2, f"{RUN} returned {n} different handles for {n} workers: "
                                       f"no container holds more than one, k = {k}")
            statuses = case.status(R_SHARED, list(counts))
            R_SHARED.expect("stopped" not in statuses, f"handles just started read {dict(zip(counts, statuses))}")
            numbers = case.cluster.get_worker_numbers()
            R_SHARED.expect(numbers.running + numbers.initializing == n,
                            f"the cluster counts {numbers} for {n} workers",
                            "this is a bug of dockerparallel's managed layer, not of your provider: report it")

    # -- status ------------------------------------------------------------------------------------

    def test_status_gets_unique_handles_and_answers_each(self, contract: ContractSetup) -> None:
        with contract.cluster() as case:
            calls: list[list[str]] = []
            primitive = case.provider.get_docker_worker_status

            def spy(cluster: Any, handles: list[str], verbose: int = 0) -> list[str]:
                calls.append(list(handles))
                return primitive(cluster, handles, verbose)

            setattr(case.provider, STATUS, spy)
            try:
                handles = unique(case.scale(R_STATUS, 2 * case.k + 1))
            finally:
                delattr(case.provider, STATUS)
            repeated = [c for c in calls if len(set(c)) != len(c)]
            R_STATUS.expect(not repeated, f"the managed layer passed repeated handles {repeated[:1]}",
                            "this is a bug of dockerparallel's managed layer, not of your provider: report it")
            together = case.status(R_STATUS, handles)
            alone = [case.status(R_STATUS, [h])[0] for h in handles]
            R_STATUS.expect(together == alone, f"{STATUS} answered {together} for {handles} together, "
                                               f"{alone} one by one")
            R_STATUS.expect("stopped" not in together, f"running workers read {dict(zip(handles, together))}")

    def test_status_of_an_unknown_handle_is_stopped(self, contract: ContractSetup) -> None:
        with contract.cluster() as case:
            bogus = unknown_handle()
            got = case.status(R_UNKNOWN, [bogus])
            R_UNKNOWN.expect(got == ["stopped"], f"{STATUS} answered {got} for the unknown handle {bogus!r}")
            live = unique(case.run(1))
            got = case.status(R_UNKNOWN, [*live, bogus])
            R_UNKNOWN.expect(got[1] == "stopped", f"{STATUS} answered {got} for a live handle and {bogus!r}")

    # -- kill --------------------------------------------------------------------------------------

    def test_kill_of_unknown_and_dead_handles_is_success(self, contract: ContractSetup) -> None:
        with contract.cluster() as case:
            bogus = unknown_handle()
            got = case.kill(R_KILL, [bogus])
            R_KILL.expect(got == [True], f"{KILL} answered {got} for the unknown handle {bogus!r}")
            live = unique(case.run(1))
            got = case.kill(R_KILLED, live)
            R_KILLED.expect(got == [True], f"{KILL} answered {got} for the live handle {live[0]!r}")
            for handles in (live, [*live, bogus]):
                got = case.kill(R_KILL, handles)
                R_KILL.expect(got == [True] * len(handles), f"{KILL} answered {got} for {handles} "
                                                             f"(the first killed already)")

    def test_killed_worker_reads_stopped(self, contract: ContractSetup) -> None:
        with contract.cluster() as case:
            victim, *others = unique(case.run(case.k + 1))  # two containers at least
            got = case.kill(R_KILLED, [victim])
            R_KILLED.expect(got == [True], f"{KILL} answered {got} for the live handle {victim!r}")
            case.wait_stopped(R_KILLED, [victim], f"the killed handle {victim!r} is not stopped")
            statuses = case.status(R_KILLED, others)
            R_KILLED.expect("stopped" not in statuses,
                            f"killing {victim!r} stopped others: {dict(zip(others, statuses))}")

    # -- the managed operations --------------------------------------------------------------------

    def test_update_replaces_a_dead_worker(self, contract: ContractSetup) -> None:
        with contract.cluster() as case:
            n = case.k + 1
            victim = case.scale(R_UPDATE, n)[0]
            R_KILLED.expect(case.kill(R_KILLED, [victim]) == [True], f"{KILL} failed for the live handle {victim!r}")
            numbers: list[Any] = [None]

            def healed() -> bool:
                numbers[0] = attempt(R_UPDATE, "update()", case.cluster.update)
                return bool(numbers[0][:2] == (0, n) and victim not in case.provider.worker_ledger)

            _timed_wait(R_UPDATE, healed, contract.timeout, contract.poll,
                        lambda: f"after {victim!r} was killed, update() left {numbers[0]}; "
                                f"{STATUS} reads it {case.status(R_UPDATE, [victim])}")

    def test_scale_down_removes_whole_containers_exactly(self, contract: ContractSetup) -> None:
        with contract.cluster() as case:
            before = Counter(case.scale(R_SCALE, 2 * case.k + 1))
            attempt(R_SCALE, f"set_worker_number({case.k + 1})", case.cluster.set_worker_number, case.k + 1)
            after = Counter(case.provider.get_managed_worker_handles())
            kept = _kept_after_scale_down(list(before.values()), case.k + 1)
            R_SCALE.expect(sum(after.values()) == kept and all(after[h] == before[h] for h in after),
                           f"containers {dict(before)} scaled to {case.k + 1} kept {dict(after)}, not {kept} "
                           "workers in whole containers",
                           "this is a bug of dockerparallel's managed layer, not of your provider: report it")
            removed = sorted(set(before) - set(after))
            case.wait_stopped(R_SCALE, removed, f"the handles {removed} killed by the scale-down are not stopped")
            numbers = case.cluster.get_worker_numbers()
            R_SCALE.expect(numbers.running + numbers.initializing == kept,
                           f"after the scale-down the cluster counts {numbers}, expected {kept} workers")

    # -- reconnect and labels ----------------------------------------------------------------------

    def test_reconnect_from_a_fresh_provider_adopts_the_workers(self, contract: ContractSetup) -> None:
        with contract.cluster() as case:
            mine = Counter(case.scale(R_RECONNECT, case.k + 1))
            twin = case.twin(R_RECONNECT)
            theirs = Counter(managed(twin).get_managed_worker_handles())
            R_RECONNECT.expect(theirs == mine, f"a fresh provider adopted {dict(theirs)}, the cluster has {dict(mine)}")
            numbers = attempt(R_RECONNECT, "get_worker_numbers() after reconnect()", twin.get_worker_numbers)
            R_RECONNECT.expect(numbers.running + numbers.initializing == case.k + 1,
                               f"a fresh provider counts {numbers} after reconnect(), expected {case.k + 1} workers")

    def test_labels_let_a_fresh_provider_find_the_server(self, contract: ContractSetup) -> None:
        with contract.cluster() as case:
            twin = case.twin(R_SERVER)
            status = attempt(R_SERVER, "server_status() after reconnect()", twin.server_status)
            R_SERVER.expect(status == "running", f"after reconnect() a fresh provider reads the server {status!r}")
            address = attempt(R_SERVER, "server_address() after reconnect()", twin.server_address)
            real = case.cluster.server_address()
            R_SERVER.expect(address == real, f"a fresh provider finds the server at {address}, it runs at {real}")

    def test_labels_let_stop_find_an_unrecorded_worker(self, contract: ContractSetup) -> None:
        with contract.cluster() as case:
            twin = case.twin(R_LOST)
            other = managed(twin)
            lost = unique(case.run(1, provider=other, view=twin, record=False))  # as a process that crashed
            try:
                attempt(R_LOST, "stop_cluster()", case.cluster.stop_cluster)
                case.wait_stopped(R_LOST, lost, f"stop_cluster() left the unrecorded worker {lost[0]!r}",
                                  provider=other)
            finally:
                with contextlib.suppress(Exception):
                    other.kill_docker_worker_containers(twin, lost)

    def test_stop_leaves_nothing_running(self, contract: ContractSetup) -> None:
        with contract.cluster() as case:
            seen = unique(case.scale(R_STOP, case.k + 1))
            attempt(R_STOP, "stop_cluster()", case.cluster.stop_cluster)
            status = case.cluster.server_status()
            R_STOP.expect(status == "stopped", f"after stop_cluster() {case.name}.get_server_status reads {status!r}")
            case.wait_stopped(R_STOP, seen, "after stop_cluster() workers live")
            fresh = contract.new_cluster(contract.new_provider(), name=case.cluster.name)
            started = time.monotonic()
            _timed_wait(R_STOP, lambda: not fresh.cluster_exists(), contract.timeout, contract.poll,
                        lambda: f"a fresh provider still finds the cluster {time.monotonic() - started:.0f} s "
                                "after stop_cluster()")
