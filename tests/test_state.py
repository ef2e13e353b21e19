"""The state store: records survive a round trip, a broken file is named in the error, writers share it.

The file mode (0600) is a security requirement and is tested in ``test_security.py``;
random bytes in place of the file are rows of ``test_bad_input.py``.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any, Callable

import pytest

from dockerparallel import DockerCluster
from dockerparallel._errors import ClusterExistsError
from dockerparallel.state import StateStore, StateStoreError, default_state_path
from dockerparallel.testing import FakeCloudProvider

from ._helpers import make_cluster

SPEC = {"provider": "x", "expected": 3, "nested": {"list": [1, 2], "none": None}}


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(tmp_path / "state.sqlite3")


def test_clusters_round_trip(store: StateStore) -> None:
    assert store.load_cluster("a") is None and store.list_clusters() == []
    store.save_cluster("a", "pkg:A", SPEC)
    store.save_cluster("b", "pkg:B", {})
    first = store.load_cluster("a")
    assert first is not None and (first.name, first.provider, first.spec) == ("a", "pkg:A", SPEC)
    time.sleep(0.01)
    store.save_cluster("a", "pkg:A2", {"expected": 5})
    again = store.load_cluster("a")
    assert again is not None and (again.provider, again.spec) == ("pkg:A2", {"expected": 5})
    assert again.created == first.created and again.updated > first.updated
    assert [r.name for r in store.list_clusters()] == ["a", "b"]  # oldest first
    assert store.delete_cluster("a") is True
    assert store.delete_cluster("never-there") is False
    assert [r.name for r in store.list_clusters()] == ["b"]


def test_resources_round_trip(store: StateStore) -> None:
    store.put_resource("a", "h1", "server", 1, {"pid": 1, "port": "8786"})
    store.put_resource("a", "h2", "worker", 4, {"pid": 2})
    store.upsert_resources("a", "worker", [("h2", 3), ("h3", 1)])  # h2 keeps its data, gets the count
    store.put_resource("b", "h1", "worker", 2, {})  # the same handle in another cluster is another row
    rows = store.resources("a")
    assert [(r.handle, r.role, r.count, r.data) for r in rows] == [
        ("h1", "server", 1, {"pid": 1, "port": "8786"}), ("h2", "worker", 3, {"pid": 2}), ("h3", "worker", 1, {}),
    ]
    assert [r.handle for r in store.resources("a", "worker")] == ["h2", "h3"]
    store.delete_resources("a", ["h2", "unknown"])
    assert [r.handle for r in store.resources("a")] == ["h1", "h3"]
    store.save_cluster("a", "pkg:A", {})
    store.delete_cluster("a")
    assert store.resources("a") == [] and [r.count for r in store.resources("b")] == [2]


def test_a_cluster_record_rebuilds_the_cluster(store: StateStore) -> None:
    cluster = make_cluster(FakeCloudProvider(), state=store, worker_number=7)
    cluster.start_cluster(timeout=5)  # a cluster is recorded while it starts or runs
    try:
        again = DockerCluster.reconnect(cluster.name, state=store)
        assert (again.expected_workers, again.worker_container, again.server_container) == (
            7, cluster.worker_container, cluster.server_container)
    finally:
        cluster.stop_cluster()


def test_a_cluster_record_hides_its_spec_in_repr(store: StateStore) -> None:
    store.save_cluster("a", "pkg:A", {"security": {"tls_worker_key": "-----BEGIN PRIVATE KEY-----"}})
    record = store.load_cluster("a")
    assert "PRIVATE KEY" not in repr(record) and "security" not in repr(record) and "'a'" in repr(record)
    assert "StateStore(" in repr(store) and str(store.path) in repr(store)


# -- the path is absolute ---------------------------------------------------------------------------


def test_the_same_relative_state_path_in_two_directories_is_two_stores(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKERPARALLEL_STATE", "state.sqlite3")
    paths = []
    for place in ("one", "two"):
        (tmp_path / place).mkdir()
        monkeypatch.chdir(tmp_path / place)
        assert default_state_path() == tmp_path / place / "state.sqlite3"
        paths.append(StateStore().path)
    assert paths == [tmp_path / "one" / "state.sqlite3", tmp_path / "two" / "state.sqlite3"]
    assert all(path.is_absolute() for path in paths)


def test_an_explicit_path_is_expanded_and_made_absolute_when_the_store_is_made(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert StateStore("~/x/state.sqlite3").path == tmp_path / "home" / "x" / "state.sqlite3"
    monkeypatch.setenv("DOCKERPARALLEL_STATE", "~/y.sqlite3")
    assert StateStore().path == default_state_path() == tmp_path / "home" / "y.sqlite3"
    monkeypatch.chdir(tmp_path)
    store = StateStore(Path("sub") / ".." / "rel.sqlite3")
    (tmp_path / "home").mkdir()
    monkeypatch.chdir(tmp_path / "home")  # later moves do not change where the store is
    store.save_cluster("a", "pkg:A", {})
    assert store.path == tmp_path / "rel.sqlite3" and store.path.exists()


# -- one owner per name -----------------------------------------------------------------------------


def test_a_claim_records_the_owner_and_only_that_owner_may_claim_again(store: StateStore) -> None:
    store.claim_cluster("a", "pkg:A", {"expected": 1}, owner="me")
    record = store.load_cluster("a")
    assert record is not None and record.spec == {"expected": 1, "owner": "me"}
    store.claim_cluster("a", "pkg:A2", {"expected": 2}, owner="me")
    again = store.load_cluster("a")
    assert again is not None and (again.provider, again.spec) == ("pkg:A2", {"expected": 2, "owner": "me"})
    assert again.created == record.created
    with pytest.raises(ClusterExistsError) as excinfo:
        store.claim_cluster("a", "pkg:B", {}, owner="you")
    assert excinfo.value.name == "a" and str(store.path) in str(excinfo.value)
    assert store.load_cluster("a") == again
    store.save_cluster("legacy", "pkg:L", {})  # a record without an owner is nobody's to take
    with pytest.raises(ClusterExistsError):
        store.claim_cluster("legacy", "pkg:L", {}, owner="me")
    with pytest.raises(TypeError, match="owner"):
        store.claim_cluster("b", "pkg:B", {}, owner=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="owner"):
        store.claim_cluster("b", "pkg:B", {}, owner="")
    store.put_resource("a", "h", "worker", 1, {})  # the store is usable after a refused claim


def test_only_the_owner_deletes_a_claimed_record(store: StateStore) -> None:
    store.claim_cluster("a", "pkg:A", {}, owner="me")
    store.put_resource("a", "h", "worker", 1, {})
    assert store.delete_cluster("a", owner="you") is False
    assert store.delete_cluster_if_owner("a", "you") is False
    assert store.load_cluster("a") is not None and len(store.resources("a")) == 1
    assert store.delete_cluster_if_owner("a", "me") is True
    assert store.load_cluster("a") is None and store.resources("a") == []
    assert store.delete_cluster("a", owner="me") is False


def test_of_threads_claiming_one_name_at_once_exactly_one_wins(store: StateStore) -> None:
    barrier, outcomes = threading.Barrier(8), []

    def claim(who: str) -> None:
        mine = StateStore(store.path)
        barrier.wait()
        try:
            mine.claim_cluster("race", "pkg:P", {}, owner=who)
            outcomes.append(("won", who))
        except ClusterExistsError:
            outcomes.append(("lost", who))

    threads = [threading.Thread(target=claim, args=(f"t{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    winners = [who for outcome, who in outcomes if outcome == "won"]
    assert len(outcomes) == 8 and len(winners) == 1
    record = store.load_cluster("race")
    assert record is not None and record.spec["owner"] == winners[0]


CLAIMER = textwrap.dedent("""
    import sys, time
    from dockerparallel._errors import ClusterExistsError
    from dockerparallel.state import StateStore
    path, who, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
    store = StateStore(path)
    while time.time() < start:
        time.sleep(0.001)
    try:
        store.claim_cluster("race", "pkg:P", {}, owner=who)
        print("won")
    except ClusterExistsError:
        print("lost")
""")


def test_of_processes_claiming_one_name_at_once_exactly_one_wins(tmp_path: Path) -> None:
    path = tmp_path / "shared" / "state.sqlite3"
    start = time.time() + 1.5
    claimers = [subprocess.Popen([sys.executable, "-c", CLAIMER, str(path), who, str(start)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for who in "abc"]
    try:
        results = [c.communicate(timeout=120) for c in claimers]
    finally:
        for claimer in claimers:
            claimer.kill()
            claimer.wait(timeout=10)
    assert sorted(out.strip() for out, _ in results) == ["lost", "lost", "won"], [err for _, err in results]
    record = StateStore(path).load_cluster("race")
    winner = "abc"[[out.strip() for out, _ in results].index("won")]
    assert record is not None and record.spec["owner"] == winner


# -- a broken file -------------------------------------------------------------------------------


def execute(path: Path, *statements: str) -> None:
    """Run SQL on the file behind the store's back, and close (so no WAL is left to fold in later)."""
    with closing(sqlite3.connect(path)) as conn, conn:
        for statement in statements:
            conn.execute(statement)


def _wrong_schema(path: Path) -> None:
    execute(path, "CREATE TABLE clusters (name TEXT PRIMARY KEY)", "INSERT INTO clusters VALUES ('a')")


def _spec_not_json(path: Path) -> None:
    StateStore(path).save_cluster("a", "pkg:A", {})
    execute(path, "UPDATE clusters SET spec = '{not json'")


def _spec_not_an_object(path: Path) -> None:
    StateStore(path).save_cluster("a", "pkg:A", {})
    execute(path, "UPDATE clusters SET spec = '[1, 2]'")


def _data_not_json(path: Path) -> None:
    StateStore(path).put_resource("a", "h", "worker", 1, {})
    execute(path, "UPDATE resources SET data = 'garbage'")


def _truncated(path: Path) -> None:
    store = StateStore(path)
    for i in range(200):
        store.put_resource("a", f"h{i}", "worker", 1, {"padding": "x" * 200})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


BROKEN: dict[str, tuple[Callable[[Path], None], Callable[[StateStore], Any]]] = {
    "wrong schema": (_wrong_schema, lambda s: s.list_clusters()),
    "spec not JSON": (_spec_not_json, lambda s: s.load_cluster("a")),
    "spec not an object": (_spec_not_an_object, lambda s: s.list_clusters()),
    "resource data not JSON": (_data_not_json, lambda s: s.resources("a")),
    "truncated file": (_truncated, lambda s: s.resources("a")),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_file_is_named_and_left_as_it_is(case: str, tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    damage, call = BROKEN[case]
    damage(path)
    before = path.read_bytes()
    with pytest.raises(StateStoreError) as excinfo:
        call(StateStore(path))
    assert str(path) in str(excinfo.value)
    assert path.read_bytes() == before


@pytest.mark.parametrize("spec, word", [
    ({}, "missing field 'provider'"),
    ({"provider": "no_such_module_xyz:Provider"}, "no_such_module_xyz"),
    ({"provider": "dockerparallel.testing.fake:NoSuchClass"}, "NoSuchClass"),
    ({"provider": "dockerparallel.container:DockerHardware"}, "is not a CloudProvider"),
], ids=["incomplete", "no such module", "no such class", "not a provider"])
def test_a_record_that_cannot_be_rebuilt_names_the_file_and_the_cluster(store: StateStore, spec: dict[str, Any],
                                                                      word: str) -> None:
    store.save_cluster("broken", "pkg:X", spec)
    before = store.list_clusters()
    with pytest.raises(StateStoreError) as excinfo:
        DockerCluster.reconnect("broken", state=store)
    message = str(excinfo.value)
    assert str(store.path) in message and "'broken'" in message and word in message, message
    assert store.list_clusters() == before


@pytest.mark.parametrize("where", ["a directory", "under a file"])
def test_a_path_that_cannot_be_a_file_is_named(where: str, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    path = tmp_path / "dir" if where == "a directory" else tmp_path / "file" / "state.sqlite3"
    (tmp_path / "dir").mkdir()
    with pytest.raises(StateStoreError, match="cannot create state file") as excinfo:
        StateStore(path).list_clusters()
    assert str(path) in str(excinfo.value)
    assert (tmp_path / "file").read_text() == "x"


def test_the_path_must_be_a_path() -> None:
    with pytest.raises(TypeError, match="path must be"):
        StateStore(5)  # type: ignore[arg-type]


# -- several processes ------------------------------------------------------------------------------

WRITER = textwrap.dedent("""
    import sys, time
    from dockerparallel.state import StateStore
    path, who, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
    while time.time() < start:
        time.sleep(0.001)
    store = StateStore(path)  # a new file: both processes also race to create the schema
    store.save_cluster(who, "pkg:P", {"who": who})
    for i in range(200):
        store.put_resource(who, f"{who}-{i}", "worker", 1, {"i": i})
        if i % 50 == 0:
            store.resources(who)
    print("ok")
""")


def test_two_processes_write_at_once_without_errors_or_lost_rows(tmp_path: Path) -> None:
    path = tmp_path / "shared" / "state.sqlite3"
    start = time.time() + 1.0  # both start writing at the same moment, on a file neither has created
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), who, str(start)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for who in ("a", "b")]
    results = [w.communicate(timeout=120) for w in writers]
    for writer, (out, err) in zip(writers, results):
        assert writer.returncode == 0 and out.strip() == "ok", err
    store = StateStore(path)
    assert sorted(r.name for r in store.list_clusters()) == ["a", "b"]
    for who in ("a", "b"):
        rows = store.resources(who)
        assert sorted(r.data["i"] for r in rows) == list(range(200))
