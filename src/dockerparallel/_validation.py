"""Checks of user input shared by the public API.

Each check raises ``TypeError`` or ``ValueError`` whose message names the
argument, and returns the normalised value.
"""

from __future__ import annotations

import datetime
import math
import operator
import re
from typing import Any


#: Upper bound on a worker number; anything above is a typo, not a cluster.
MAX_WORKERS = 100_000

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def check_count(value: Any, name: str, *, minimum: int = 0, maximum: int = MAX_WORKERS) -> int:
    """Return ``value`` as an ``int`` in ``[minimum, maximum]`` or raise.

    Integral floats (``3.0``) are accepted; ``bool``, fractions, NaN and
    infinities are not.
    """
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a whole number, not a bool ({value!r})")
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value) or not value.is_integer():
            raise ValueError(f"{name} must be a whole number, got {value!r}")
        value = int(value)
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(
            f"{name} must be a whole number, got {type(value).__name__} {value!r}"
        ) from None
    if number < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {number}")
    if number > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {number}")
    return number


def check_name(value: Any, name: str = "name") -> str:
    """Return a cluster name: 1-63 letters, digits, ``_ . -``, starting alphanumeric."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {type(value).__name__}")
    if not _NAME_RE.fullmatch(value):
        raise ValueError(
            f"{name} must be 1-63 characters of letters, digits, '_', '.' or '-', "
            f"starting with a letter or digit; got {value!r}"
        )
    return value


def check_verbose(value: Any) -> int:
    """Return a verbose level (0, 1 or 2)."""
    return check_count(value, "verbose", maximum=2)


def check_seconds(value: Any, name: str, *, allow_zero: bool = True) -> float:
    """Return a finite, non-negative duration in seconds (positive unless ``allow_zero``).

    Parameters
    ----------
    value : int, float, str or datetime.timedelta
        A number of seconds, or a Dask time string (``"30s"``, ``"500ms"``,
        ``"5 minutes"``; a bare number string is seconds), read with
        :func:`dask.utils.parse_timedelta`.
    name : str
        The argument's name, used in error messages.
    allow_zero : bool
        Whether zero is a valid duration.

    Returns
    -------
    float
        The duration in seconds.

    Raises
    ------
    TypeError
        If ``value`` is neither a number nor a time string (``bool`` included).
    ValueError
        If the duration is negative, NaN, infinite, or zero when ``allow_zero`` is false.
    """
    if isinstance(value, (str, datetime.timedelta)):
        value = _parse_time(value, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{name} must be a number of seconds or a time string ('30s', '5 minutes'), "
            f"got {type(value).__name__} {value!r}"
        )
    if math.isnan(value) or math.isinf(value) or value < 0 or (value == 0 and not allow_zero):
        bound = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be a finite, {bound} number of seconds, got {value!r}")
    return float(value)


def _parse_time(value: str | datetime.timedelta, name: str) -> float:
    """Seconds of a Dask time string or a timedelta; ``TypeError`` naming ``name`` if it is not one.

    A leading ``-`` is kept (``"-5s"`` is -5.0), so that the caller's range
    check reports a negative duration as a ``ValueError``.
    """
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    text = value.strip()
    sign = -1.0 if text.startswith("-") else 1.0
    text = text[1:].strip() if sign < 0 else text
    try:
        from dask.utils import parse_timedelta  # here: the command line starts without importing dask

        seconds = parse_timedelta(text, default="seconds") if text else None
    except (KeyError, ValueError, TypeError, IndexError):
        seconds = None
    if not isinstance(seconds, (int, float)):
        raise TypeError(
            f"{name} must be a number of seconds or a time string ('30s', '500ms', '5 minutes'), got {value!r}"
        )
    return sign * float(seconds)


def check_flag(value: Any, name: str) -> bool:
    """Return ``value`` if it is a bool, else raise ``TypeError`` naming it."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value
