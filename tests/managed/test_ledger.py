"""WorkerLedger: handle -> worker count, statuses, pending kills and the change hook."""

from __future__ import annotations

from typing import Sequence

import pytest

from dockerparallel.managed import LedgerEntry, WorkerLedger


class HookLog:
    """Records what the ledger's change hook receives."""

    def __init__(self) -> None:
        self.events: list[tuple[str, list[str]]] = []

    def __call__(self, event: str, entries: Sequence[LedgerEntry]) -> None:
        self.events.append((event, [e.handle for e in entries]))


@pytest.fixture
def hook() -> HookLog:
    return HookLog()


@pytest.fixture
def ledger(hook: HookLog) -> WorkerLedger:
    """A ledger holding a (4 workers), b (2 workers) and c (1 worker), oldest first."""
    ledger = WorkerLedger(on_change=hook)
    ledger.add(["a"] * 4 + ["b", "b", "c"])
    hook.events.clear()
    return ledger


def test_repeated_handles_are_stored_once_with_a_count(ledger: WorkerLedger) -> None:
    assert len(ledger) == 3 and "a" in ledger and "zz" not in ledger
    assert [(e.handle, e.count, e.status) for e in ledger] == [
        ("a", 4, "initializing"), ("b", 2, "initializing"), ("c", 1, "initializing")]
    assert ledger.expanded_handles() == ["a"] * 4 + ["b", "b", "c"]
    assert ledger.workers() == 7


def test_adding_a_known_handle_adds_workers_and_keeps_its_age(ledger: WorkerLedger) -> None:
    seq = ledger.get("a").seq  # type: ignore[union-attr]
    ledger.add(["d", "a"])
    entry = ledger.get("a")
    assert entry is not None and entry.count == 5 and entry.seq == seq
    assert ledger.handles() == ["a", "b", "c", "d"]


def test_seq_grows_with_each_new_handle(ledger: WorkerLedger) -> None:
    ledger.add(["d"])
    seqs = [e.seq for e in ledger]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4


def test_statuses_and_worker_counts(ledger: WorkerLedger, hook: HookLog) -> None:
    ledger.apply_status(["a", "b", "c"], ["running", "initializing", "stopped"])
    assert hook.events == [("status", ["a", "c"])]  # b did not change
    assert (ledger.workers("running"), ledger.workers("initializing"), ledger.workers("stopped")) == (4, 2, 0)
    assert [e.handle for e in ledger.active_entries()] == ["a", "b"]
    assert [e.handle for e in ledger.forget_stopped()] == ["c"]
    assert ledger.handles() == ["a", "b"]


def test_status_of_unknown_handles_is_ignored(ledger: WorkerLedger, hook: HookLog) -> None:
    ledger.apply_status(["zz"], ["running"])
    assert hook.events == [] and "zz" not in ledger


def test_pending_kills_do_not_count_as_workers(ledger: WorkerLedger, hook: HookLog) -> None:
    ledger.mark_kill_pending(["b", "zz"])
    assert hook.events == [("kill_pending", ["b"])]
    assert ledger.pending_kills() == ["b"]
    assert ledger.workers() == 5 and "b" in ledger
    assert ledger.expanded_handles() == ["a"] * 4 + ["c"]
    assert not ledger.get("b").active  # type: ignore[union-attr]


def test_remove_ignores_unknown_handles(ledger: WorkerLedger, hook: HookLog) -> None:
    removed = ledger.remove(["b", "zz"])
    assert [e.handle for e in removed] == ["b"] and ledger.handles() == ["a", "c"]
    assert hook.events == [("remove", ["b"])]


def test_hook_is_not_called_when_nothing_changes(hook: HookLog) -> None:
    ledger = WorkerLedger(on_change=hook)
    ledger.add([])
    ledger.remove(["x"])
    ledger.mark_kill_pending([])
    assert ledger.forget_stopped() == []
    assert hook.events == []


def test_add_reports_each_touched_entry_once(hook: HookLog) -> None:
    entries = WorkerLedger(on_change=hook).add(["x", "y", "x"])
    assert [(e.handle, e.count) for e in entries] == [("x", 2), ("y", 1)]
    assert hook.events == [("add", ["x", "y"])]


def test_iteration_is_a_snapshot(ledger: WorkerLedger) -> None:
    for entry in ledger:
        ledger.remove([entry.handle])
    assert len(ledger) == 0


def test_entry_active_property() -> None:
    assert LedgerEntry("h", 1).active
    assert not LedgerEntry("h", 1, status="stopped").active
    assert not LedgerEntry("h", 1, kill_pending=True).active
