"""Exceptions raised by dockerparallel.

Every error the library raises on purpose derives from
:class:`DockerParallelError`, so a caller can catch them in one place.
"""

from __future__ import annotations


class DockerParallelError(Exception):
    """Base class of every error raised by dockerparallel on purpose."""


class ProviderError(DockerParallelError):
    """A provider broke its contract or failed.

    Parameters
    ----------
    provider : object
        The provider whose method misbehaved.
    method : str
        The name of the method that misbehaved.
    message : str
        What went wrong.
    """

    def __init__(self, provider: object, method: str, message: str) -> None:
        self.provider_name = type(provider).__name__
        self.method = method
        super().__init__(f"{self.provider_name}.{method}: {message}")


class PartialLaunchError(ProviderError):
    """The provider started fewer workers than asked.

    The handles it did return are recorded; ``DockerCluster.update()`` (or the
    background controller) starts the missing workers later.
    """

    def __init__(self, provider: object, method: str, asked: int, got: int) -> None:
        self.asked = asked
        self.got = got
        super().__init__(
            provider,
            method,
            f"started {got} of {asked} workers (partial launch); "
            f"the {got} handles are recorded and update() starts the rest",
        )


class ProviderThrottled(DockerParallelError):
    """Raised by a provider when the cloud asks it to slow down.

    The caller retries later with backoff; it is never fatal on its own.
    """


class ClusterStateError(DockerParallelError):
    """An operation is not possible in the cluster's present state."""


class ConformanceError(DockerParallelError, AssertionError):
    """A provider failed a step of :func:`dockerparallel.testing.check_provider`."""
