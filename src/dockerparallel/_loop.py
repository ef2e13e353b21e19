"""A background loop: a daemon thread that runs one step every interval until stopped."""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger("dockerparallel.loop")


class BackgroundLoop:
    """Calls :meth:`step` every ``interval`` seconds in a daemon thread.

    Subclasses implement :meth:`step` and may override :meth:`before_loop`
    and :meth:`after_loop`. A step that raises is logged and the loop goes
    on: one failed cycle must not end it.
    """

    interval: float

    def __init__(self, name: str) -> None:
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def step(self) -> None:
        """One cycle."""
        raise NotImplementedError

    def before_loop(self) -> None:
        """Called in the thread before the first cycle."""

    def after_loop(self) -> None:
        """Called in the thread after the last cycle, whatever happened."""

    def start(self) -> None:
        """Start the thread (nothing happens if it runs already)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 120.0) -> None:
        """Stop the loop and wait for the running cycle to end."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=timeout)

    def _run(self) -> None:
        try:
            self.before_loop()
            while not self._stop.wait(self.interval):
                try:
                    self.step()
                except Exception:
                    logger.exception("%s: a cycle failed", self._name)
        except Exception:
            logger.exception("%s stopped", self._name)
        finally:
            self.after_loop()
