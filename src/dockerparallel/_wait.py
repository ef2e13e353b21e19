"""Polling with a deadline."""

from __future__ import annotations

import time
from typing import Callable

from ._validation import check_seconds


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.25, max_poll: float | None = None
) -> None:
    """Call ``condition`` until it is true; raise ``TimeoutError`` after ``timeout`` seconds.

    The pause between calls is ``poll``, or with ``max_poll`` a twentieth of
    the time waited so far, between ``poll`` and ``max_poll``: a long wait asks
    less often, and a wait ends at most about 5 % late.
    """
    timeout = check_seconds(timeout, "timeout")
    started = time.monotonic()
    deadline = started + timeout
    longest = max(poll, max_poll or poll)
    while not condition():
        now = time.monotonic()
        if now >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(min(longest, max(poll, 0.05 * (now - started))))
