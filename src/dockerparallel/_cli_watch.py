"""``dockerparallel status --watch``: the status table, refreshed in place until Ctrl-C."""

from __future__ import annotations

import re
import time

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from ._cli_output import ClientPool, live_row, table
from .state import StateStore

#: Unit -> seconds, for :func:`parse_interval`.
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "": 1.0}
_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|)\s*")
#: The shortest and longest refresh intervals.
MIN_INTERVAL, MAX_INTERVAL = 0.1, 3600.0


def parse_interval(text: str) -> float:
    """Seconds in a duration such as ``2s``, ``2``, ``500ms`` or ``1m``.

    Raises
    ------
    ValueError
        When ``text`` is not such a duration, or is not between 0.1 s and 1 h.
    """
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"interval must be a duration such as 2s, 500ms or 1m; got {text!r}")
    seconds = float(match[1]) * _UNITS[match[2]]
    if not MIN_INTERVAL <= seconds <= MAX_INTERVAL:
        raise ValueError(f"interval must be between {MIN_INTERVAL:g} s and 1 h; got {text!r}")
    return seconds


def watch(store: StateStore, name: str | None, interval: float, console: Console) -> None:
    """Show the status table of ``name`` (every cluster when ``None``) every ``interval`` seconds.

    On a terminal the table is redrawn in place; otherwise (output to a pipe
    or a file) each table is printed after the one before. Ctrl-C ends it and
    returns normally; the last table stays on screen.
    """
    clients = ClientPool()
    try:
        if console.is_terminal:
            _redraw(store, name, interval, console, clients)
        else:
            while True:
                console.print(_render(store, name, interval, clients))
                console.file.flush()
                time.sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        clients.close()


def _redraw(store: StateStore, name: str | None, interval: float, console: Console, clients: ClientPool) -> None:
    """Redraw the table in place with a Rich ``Live`` display, until Ctrl-C."""
    with Live(_render(store, name, interval, clients), console=console, auto_refresh=False) as live:
        while True:
            time.sleep(interval)
            live.update(_render(store, name, interval, clients), refresh=True)


def _render(store: StateStore, name: str | None, interval: float, clients: ClientPool) -> Table:
    """The table as it is now, with the errors of its rows as its caption."""
    if name is None:
        records = store.list_clusters()
    else:
        record = store.load_cluster(name)
        records = [] if record is None else [record]
    rows = [live_row(store, record, clients) for record in records]
    notes = [escape(row.error) for row in rows if row.error]
    if name is not None and not records:
        notes.append(f"no cluster named {escape(repr(name))} any more")
    title = f"dockerparallel status at {time.strftime('%H:%M:%S')}, every {interval:g} s (Ctrl-C to stop)"
    return table(rows, title=title, caption="\n".join(notes) or None)
