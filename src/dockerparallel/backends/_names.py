"""How dockerparallel names Dask workers: the workers of one container share ``dp-<token>``."""

from __future__ import annotations

#: Prefix of the Dask worker names; the workers of one container share ``dp-<token>``.
WORKER_NAME_PREFIX = "dp-"


def container_token(worker_name: object) -> str | None:
    """The container token of a Dask worker name (``dp-<token>[-i]``), or ``None``."""
    if not isinstance(worker_name, str) or not worker_name.startswith(WORKER_NAME_PREFIX):
        return None
    return worker_name[: len(WORKER_NAME_PREFIX) + 8]
