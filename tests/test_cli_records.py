"""The CLI with records it cannot rebuild, and with a name another cluster holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dockerparallel import ClusterExistsError, DockerCluster, cli
from dockerparallel.state import ClusterRecord, StateStore
from tests.local_fixtures import processes_mentioning, run_cli, wait_for

#: A provider class no process can import again: defined in a script that has ended.
GONE = "__main__:Nope"


def _break_record(state: Path, name: str, provider: str = GONE) -> ClusterRecord:
    """Make the record of ``name`` name ``provider``; return the record as it was."""
    store = StateStore(state)
    record = store.load_cluster(name)
    assert record is not None
    store.save_cluster(name, provider, {**record.spec, "provider": provider})
    return record


def _row(table: str, name: str) -> str:
    """The line of the status table that shows cluster ``name``."""
    lines = [line for line in table.splitlines() if f" {name} " in line]
    assert len(lines) == 1, table
    return lines[0]


def test_status_shows_every_cluster_and_down_removes_an_unreadable_one(private_state_store: Path) -> None:
    state = private_state_store
    run_cli(state, "up", "--provider", "local", "-n", "0", "--name", "healthy")
    run_cli(state, "up", "--provider", "local", "-n", "1", "--name", "broken")
    original = _break_record(state, "broken")
    port = original.spec["worker_container"]["fields"]["scheduler_port"]
    try:
        result = run_cli(state, "status", check=False)
        assert result.returncode == 0, result.stderr
        assert "running" in _row(result.stdout, "healthy")
        assert "unreadable" in _row(result.stdout, "broken")
        assert "'broken' cannot be rebuilt" in result.stderr and "--provider" in result.stderr
        assert {"healthy", "broken"} <= set(run_cli(state, "list").stdout.split())
        assert "is down" in run_cli(state, "down", "broken", "--provider", "local").stdout
        assert StateStore(state).load_cluster("broken") is None
        wait_for(lambda: not processes_mentioning(f"127.0.0.1:{port}"), timeout=15, what="broken's processes end")
        assert "running" in _row(run_cli(state, "status", "healthy").stdout, "healthy")
    finally:
        run_cli(state, "down", "healthy", check=False)
        if StateStore(state).load_cluster("broken") is not None:  # not removed: mend the record to stop it
            StateStore(state).save_cluster("broken", original.provider, original.spec)
            run_cli(state, "down", "broken", check=False)
    assert StateStore(state).list_clusters() == []


@pytest.mark.parametrize("provider", [GONE, "a_module_that_is_gone:Provider"])
def test_an_unreadable_record_asked_by_name(private_state_store: Path, provider: str) -> None:
    state = private_state_store
    StateStore(state).save_cluster("broken", provider, {"provider": provider, "provider_options": {}})
    shown = run_cli(state, "status", "broken", check=False)
    assert shown.returncode == 1
    assert "unreadable" in _row(shown.stdout, "broken")
    assert [line for line in shown.stderr.splitlines() if line.strip()] == [shown.stderr.strip()]
    assert shown.stderr.startswith("error:") and "cannot be rebuilt" in shown.stderr
    refused = run_cli(state, "down", "broken", check=False)
    assert refused.returncode == 1
    assert len(refused.stderr.strip().splitlines()) == 1 and "pass --provider" in refused.stderr
    assert StateStore(state).load_cluster("broken") is not None
    assert "is down" in run_cli(state, "down", "broken", "--provider", "local").stdout
    assert StateStore(state).list_clusters() == []


def _run_main(*args: str) -> int:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(list(args))
    return int(exit_info.value.code or 0)


def test_up_refuses_a_recorded_name_and_leaves_the_record(capsys: pytest.CaptureFixture[str]) -> None:
    store = StateStore()
    store.save_cluster("taken", "somewhere:Provider", {"provider": "somewhere:Provider"})
    before = store.load_cluster("taken")
    assert _run_main("up", "--name", "taken", "--no-wait") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "'taken'" in err and "reconnect" in err and "dockerparallel down taken" in err
    assert store.load_cluster("taken") == before


def test_up_leaves_alone_a_cluster_that_took_the_name_meanwhile(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = StateStore()
    calls: list[str] = []

    def taken(self: DockerCluster, timeout: float = 300.0) -> None:
        # Another process recorded the name between the CLI's check and this start.
        store.save_cluster(self.name, "somewhere:Provider", {"provider": "somewhere:Provider"})
        raise ClusterExistsError(self.name, f"recorded in {store.path}")

    def record(what: str) -> Any:
        return lambda self, *args, **kwargs: calls.append(what)

    monkeypatch.setattr(DockerCluster, "start_cluster", taken)
    monkeypatch.setattr(DockerCluster, "stop_cluster", record("stop_cluster"))
    monkeypatch.setattr(DockerCluster, "cleanup", record("cleanup"))
    assert _run_main("up", "--name", "raced", "--no-wait") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "'raced'" in err and "reconnect" in err and "dockerparallel down raced" in err
    assert calls == []
    record_after = store.load_cluster("raced")
    assert record_after is not None and record_after.provider == "somewhere:Provider"
