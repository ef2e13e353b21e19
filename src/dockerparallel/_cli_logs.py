"""``dockerparallel logs``: what a cluster's containers printed, under ``tail``-like headers."""

from __future__ import annotations

import time
from typing import Callable, Mapping, TextIO

#: The key of the server's entry in :meth:`~dockerparallel.CloudProvider.get_docker_logs`.
SERVER = "server"
#: The prefix of a worker container's key.
WORKER = "worker "
#: At most how much of the first line of a text that no longer starts with the text printed is looked for in it.
_PROBE = 64

Logs = Mapping[str, str]


def check_logs(logs: object, provider: str) -> dict[str, str]:
    """``logs`` as returned by ``provider``'s ``get_docker_logs``, checked to be a dict of str to str."""
    if not isinstance(logs, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in logs.items()):
        raise TypeError(f"{provider}.get_docker_logs must return a dict of str to str, got {type(logs).__name__}")
    return dict(logs)


def select(logs: Logs, workers: list[str], server: bool) -> dict[str, str]:
    """The entries asked for: the servers' with ``server``, the workers' whose handle contains one of ``workers``.

    With neither, every entry. The servers' entries are ``server`` and, on a
    provider that keeps them, ``server <handle>`` of earlier servers.
    """
    if not workers and not server:
        return dict(logs)
    kept = {}
    for key, text in logs.items():
        if server and (key == SERVER or key.startswith(SERVER + " ")):
            kept[key] = text
        elif key.startswith(WORKER) and any(part in key[len(WORKER):] for part in workers):
            kept[key] = text
    return kept


def header(key: str) -> str:
    """The line above an entry, as ``tail`` writes it for each file."""
    return f"==> {key} <==\n"


def print_logs(logs: Logs, out: TextIO) -> None:
    """Write every entry under its header, a blank line between entries."""
    for index, (key, text) in enumerate(logs.items()):
        out.write(("\n" if index else "") + header(key) + text)
        if text and not text.endswith("\n"):
            out.write("\n")
    out.flush()


def new_text(old: str, new: str) -> str:
    """What ``new`` adds to ``old``, the text printed before.

    A provider may return only the newest lines, so ``new`` need not start
    with ``old``: it may start with the last lines of ``old`` (whole lines;
    the most of them taken). Otherwise (a new container, a trimmed log)
    ``new`` is new as a whole.
    """
    if new.startswith(old):
        return new[len(old):]
    probe = new[:_PROBE].partition("\n")[0]
    start = old.find(probe)
    while start >= 0:
        if (start == 0 or old[start - 1] == "\n") and new.startswith(old[start:]):
            return new[len(old) - start:]
        start = old.find(probe, start + 1)
    return new


def follow(fetch: Callable[[], Logs], out: TextIO, interval: float = 1.0,
           sleep: Callable[[float], None] = time.sleep) -> None:
    """Print the entries, then what they add every ``interval`` seconds, until Ctrl-C.

    A header is written whenever the entry changes, as ``tail -f`` does with
    several files.
    """
    seen: dict[str, str] = {}
    state = {"last": "", "line_start": True}
    try:
        while True:
            for key, text in fetch().items():
                _write_new(out, key, new_text(seen.get(key, ""), text), state)
                seen[key] = text
            out.flush()
            sleep(interval)
    except KeyboardInterrupt:
        pass


def _write_new(out: TextIO, key: str, text: str, state: dict[str, object]) -> None:
    if not text:
        return
    if key != state["last"]:
        if not state["line_start"]:
            out.write("\n")
        out.write(("\n" if state["last"] else "") + header(key))
        state["last"] = key
    out.write(text)
    state["line_start"] = text.endswith("\n")
