"""Bad input through the CLI and the public API: a clear error naming the argument, and nothing changed.

``test_validation.py`` covers the constructors of the API (worker numbers, containers,
hardware, names); this file adds, as tables:

* the CLI run as a user runs it (a subprocess on its own state file): exit status not 0,
  exactly one line on stderr saying what is wrong (``error: ...``, or the ``Invalid value``
  line of the box typer draws for the usage errors it finds itself) and naming the argument,
  no traceback, and the state file's clusters and resources, and the processes of a running
  cluster, unchanged (an ``up`` gets a ``--name`` so that no process with it may appear);
* a state file of random bytes, under every CLI command and every ``StateStore`` call: an
  error naming the file, and the file left byte for byte;
* unknown or bad provider options, names with odd characters, hardware and other API calls:
  the cluster's expected number, the cloud and the store unchanged;
* a provider returning garbage. Then "unchanged" means precisely: the record's spec differs
  only by ``expected``, which is the number asked (desired state, which ``update()`` pursues);
  the worker rows of the store are exactly the handles the provider returned and the ledger
  kept, with their counts (so every live container of the cluster is in the store); an
  ``intent`` row for the number asked remains (the launch did not finish, so a reconnect
  searches for unrecorded workers); and garbage from a status or kill call changes no
  worker row at all.
"""

from __future__ import annotations

import math
import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from dockerparallel import DockerCluster, DockerHardware, PartialLaunchError, ProviderError
from dockerparallel._spec import free_ports
from dockerparallel.backends.dask import DaskWorkerContainer
from dockerparallel.providers import make_provider
from dockerparallel.providers.local import LocalProcessProvider, labelled_processes
from dockerparallel.state import StateStore, StateStoreError
from dockerparallel.testing import FakeCloudProvider
from tests.local_fixtures import CLI, run_cli

from ._helpers import assert_names, assert_no_leak, live_worker_counts, make_cluster, started_cluster
from .managed.test_provider import (
    KILL, RUN, STATUS, LongKill, NonBoolKill, NonStringHandle, SetOfHandles, ShortStatus, SingleStringHandle,
    TooFewHandles, TooManyHandles, UnknownStatus,
)

#: Stands for the name of the running cluster in the CLI table.
VICTIM = "<victim>"

Rows = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]


def store_rows(path: Path) -> Rows:
    """Every cluster and resource of the state file, all fields."""
    store = StateStore(path)
    clusters = [(r.name, r.provider, r.spec, r.created, r.updated) for r in store.list_clusters()]
    resources = [(r.cluster, r.handle, r.role, r.count, r.data, r.created)
                 for name, *_ in clusters for r in store.resources(name)]
    return clusters, resources


def stop_recorded_clusters(path: Path) -> None:
    """Stop whatever a wrongly accepted command started (so that a failing row leaves no process)."""
    store = StateStore(path)
    for record in store.list_clusters():
        cluster = DockerCluster.reconnect(record.name, state=store)
        cluster.stop_cluster()
        cluster.cleanup(deep=True)
        store.delete_cluster(record.name)


@dataclass(frozen=True)
class Victim:
    """A running local cluster (one worker) and its state file."""

    cluster: DockerCluster
    path: Path

    @property
    def name(self) -> str:
        return self.cluster.name

    def state(self) -> tuple[Rows, dict[str, tuple[str, int]]]:
        return store_rows(self.path), labelled_processes(self.name)


@pytest.fixture(scope="module")
def victim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Victim]:
    path = tmp_path_factory.mktemp("victim") / "state.sqlite3"
    store = StateStore(path)
    container = DaskWorkerContainer(host="127.0.0.1", scheduler_port=(ports := free_ports(2))[0], dashboard_port=ports[1])
    cluster = DockerCluster(LocalProcessProvider(store, grace_period=3.0), container, worker_number=1,
                            name=f"victim-{uuid.uuid4().hex[:8]}", state=store)
    try:
        cluster.start_cluster(timeout=60)
        cluster.wait_for_workers(timeout=60)
        yield Victim(cluster, path)
    finally:
        cluster.stop_cluster()
        cluster.cleanup(deep=True)


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line that says what is wrong; typer's own usage errors put it in a box."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    marker = "Invalid value" if result.returncode == 2 else "error:"
    lines = [line for line in result.stderr.splitlines() if marker in line]
    assert len(lines) == 1, result.stderr
    return lines[0]


# -- the CLI ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CliCase:
    args: tuple[str, ...]
    #: What the error line must contain: the argument, and the value where it helps.
    words: tuple[str, ...]


def cli(*args: str, words: tuple[str, ...]) -> Any:
    return pytest.param(CliCase(args, words), id=" ".join(args)[:48])


CLI_CASES = [
    # worker numbers
    cli("up", "--workers", "1.5", words=("'--workers'",)),
    cli("up", "--workers", "100001", words=("workers", "100000")),
    cli("scale", VICTIM, "--", "-1", words=("worker_number", "at least 0")),
    cli("scale", VICTIM, "2.5", words=("'workers'",)),
    cli("scale", VICTIM, "100001", words=("worker_number", "at most")),
    cli("demo", "--workers", "-1", words=("workers",)),
    cli("demo", "--tasks", "-5", words=("tasks",)),
    # hardware
    cli("up", "--cpu", "0", words=("cpu", "at least 1")),
    cli("up", "--memory", "-1", words=("memory", "'-1'")),
    cli("up", "--cpu", "nan", words=("'--cpu'",)),
    cli("up", "--memory", "lots", words=("memory", "'lots'")),  # "1024MB" is a size now
    cli("up", "-k", "2000", words=("workers_per_container", "at most")),
    # names with odd characters
    cli("up", "--name", "has/slash", words=("name", "'has/slash'")),
    cli("up", "--name", "ünïcödé", words=("name",)),
    cli("up", "--name", "x" * 64, words=("name", "1-63")),
    cli("up", "--name=-leading-dash", words=("name", "'-leading-dash'")),
    cli("up", "--name", "trailing-newline\n", words=("name",)),
    cli("up", "--name", VICTIM, words=("name", "exists")),
    cli("scale", "bad/name", "3", words=("'bad/name'",)),
    cli("status", "sp ace", words=("'sp ace'",)),
    # other options
    cli("up", "--port", "70000", words=("port", "65535")),
    cli("up", "--dashboard-port", "-5", words=("dashboard_port",)),
    cli("up", "--host", "not a host", words=("host", "'not a host'")),
    cli("up", "--image", "", words=("image",)),
    cli("up", "--timeout", "nan", "--workers", "0", words=("timeout",)),
    # unknown or bad provider options
    cli("up", "--provider", "ecs", "--subnet", "bogus", words=("subnets", "'bogus'")),
    cli("up", "--provider", "docker", "--network", "bogus", words=("--network", "'bogus'", "host", "bridge")),
    cli("up", "--provider", "docker", "--region", "x", words=("'docker'", "--region x", "--network")),
    cli("up", "--provider", "local", "--grace-period", "soon", words=("--grace-period", "'soon'")),
    cli("up", "stray", words=("'stray'",)),
    cli("up", "--provider", "no.such.module:Provider", words=("no.such.module:Provider", "cannot be imported")),
    cli("up", "--provider", "dockerparallel.state:StateStore", words=("not a CloudProvider",)),
    cli("down", "ghost", "--provider", "nowhere", words=("provider", "'nowhere'")),
]


@pytest.mark.parametrize("case", CLI_CASES)
def test_the_cli_rejects_bad_input_and_changes_nothing(case: CliCase, victim: Victim, tmp_path: Path) -> None:
    uses_victim = VICTIM in case.args
    state = victim.path if uses_victim else tmp_path / "state.sqlite3"
    args = [victim.name if a == VICTIM else a for a in case.args]
    if args[0] == "up" and not any(a.startswith("--name") for a in args):
        args += ["--name", f"bad-input-{uuid.uuid4().hex[:8]}"]  # to look for processes it must not start
    before, victim_before = store_rows(state), victim.state()
    try:
        line = error_line(run_cli(state, *args, check=False))
        for word in case.words:
            assert word in line, line
        assert store_rows(state) == before
        assert victim.state() == victim_before
        if "--name" in args and not uses_victim:
            assert labelled_processes(args[args.index("--name") + 1]) == {}
    finally:
        if not uses_victim:
            stop_recorded_clusters(state)


@pytest.mark.parametrize("args", [("up", "--name", "x" * 64), ("up", "--workers", "1.5")], ids=["ours", "typer's"])
def test_an_error_stays_on_one_line_at_the_default_width(args: tuple[str, ...], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["DOCKERPARALLEL_STATE"] = str(tmp_path / "state.sqlite3")
    result = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1, result.stderr


# -- a state file of random bytes ---------------------------------------------------------------------


@pytest.fixture
def corrupt(tmp_path: Path) -> Path:
    path = tmp_path / "state.sqlite3"
    path.write_bytes(bytes(range(256)) * 16)
    return path


@pytest.mark.parametrize("args", [
    ("list",), ("status",), ("status", "x"), ("scale", "x", "3"), ("down", "x"),
    ("up", "--workers", "0", "--no-wait"), ("down", "x", "--provider", "local"),
], ids=" ".join)
def test_every_cli_command_names_a_corrupt_state_file_and_leaves_it(corrupt: Path, args: tuple[str, ...]) -> None:
    before, files = corrupt.read_bytes(), sorted(corrupt.parent.iterdir())
    line = error_line(run_cli(corrupt, *args, check=False))
    assert str(corrupt) in line and "corrupt" in line, line
    assert corrupt.read_bytes() == before and sorted(corrupt.parent.iterdir()) == files


STORE_CALLS: dict[str, Callable[[StateStore], object]] = {
    "save_cluster": lambda s: s.save_cluster("a", "pkg:P", {}),
    "load_cluster": lambda s: s.load_cluster("a"),
    "list_clusters": lambda s: s.list_clusters(),
    "delete_cluster": lambda s: s.delete_cluster("a"),
    "put_resource": lambda s: s.put_resource("a", "h", "worker", 1, {}),
    "upsert_resources": lambda s: s.upsert_resources("a", "worker", [("h", 1)]),
    "resources": lambda s: s.resources("a"),
    "delete_resources": lambda s: s.delete_resources("a", ["h"]),
    "DockerCluster.reconnect": lambda s: DockerCluster.reconnect("a", state=s),
    "start_cluster": lambda s: make_cluster(FakeCloudProvider(), state=s).start_cluster(timeout=5),
}


@pytest.mark.parametrize("call", list(STORE_CALLS))
def test_every_store_call_names_a_corrupt_state_file_and_leaves_it(corrupt: Path, call: str) -> None:
    before = corrupt.read_bytes()
    with pytest.raises(StateStoreError) as excinfo:
        STORE_CALLS[call](StateStore(corrupt))
    assert str(corrupt) in str(excinfo.value)
    assert corrupt.read_bytes() == before


# -- the API ------------------------------------------------------------------------------------------


@dataclass
class World:
    """A state store, a started cluster on the fake cloud with 3 workers, and one not started."""

    store: StateStore
    provider: FakeCloudProvider
    cluster: DockerCluster
    idle: DockerCluster

    def snapshot(self) -> tuple[Any, ...]:
        return (store_rows(self.store.path), self.cluster.expected_workers, live_worker_counts(self.provider.cloud),
                dict(self.provider.calls), self.idle.expected_workers, self.provider.cloud.live(self.idle.name))


@pytest.fixture
def world(tmp_path: Path) -> World:
    store = StateStore(tmp_path / "state.sqlite3")
    provider = FakeCloudProvider()
    cluster = started_cluster(provider, state=store, worker_number=3)
    idle = make_cluster(provider, name="idle", state=store)
    return World(store, provider, cluster, idle)


@dataclass(frozen=True)
class ApiCase:
    call: Callable[[World], object]
    error: type[Exception]
    words: tuple[str, ...]


def api(label: str, call: Callable[[World], object], error: type[Exception], *words: str) -> Any:
    return pytest.param(ApiCase(call, error, words), id=label)


def dask_cluster(w: World, **options: Any) -> DockerCluster:
    return DockerCluster(w.provider, DaskWorkerContainer(), state=w.store, **options)


def generic_cluster(w: World, **options: Any) -> DockerCluster:
    return make_cluster(w.provider, state=w.store, **options)


API_CASES = [
    # unknown or bad provider options
    api("local bogus=1", lambda w: make_provider("local", bogus=1), ValueError, "bogus"),
    api("docker bogus=1", lambda w: make_provider("docker", bogus=1), ValueError, "bogus"),
    api("ecs bogus=1", lambda w: make_provider("ecs", bogus=1), ValueError, "bogus"),
    api("ecs subnets", lambda w: make_provider("ecs", subnets="bogus"), ValueError, "subnets", "'bogus'"),
    api("docker network_mode", lambda w: make_provider("docker", network_mode="bogus"), ValueError, "network_mode"),
    api("ecs region=5", lambda w: make_provider("ecs", region=5), TypeError, "region"),
    api("local grace_period='abc'", lambda w: make_provider("local", grace_period="abc"), TypeError,
        "grace_period"),
    api("local grace_period=-1", lambda w: make_provider("local", grace_period=-1), ValueError, "grace_period"),
    api("local store='a path'", lambda w: make_provider("local", store="state.sqlite3"), TypeError, "store"),
    api("DockerCluster security='yes'", lambda w: dask_cluster(w, security="yes"), TypeError, "security"),
    api("DockerCluster state='a path'", lambda w: dask_cluster(w, state="state.sqlite3"), TypeError, "state"),
    api("DockerCluster init_timeout='x'", lambda w: generic_cluster(w, auto_heal=True, init_timeout="x"),
        TypeError, "init_timeout"),
    api("DaskWorkerContainer death_timeout=-1", lambda w: DaskWorkerContainer(death_timeout=-1), ValueError,
        "death_timeout"),
    # names with odd characters
    *[api(f"name={name!r}"[:40], lambda w, name=name: generic_cluster(w, name=name), ValueError, "name", repr(name))
      for name in ("has/slash", "ünïcödé", "名前", "trailing-newline\n", "x" * 200, "tab\there")],
    api("reconnect 'bad/name'", lambda w: DockerCluster.reconnect("bad/name", state=w.store), ValueError, "name"),
    api("reconnect 'ghost'", lambda w: DockerCluster.reconnect("ghost", state=w.store), ValueError, "name",
        "'ghost'"),
    api("reconnect orphans='maybe'", lambda w: DockerCluster.reconnect(w.cluster.name, state=w.store,
                                                                        orphans="maybe"), ValueError, "orphans"),
    # hardware
    api("cpu=False", lambda w: DockerHardware(cpu=False), TypeError, "cpu"),
    api("cpu=1024.5", lambda w: DockerHardware(cpu=1024.5), ValueError, "cpu"),
    api("memory=-1", lambda w: DockerHardware(memory=-1), ValueError, "memory"),
    api("memory=nan", lambda w: DockerHardware(memory=math.nan), ValueError, "memory"),
    api("memory='1024'", lambda w: DockerHardware(memory="1024"), TypeError, "memory"),
    # other calls
    api("adapt minimum=-1", lambda w: w.cluster.adapt(minimum=-1), ValueError, "minimum"),
    api("adapt interval=nan", lambda w: w.cluster.adapt(interval=math.nan), ValueError, "interval"),
    api("wait_for_server timeout=-1", lambda w: w.cluster.wait_for_server(timeout=-1), ValueError, "timeout"),
    api("start_cluster timeout=nan", lambda w: w.idle.start_cluster(timeout=math.nan), ValueError, "timeout"),
    api("StateStore(5)", lambda w: StateStore(5), TypeError, "path"),
]


@pytest.mark.parametrize("case", API_CASES)
def test_the_api_rejects_bad_input_and_changes_nothing(case: ApiCase, world: World) -> None:
    before = world.snapshot()
    with pytest.raises(case.error) as excinfo:
        case.call(world)
    assert type(excinfo.value) is case.error
    for word in case.words:
        assert word in str(excinfo.value), str(excinfo.value)
    assert world.snapshot() == before


# -- a provider returning garbage ---------------------------------------------------------------------------

#: (double, its garbage primitive, the worker number that makes it return garbage, the error)
GARBAGE = [
    (TooManyHandles, RUN, 6, ProviderError),
    (TooFewHandles, RUN, 6, PartialLaunchError),
    (NonStringHandle, RUN, 6, ProviderError),
    (SingleStringHandle, RUN, 3, ProviderError),
    (SetOfHandles, RUN, 6, ProviderError),
    (UnknownStatus, STATUS, 2, ProviderError),
    (ShortStatus, STATUS, 2, ProviderError),
    (NonBoolKill, KILL, 2, ProviderError),
    (LongKill, KILL, 2, ProviderError),
]


def worker_rows(path: Path) -> dict[str, tuple[Any, ...]]:
    return {r[1]: r for r in store_rows(path)[1] if r[2] == "worker"}


@pytest.mark.parametrize(("double", "method", "number", "error"), GARBAGE, ids=[g[0].__name__ for g in GARBAGE])
def test_provider_garbage_is_named_and_only_the_returned_handles_are_recorded(
        double: type[FakeCloudProvider], method: str, number: int, error: type[Exception], tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.sqlite3")
    provider = double()
    cluster = started_cluster(provider, state=store)
    if method != RUN:
        cluster.set_worker_number(6)  # 4 + 2 workers; no status call before (nothing to ask about)
    (record_before,), _ = store_rows(store.path)
    workers_before = worker_rows(store.path)
    with pytest.raises(error) as excinfo:
        cluster.set_worker_number(number)
    assert_names(excinfo.value, provider, method)  # type: ignore[arg-type]

    assert cluster.expected_workers == number
    (record_after,), _ = store_rows(store.path)
    name, provider_class, spec = record_before[:3]
    assert record_after[:3] == (name, provider_class, {**spec, "expected": number})
    workers = worker_rows(store.path)
    assert {h: row[3] for h, row in workers.items()} == {e.handle: e.count for e in provider.worker_ledger}
    assert_no_leak(provider)  # every live container of the cluster is in the ledger, hence in the store
    if method == RUN:
        assert set(workers_before) <= set(workers)
    else:
        assert workers == workers_before
    intents = [(r.handle, r.count) for r in store.resources(cluster.name, "intent")]
    assert intents == [("intent", number)]


class GarbageAddress(FakeCloudProvider):
    def get_docker_server_ip(self, *args: Any, **kwargs: Any) -> Any:
        return "127.0.0.1:8786"


class GarbageServerStatus(FakeCloudProvider):
    def get_server_status(self, *args: Any, **kwargs: Any) -> str:
        return "up" if super().get_server_status(*args, **kwargs) == "running" else "stopped"


@pytest.mark.parametrize("double, method", [
    pytest.param(GarbageAddress, "get_docker_server_ip", id="address"),
    pytest.param(GarbageServerStatus, "get_server_status", id="server status"),
])
def test_garbage_about_the_server_is_named(double: type[FakeCloudProvider], method: str, tmp_path: Path) -> None:
    provider = double()
    cluster = make_cluster(provider, state=StateStore(tmp_path / "state.sqlite3"))
    with pytest.raises(ProviderError) as excinfo:
        cluster.start_cluster(timeout=0.5)
    assert_names(excinfo.value, provider, method)
