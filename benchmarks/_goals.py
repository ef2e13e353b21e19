"""The PASS/FAIL goal lines of the benchmarks, and the exit status they make.

Each benchmark prints its goal lines with :func:`verdict` and ends with
``raise SystemExit(exit_status())``: the status is 1 when any goal line said
FAIL, so ``make bench`` fails with it.
"""

from __future__ import annotations

import sys

_failed: list[str] = []


def verdict(ok: bool, goal: str = "a goal") -> str:
    """``"PASS"`` or ``"FAIL"`` for a goal line; a FAIL is remembered for :func:`exit_status`."""
    if not ok:
        _failed.append(goal)
    return "PASS" if ok else "FAIL"


def exit_status() -> int:
    """1 (with a line on stderr naming them) if any goal line said FAIL, else 0."""
    if not _failed:
        return 0
    print(f"{len(_failed)} goal line(s) said FAIL: " + "; ".join(_failed), file=sys.stderr)
    return 1
