"""The one verbosity rule: a message said at ``verbose`` >= 1 is INFO, else DEBUG (``-v`` shows it)."""

from __future__ import annotations

import logging
from typing import Any


def say(logger: logging.Logger, verbose: int, message: str, *args: Any) -> None:
    """Log ``message`` on ``logger`` at INFO when ``verbose``, else at DEBUG."""
    logger.log(logging.INFO if verbose else logging.DEBUG, message, *args)
