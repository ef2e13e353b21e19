"""Polling with a deadline."""

from __future__ import annotations

import time
from typing import Callable


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.25
) -> None:
    """Call ``condition`` until it is true; raise ``TimeoutError`` after ``timeout`` seconds."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds, got {type(timeout).__name__} {timeout!r}")
    if not 0 <= timeout < float("inf"):
        raise ValueError(f"timeout must be a finite, non-negative number of seconds, got {timeout!r}")
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)
