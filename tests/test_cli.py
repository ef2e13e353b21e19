"""The CLI, run as a subprocess like a user runs it."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockerparallel import DockerCluster
from dockerparallel.state import StateStore
from tests.local_fixtures import processes_mentioning, run_cli, wait_for


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state.sqlite3"


def test_up_status_scale_down(state: Path) -> None:
    out = run_cli(state, "up", "--workers", "3", "-k", "2", "--name", "clitest").stdout
    assert "cluster clitest is up with 3 worker(s)" in out
    record = StateStore(state).load_cluster("clitest")
    assert record is not None
    port = record.spec["worker_container"]["fields"]["scheduler_port"]
    try:
        assert len(processes_mentioning(f"127.0.0.1:{port}")) >= 2
        cluster = DockerCluster.reconnect("clitest", state=StateStore(state))
        with cluster.get_client() as client:  # 'up' returned once the scheduler saw every worker
            assert len(client.scheduler_info(n_workers=-1)["workers"]) == 3
        status = run_cli(state, "status", "clitest").stdout
        assert "running" in status and "│ 3 " in status
        assert "expected 5, running 5" in run_cli(state, "scale", "clitest", "5", "--wait").stdout
        with cluster.get_client() as client:  # 'scale --wait' too returned once the scheduler saw every worker
            assert len(client.scheduler_info(n_workers=-1)["workers"]) == 5
        assert "clitest" in run_cli(state, "list").stdout
    finally:
        assert "is down" in run_cli(state, "down", "clitest").stdout
    wait_for(lambda: not processes_mentioning(f"127.0.0.1:{port}"), timeout=15)
    assert StateStore(state).list_clusters() == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["scale", "nope", "3"], "no cluster named 'nope'"),
        (["up", "--workers", "-1"], "workers must be at least 0"),
        (["up", "--provider", "nowhere"], "provider must be one of"),
        (["up", "--name", "bad name!"], "name must be"),
        (["up", "-k", "0"], "workers_per_container must be at least 1"),
        (["down", "nope"], "no cluster named 'nope'"),
        (["down", "nope", "--delete-logs"], "no cluster named 'nope'"),
        (["logs", "nope"], "no cluster named 'nope'"),
        (["logs", "nope", "--follow"], "no cluster named 'nope'"),
        (["status", "nope", "--output", "json"], "no cluster named 'nope'"),
        (["status", "nope", "--watch"], "no cluster named 'nope'"),
        (["status", "--watch", "--interval", "0s"], "interval must be between 0.1 s and 1 h"),
        (["status", "--watch", "--interval", "soon"], "interval must be a duration"),
        (["status", "--watch", "-o", "json"], "cannot be combined with --output json"),
        (["list", "--output", "yaml"], "'yaml' is not one of"),
    ],
)
def test_errors_are_one_line(state: Path, args: list[str], message: str) -> None:
    result = run_cli(state, *args, check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert StateStore(state).list_clusters() == []



@pytest.mark.parametrize(
    "args, message",
    [
        (["scale", "kept", "-1"], "worker_number must be at least 0, got -1"),
        (["scale", "kept", "-12", "--wait"], "worker_number must be at least 0, got -12"),
        (["scale", "kept", "3", "--timeout", "-1"], "timeout must be a finite, non-negative number"),
        (["up", "-n", "-1", "--name", "other"], "workers must be at least 0, got -1"),
        (["up", "--timeout", "-1", "--name", "other"], "timeout must be a finite, non-negative number"),
    ],
)
def test_a_negative_number_is_an_error_naming_it_and_changes_nothing(
    state: Path, args: list[str], message: str
) -> None:
    store = StateStore(state)
    store.save_cluster("kept", "somewhere:Provider", {"provider": "somewhere:Provider", "expected": 2})
    before = store.list_clusters()
    result = run_cli(state, *args, check=False)
    assert result.returncode == 1, result.stderr  # as every value out of range; 2 is for what does not parse
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert store.list_clusters() == before


def test_scale_still_names_an_unknown_option(state: Path) -> None:
    result = run_cli(state, "scale", "kept", "3", "--wiat", check=False)
    assert result.returncode == 2 and "No such option: --wiat" in result.stderr
    assert "worker_number must be at least 0, got -3" in run_cli(state, "scale", "kept", "-3", check=False).stderr

def test_every_command_has_help(state: Path) -> None:
    for command in ("up", "scale", "status", "list", "logs", "down", "demo"):
        result = run_cli(state, command, "--help")
        assert "Usage" in result.stdout
    options = {"status": ["--output", "--watch", "--interval"], "list": ["--output"], "down": ["--delete-logs"],
               "logs": ["--follow", "--worker", "--server"], "scale": ["--wait"]}
    for command, names in options.items():
        text = run_cli(state, command, "--help").stdout
        assert all(name in text for name in names), text
    text = run_cli(state, "--help").stdout
    assert all(name in text for name in ("--version", "--install-completion", "--show-completion", "logs"))


def test_demo_runs_and_leaves_nothing(state: Path) -> None:
    result = run_cli(state, "demo", "--workers", "2", "--tasks", "16")
    assert "pi ~ 3.1" in result.stdout
    assert "0 process(es) left" in result.stdout
