"""The worker ledger: which handles the provider returned, and how many workers each holds."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping, Sequence

from ..provider import WorkerStatus

#: Called with ``(event, entries)`` after each change; ``event`` is one of
#: ``"add"``, ``"status"``, ``"remove"``, ``"kill_pending"``.
ChangeHook = Callable[[str, Sequence["LedgerEntry"]], None]


@dataclass(slots=True)
class LedgerEntry:
    """One handle: a lifecycle on the cloud holding ``count`` workers."""

    handle: str
    count: int
    status: WorkerStatus = WorkerStatus.INITIALIZING
    seq: int = 0
    kill_pending: bool = False

    @property
    def active(self) -> bool:
        """Whether the entry counts as a worker (alive and not being killed)."""
        return not self.kill_pending and self.status != WorkerStatus.STOPPED


class WorkerLedger:
    """Handle -> worker count, with the last known status of each handle.

    A handle returned several times (workers sharing a container) is stored
    once with its count. Entries keep the order of their first launch;
    ``seq`` grows with it, so a larger ``seq`` is a newer handle.

    Parameters
    ----------
    on_change : callable, optional
        Persistence hook called after every change with the event name and
        the entries concerned.
    """

    def __init__(self, on_change: ChangeHook | None = None) -> None:
        self._entries: dict[str, LedgerEntry] = {}
        self._seq = itertools.count(1)
        self.on_change = on_change

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, handle: object) -> bool:
        return handle in self._entries

    def known(self, handles: Iterable[str]) -> set[str]:
        """Those of ``handles`` the ledger holds."""
        entries = self._entries
        return {h for h in handles if h in entries}

    def __iter__(self) -> Iterator[LedgerEntry]:
        return iter(list(self._entries.values()))

    def _notify(self, event: str, entries: Sequence[LedgerEntry]) -> None:
        if self.on_change is not None and entries:
            self.on_change(event, entries)

    def add(self, handles: Iterable[str], status: WorkerStatus = WorkerStatus.INITIALIZING) -> list[LedgerEntry]:
        """Record ``handles``; a repeated handle adds one worker to its entry."""
        return self.add_counts(Counter(handles), status)

    def add_counts(self, counts: Mapping[str, int],
                   status: WorkerStatus = WorkerStatus.INITIALIZING) -> list[LedgerEntry]:
        """Record handle -> workers (in the mapping's order); a known handle gets the workers added."""
        entries, seq, touched = self._entries, self._seq, []
        for handle, count in counts.items():
            entry = entries.get(handle)
            if entry is None:
                entry = entries[handle] = LedgerEntry(handle, 0, status, next(seq))
            entry.count += count
            touched.append(entry)
        self._notify("add", touched)
        return touched

    def get(self, handle: str) -> LedgerEntry | None:
        """Return the entry of ``handle``, or ``None``."""
        return self._entries.get(handle)

    def handles(self) -> list[str]:
        """Every recorded handle, once each, oldest first."""
        return list(self._entries)

    def expanded_handles(self) -> list[str]:
        """Every recorded handle repeated by its count (pending kills excluded)."""
        return [e.handle for e in self._entries.values() if not e.kill_pending for _ in range(e.count)]

    def active_entries(self) -> list[LedgerEntry]:
        """Entries that count as workers."""
        return [e for e in self._entries.values() if e.active]

    def pending_kills(self) -> list[str]:
        """Handles whose kill failed and must be retried."""
        return [e.handle for e in self._entries.values() if e.kill_pending]

    def workers(self, status: WorkerStatus | str | None = None) -> int:
        """Number of active workers, optionally only those in ``status``."""
        return sum(e.count for e in self._entries.values() if e.active and (status is None or e.status == status))

    def apply_status(self, handles: Sequence[str], statuses: Sequence[WorkerStatus]) -> None:
        """Store the statuses reported for ``handles``."""
        changed = []
        for handle, status in zip(handles, statuses):
            entry = self._entries.get(handle)
            if entry is not None and entry.status != status:
                entry.status = status
                changed.append(entry)
        self._notify("status", changed)

    def stopped(self) -> list[str]:
        """Handles whose last status is ``"stopped"`` (to be killed, then forgotten)."""
        return [e.handle for e in self._entries.values() if e.status == WorkerStatus.STOPPED]

    def forget_stopped(self) -> list[LedgerEntry]:
        """Drop every entry whose last status is ``"stopped"`` and return them."""
        return self.remove(self.stopped())

    def remove(self, handles: Iterable[str]) -> list[LedgerEntry]:
        """Forget ``handles``; unknown handles are ignored."""
        removed = [e for e in (self._entries.pop(h, None) for h in handles) if e is not None]
        self._notify("remove", removed)
        return removed

    def mark_kill_pending(self, handles: Iterable[str]) -> None:
        """Mark ``handles`` as to be killed again later."""
        marked = []
        for handle in handles:
            entry = self._entries.get(handle)
            if entry is not None:
                entry.kill_pending = True
                marked.append(entry)
        self._notify("kill_pending", marked)
