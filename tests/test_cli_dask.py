"""The CLI's JSON output, watch, logs, completion, --version, start-up imports, and dask-ctl discovery.

Every new flag runs as a user runs it, in a subprocess, on real local clusters.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from importlib.metadata import entry_points, version
from pathlib import Path
from typing import Any, Iterator

import pytest

import dockerparallel
from dockerparallel import DockerCluster, cli
from dockerparallel._cli_logs import follow, new_text, select
from dockerparallel._cli_watch import parse_interval
from dockerparallel.state import StateStore
from tests.local_fixtures import processes_mentioning, run_cli, wait_for

#: The console script, as a user runs it.
SCRIPT = str(Path(sys.executable).with_name("dockerparallel"))
#: The keys of every object that ``status -o json`` and ``list -o json`` print, in order.
KEYS = ["name", "provider", "server", "expected", "running", "initializing", "connected", "scheduler",
        "dashboard", "created", "error"]
#: A provider class no process can import.
GONE = "__main__:Nope"


def _env(state: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "DOCKERPARALLEL_STATE": str(state), "COLUMNS": "200", **extra}


def _json(state: Path, *args: str, returncode: int = 0) -> list[dict[str, Any]]:
    result = run_cli(state, *args, "--output", "json", check=False)
    assert result.returncode == returncode, result.stderr
    rows = json.loads(result.stdout)
    assert isinstance(rows, list) and all(list(row) == KEYS for row in rows), rows
    return rows


class Running:
    """A CLI command running in a subprocess; its stdout is read as it comes (a full pipe would block it)."""

    def __init__(self, state: Path, *args: str) -> None:
        self.proc = subprocess.Popen([SCRIPT, *args], env=_env(state), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.chunks: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.chunks.append(line)

    @property
    def out(self) -> str:
        return "".join(self.chunks)

    def interrupt(self) -> tuple[int, str, str]:
        """Ctrl-C: send SIGINT, then return the exit status, stdout and stderr."""
        self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=60)
        self._reader.join(timeout=10)
        return self.proc.returncode, self.out, err


@pytest.fixture
def local(private_state_store: Path) -> Iterator[tuple[Path, str]]:
    """A local cluster of one worker, started with 'up'; stopped with 'down --delete-logs'."""
    state, name = private_state_store, "clidask"
    run_cli(state, "up", "--provider", "local", "-n", "1", "--name", name)
    record = StateStore(state).load_cluster(name)
    assert record is not None
    port = record.spec["worker_container"]["fields"]["scheduler_port"]
    yield state, name
    if StateStore(state).load_cluster(name) is not None:
        assert "is down" in run_cli(state, "down", name, "--delete-logs").stdout
    wait_for(lambda: not processes_mentioning(f"127.0.0.1:{port}"), timeout=20, what="the cluster's processes end")


# -- start-up: --version, and no Dask for --help, completion and status -------------------------


def test_version_names_dockerparallel_and_dask(private_state_store: Path) -> None:
    result = subprocess.run([SCRIPT, "--version"], env=_env(private_state_store), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (f"dockerparallel {version('dockerparallel')} (dask {version('dask')}, "
                                     f"distributed {version('distributed')})")


def test_importing_the_cli_imports_no_distributed() -> None:
    code = ("import sys, dockerparallel.cli; "
            "print([m for m in ('distributed', 'dockerparallel.cluster', 'dockerparallel.providers.local') "
            "if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("args", [["--help"], ["status", "--help"], ["status"], ["list", "-o", "json"]])
def test_fast_commands_do_not_import_distributed(private_state_store: Path, args: list[str]) -> None:
    code = ("import atexit, runpy, sys; "
            "atexit.register(lambda: print('distributed' in sys.modules, file=sys.stderr)); "
            f"sys.argv = ['dockerparallel', *{args!r}]; runpy.run_module('dockerparallel', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code], env=_env(private_state_store), capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "False"


def test_the_package_keeps_its_names_and_imports_the_heavy_ones_on_use() -> None:
    from dockerparallel.cluster import DockerCluster as Defined

    assert DockerCluster is Defined and dockerparallel.DockerCluster is Defined
    assert {"DockerCluster", "ManagedCloudProvider", "ScaleReport", "__version__"} <= set(dockerparallel.__all__)
    assert set(dockerparallel.__all__) <= set(dir(dockerparallel))
    for name in dockerparallel.__all__:
        assert getattr(dockerparallel, name) is not None
    assert dockerparallel.__version__ == version("dockerparallel")
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        dockerparallel.Nothing  # noqa: B018
    code = "from dockerparallel import *; print(DockerCluster.__name__, ManagedCloudProvider.__name__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["DockerCluster", "ManagedCloudProvider"]


# -- status / list --output json, on an empty store and on a live cluster ---------------------


def test_an_empty_store(private_state_store: Path) -> None:
    state = private_state_store
    assert _json(state, "status") == [] and _json(state, "list") == []
    table = run_cli(state, "status").stdout
    assert all(column in table for column in ("name", "expected", "running", "initializing", "connected",
                                              "dashboard"))
    result = run_cli(state, "status", "-o", "xml", check=False)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1


def test_json_and_scale_wait_count_the_workers_the_scheduler_sees(local: tuple[Path, str]) -> None:
    state, name = local
    [row] = _json(state, "status", name)
    assert (row["name"], row["provider"], row["server"]) == (name, "local", "running")
    assert (row["expected"], row["running"], row["initializing"], row["connected"]) == (1, 1, 0, 1)
    assert row["scheduler"].startswith("tcp://127.0.0.1:") and row["dashboard"].startswith("http://127.0.0.1:")
    assert datetime.fromisoformat(row["created"]).tzinfo is not None and row["error"] is None
    for workers in (3, 1):  # --wait returns once the scheduler sees exactly that many workers
        assert f"expected {workers}, running {workers}" in run_cli(state, "scale", name, str(workers),
                                                                     "--wait").stdout
        [row] = _json(state, "status")
        assert (row["expected"], row["running"], row["connected"]) == (workers, workers, workers)
    [listed] = _json(state, "list")
    assert listed["name"] == name and listed["expected"] == 1 and listed["created"] == row["created"]
    assert all(listed[key] is None for key in ("server", "running", "connected", "scheduler", "error"))


def test_json_shows_an_unreadable_record_with_its_error(private_state_store: Path) -> None:
    state = private_state_store
    StateStore(state).save_cluster("broken", GONE, {"provider": GONE, "expected": 2})
    result = run_cli(state, "status", "-o", "json")
    [row] = json.loads(result.stdout)
    assert (row["server"], row["expected"], row["connected"]) == ("unreadable", 2, None)
    assert "cannot be rebuilt" in row["error"] and "--provider" in row["error"]
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("warning:")
    assert _json(state, "status", "broken", returncode=1)[0]["server"] == "unreadable"
    assert run_cli(state, "down", "broken", "--provider", "local", "--delete-logs").returncode == 0


# -- status --watch, logs, down --delete-logs ---------------------------------------------------


def test_watch_shows_the_table_until_ctrl_c(local: tuple[Path, str]) -> None:
    state, name = local
    watch = Running(state, "status", "--watch", "--interval", "0.5s")  # to a pipe: a table after another
    wait_for(lambda: watch.out.count("dockerparallel status at") >= 1, timeout=60, what="the first table")
    time.sleep(2)
    returncode, out, err = watch.interrupt()
    assert returncode == 0, err
    assert "Traceback" not in err and "aborted" not in err
    assert "dockerparallel status at" in out and "every 0.5 s" in out
    for column in ("expected", "running", "initializing", "connected", "dashboard"):
        assert column in out
    rows = [line for line in out.splitlines() if f" {name} " in line]
    assert len(rows) >= 2, out  # redrawn every 0.5 s
    assert "running" in rows[-1] and "http://127.0.0.1:" in rows[-1]


def test_logs_print_each_container_under_a_header(local: tuple[Path, str]) -> None:
    state, name = local
    out = run_cli(state, "logs", name).stdout
    headers = [line for line in out.splitlines() if line.startswith("==> ")]
    assert headers[0] == "==> server <==" and any(h.startswith("==> worker ") for h in headers), headers
    assert "Scheduler at" in out
    servers = run_cli(state, "logs", name, "--server").stdout
    assert [h for h in servers.splitlines() if h.startswith("==> ")] == ["==> server <=="]
    worker = headers[1][len("==> worker "):-len(" <==")]
    only = run_cli(state, "logs", name, "--worker", worker[-4:]).stdout
    assert [h for h in only.splitlines() if h.startswith("==> ")] == [headers[1]]
    none = run_cli(state, "logs", name, "--worker", "no-such-handle", check=False)
    assert none.returncode == 1 and len(none.stderr.strip().splitlines()) == 1 and not none.stdout


def test_logs_follow_prints_what_is_new_until_ctrl_c(local: tuple[Path, str]) -> None:
    state, name = local
    logs = Running(state, "logs", name, "--follow")
    wait_for(lambda: "==> worker " in logs.out, timeout=30, what="the first logs")
    first = logs.out.count("==> worker ")
    run_cli(state, "scale", name, "2", "--wait")
    wait_for(lambda: logs.out.count("==> worker ") > first, timeout=30, what="the new worker's logs")
    returncode, out, err = logs.interrupt()
    assert returncode == 0, err
    assert out.count("Scheduler at") == 1  # what was printed is not printed again


def test_down_delete_logs_is_documented(private_state_store: Path) -> None:
    help_text = " ".join(run_cli(private_state_store, "down", "--help").stdout.split())
    assert "--delete-logs" in help_text and "CloudWatch" in help_text


class _Provider:
    def __init__(self, has_flag: bool) -> None:
        if has_flag:
            self.delete_logs = False


class _Cluster:
    def __init__(self, provider: _Provider) -> None:
        self.provider = provider
        self.seen: object = None

    def stop_cluster(self) -> None:
        self.seen = getattr(self.provider, "delete_logs", "absent")

    def cleanup(self, deep: bool = False) -> None:
        pass


@pytest.mark.parametrize("has_flag, args, seen", [(True, ["--delete-logs"], True), (True, [], False),
                                                  (False, ["--delete-logs"], "absent")])
def test_delete_logs_reaches_a_provider_that_keeps_logs(
    monkeypatch: pytest.MonkeyPatch, has_flag: bool, args: list[str], seen: object
) -> None:
    cluster = _Cluster(_Provider(has_flag))
    monkeypatch.setattr(cli, "_cluster_to_stop", lambda *a: cluster)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["down", "kept", *args])
    assert exit_info.value.code == 0 and cluster.seen == seen


# -- completion -----------------------------------------------------------------------------


def _complete(state: Path, words: str, **env: str) -> list[str]:
    extra = {"_DOCKERPARALLEL_COMPLETE": "complete_bash", "COMP_WORDS": words,
             "COMP_CWORD": str(len(words.split(" ")) - 1), **env}
    result = subprocess.run([SCRIPT], env=_env(state, **extra), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_completion_names_the_recorded_clusters(private_state_store: Path, tmp_path: Path) -> None:
    state = private_state_store
    for name in ("alpha", "alpine", "beta"):
        StateStore(state).save_cluster(name, GONE, {"provider": GONE})
    assert _complete(state, "dockerparallel status al") == ["alpha", "alpine"]
    for command in ("scale", "logs", "down"):
        assert _complete(state, f"dockerparallel {command} ") == ["alpha", "alpine", "beta"]
    shown = subprocess.run([SCRIPT, "--show-completion", "bash"], env=_env(state), capture_output=True, text=True)
    assert shown.returncode == 0 and "_DOCKERPARALLEL_COMPLETE" in shown.stdout
    home = tmp_path / "home"
    home.mkdir()
    installed = subprocess.run([SCRIPT, "--install-completion", "bash"], env=_env(state, HOME=str(home)),
                               capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    assert "_DOCKERPARALLEL_COMPLETE" in (home / ".bash_completions" / "dockerparallel.sh").read_text()


# -- dask-ctl discovery --------------------------------------------------------------------------


def _discovered() -> list[tuple[str, type]]:
    [entry] = [e for e in entry_points(group="dask_cluster_discovery") if e.name == "dockerparallel"]
    discover = entry.load()

    async def collect() -> list[tuple[str, type]]:
        return [item async for item in discover()]

    return asyncio.run(collect())


def test_discovery_yields_every_recorded_cluster() -> None:
    assert _discovered() == []
    store = StateStore()
    for name in ("first", "second"):
        store.save_cluster(name, GONE, {"provider": GONE})
    assert _discovered() == [("first", DockerCluster), ("second", DockerCluster)]


# -- the parts, in process -------------------------------------------------------------------------


def test_new_text_is_what_was_added() -> None:
    assert new_text("", "a\nb\n") == "a\nb\n"
    assert new_text("a\nb\n", "a\nb\nc\n") == "c\n"
    assert new_text("a\nb\nc\n", "b\nc\nd\n") == "d\n"  # a provider that keeps only the newest lines
    assert new_text("old\n", "new\n") == "new\n"  # replaced as a whole
    assert new_text("same\n", "same\n") == ""


def test_select_keeps_the_entries_asked_for() -> None:
    logs = {"server": "s", "server old-1": "o", "worker ab-12": "a", "worker cd-34": "c"}
    assert select(logs, [], False) == logs
    assert list(select(logs, [], True)) == ["server", "server old-1"]
    assert list(select(logs, ["34"], False)) == ["worker cd-34"]
    assert list(select(logs, ["ab", "cd"], True)) == list(logs)


def test_follow_writes_headers_when_the_entry_changes() -> None:
    snapshots = iter([{"server": "s1\n"}, {"server": "s1\ns2\n", "worker a": "w1"}, {"server": "s1\ns2\n",
                                                                                      "worker a": "w1 w2\n"}])
    out = io.StringIO()

    def sleep(_: float) -> None:
        pass

    def fetch() -> dict[str, str]:
        try:
            return next(snapshots)
        except StopIteration:
            raise KeyboardInterrupt from None  # Ctrl-C

    follow(fetch, out, sleep=sleep)
    assert out.getvalue() == "==> server <==\ns1\ns2\n\n==> worker a <==\nw1 w2\n"


@pytest.mark.parametrize("text, seconds", [("2s", 2.0), ("2", 2.0), ("500ms", 0.5), ("1m", 60.0), (" 1.5s ", 1.5)])
def test_parse_interval(text: str, seconds: float) -> None:
    assert parse_interval(text) == seconds


@pytest.mark.parametrize("text", ["0s", "50ms", "2h", "-1s", "soon", "", "2 hours"])
def test_parse_interval_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="interval"):
        parse_interval(text)
