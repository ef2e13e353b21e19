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
    ],
)
def test_errors_are_one_line(state: Path, args: list[str], message: str) -> None:
    result = run_cli(state, *args, check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert StateStore(state).list_clusters() == []


def test_every_command_has_help(state: Path) -> None:
    for command in ("up", "scale", "status", "list", "down", "demo"):
        result = run_cli(state, command, "--help")
        assert "Usage" in result.stdout


def test_demo_runs_and_leaves_nothing(state: Path) -> None:
    result = run_cli(state, "demo", "--workers", "2", "--tasks", "16")
    assert "pi ~ 3.1" in result.stdout
    assert "0 process(es) left" in result.stdout
