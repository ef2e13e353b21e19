"""Polling with a deadline."""

from __future__ import annotations

import time
from typing import Callable

from ._validation import check_seconds


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.25
) -> None:
    """Call ``condition`` until it is true; raise ``TimeoutError`` after ``timeout`` seconds."""
    timeout = check_seconds(timeout, "timeout")
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)
