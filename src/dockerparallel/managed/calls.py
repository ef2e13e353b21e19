"""Checked calls to a provider: a deadline on every call, and its answer checked against the contract.

A provider method is called directly (a bound method, never a name looked
up with ``getattr``). Past its deadline the caller gets
:class:`~dockerparallel.ProviderTimeout` naming the provider class and the
method, and the call goes on in a daemon thread; whatever it returns later
is handed to an ``on_late`` callback, so that late handles are still
recorded.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any, Callable, Iterable, Sequence

from .._errors import DockerParallelError, PartialLaunchError, ProviderError, ProviderTimeout
from ..provider import WorkerStatus

#: Seconds a provider call may take before :class:`ProviderTimeout` (``None``: no deadline).
DEFAULT_CALL_TIMEOUT = 600.0

#: Status strings (and enum members) accepted from a provider -> the enum.
_STATUS: dict[object, WorkerStatus] = {**{s.value: s for s in WorkerStatus}, **{s: s for s in WorkerStatus}}


class _Call:
    """One call running in its own daemon thread; the first of result or deadline wins."""

    def __init__(self, func: Callable[..., Any], args: tuple[Any, ...],
                 on_late: Callable[[Any], None] | None) -> None:
        self.func, self.args, self.on_late = func, args, on_late
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.abandoned = False
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.func(*self.args)
        except BaseException as exc:  # handed to the caller, or dropped after its deadline
            self.error = exc
        with self.lock:
            self.done.set()
            late = self.abandoned
        if late and self.error is None and self.on_late is not None:
            self.on_late(self.result)

    def wait(self, timeout: float) -> bool:
        """Whether the call finished in time; if not, it is marked abandoned."""
        if self.done.wait(timeout):
            return True
        with self.lock:
            if self.done.is_set():
                return True
            self.abandoned = True
            return False


def call_with_deadline(provider: object, method: str, func: Callable[..., Any], args: tuple[Any, ...],
                       timeout: float | None, on_late: Callable[[Any], None] | None = None) -> Any:
    """``func(*args)`` within ``timeout`` seconds, else :class:`ProviderTimeout`.

    An exception of dockerparallel passes through; any other becomes a
    :class:`ProviderError` naming ``provider``'s class and ``method``.
    """
    if timeout is None:
        return _translate(provider, method, lambda: func(*args))
    call = _Call(func, args, on_late)
    threading.Thread(target=call.run, name=f"dockerparallel-{method}", daemon=True).start()
    if not call.wait(timeout):
        raise ProviderTimeout(provider, method, timeout)
    if call.error is not None:
        error = call.error
        return _translate(provider, method, lambda: _reraise(error))
    return call.result


def _reraise(error: BaseException) -> Any:
    raise error


def _translate(provider: object, method: str, thunk: Callable[[], Any]) -> Any:
    try:
        return thunk()
    except DockerParallelError:
        raise
    except Exception as exc:
        raise ProviderError(provider, method, f"raised {exc!r}") from exc


def as_handle(value: object) -> str | None:
    """A handle as a string: ``bytes`` are decoded; other non-strings and empty ones are ``None``."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "surrogateescape")
    return value if isinstance(value, str) and value else None


def salvage_handles(result: object) -> list[str]:
    """Every usable handle in a run result of any shape, so that none is lost."""
    if isinstance(result, (str, bytes)):
        result = [result]
    if not isinstance(result, Iterable):
        return []
    return [h for h in map(as_handle, result) if h is not None]


def well_formed_counts(result: object) -> Counter[str] | None:
    """Handle -> workers of a run result that is a list of non-empty strings (checked per unique handle), else ``None``."""
    if not isinstance(result, (list, tuple)):
        return None
    try:
        counts = Counter(result)
    except TypeError:  # an unhashable item
        return None
    if all(type(h) is str and h for h in counts):
        return counts
    return None


def check_run_result(provider: object, method: str, result: object, asked: int,
                     known: set[str], well_formed: bool = False) -> None:
    """Raise if a run result (already recorded) breaks the contract.

    ``known`` holds the handles that were in the ledger before this call: a
    run call must return new lifecycles only. ``well_formed``: the result is
    known to be a list of non-empty strings.
    """
    if not isinstance(result, (list, tuple)):
        kind = "a single string" if isinstance(result, (str, bytes)) else type(result).__name__
        raise ProviderError(provider, method, f"must return a list of handles, got {kind}; "
                            f"the {len(salvage_handles(result))} handle(s) in it are recorded")
    bad = [] if well_formed else [h for h in result if not (isinstance(h, str) and h)]
    if bad:
        raise ProviderError(provider, method, f"returned handles that are not non-empty strings: {bad[:3]!r}; "
                            "every usable one is recorded (bytes decoded)")
    reused = sorted(known)
    if reused:
        raise ProviderError(provider, method, f"returned handle(s) already in the ledger: {reused[:3]!r}; "
                            "a run call must start new containers (their workers are counted)")
    if len(result) > asked:
        raise ProviderError(provider, method, f"returned {len(result)} handles for {asked} workers; all are recorded")
    if len(result) < asked:
        raise PartialLaunchError(provider, method, asked, len(result))


def check_statuses(provider: object, method: str, result: object, count: int) -> list[WorkerStatus]:
    """The statuses in ``result`` as :class:`WorkerStatus`, or a :class:`ProviderError`."""
    if not isinstance(result, (list, tuple)) or len(result) != count:
        got = len(result) if isinstance(result, (list, tuple)) else type(result).__name__
        raise ProviderError(provider, method, f"must return {count} statuses, got {got}")
    try:
        return [_STATUS[s] for s in result]
    except (KeyError, TypeError):
        unknown = sorted({repr(s) for s in result if not isinstance(s, str) or s not in _STATUS})
        raise ProviderError(provider, method, f"returned unknown status {', '.join(unknown)}; "
                            "expected 'initializing', 'running' or 'stopped'") from None


def check_kills(provider: object, method: str, result: object, count: int) -> list[bool]:
    """The kill results in ``result``, or a :class:`ProviderError`."""
    if not isinstance(result, (list, tuple)) or len(result) != count:
        got = len(result) if isinstance(result, (list, tuple)) else type(result).__name__
        raise ProviderError(provider, method, f"must return {count} booleans, got {got}")
    if not all(isinstance(ok, bool) for ok in result):
        raise ProviderError(provider, method, "must return booleans (True for a successful kill)")
    return list(result)


def unique(handles: Sequence[str]) -> list[str]:
    """``handles`` without repeats, in order."""
    return list(dict.fromkeys(handles))
