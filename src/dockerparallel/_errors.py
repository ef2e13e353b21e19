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


class ProviderTimeout(ProviderError):
    """A provider call did not return within its deadline.

    The call goes on in the background; whatever it returns later is still
    recorded (handles from a late run call are adopted and reconciled).
    """

    def __init__(self, provider: object, method: str, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(provider, method, f"did not return within {seconds:g} s (its deadline); "
                         "a late result is still recorded")


class ProviderThrottled(DockerParallelError):
    """Raised by a provider when the cloud asks it to slow down.

    The caller retries later with backoff; it is never fatal on its own.
    """


class ClusterStateError(DockerParallelError):
    """An operation is not possible in the cluster's present state."""


class ClusterExistsError(ClusterStateError):
    """A cluster with this name is live (in the state store or on the provider).

    Reconnect to it with ``DockerCluster.reconnect(name)``, or stop it with
    ``dockerparallel down NAME``, instead of starting a second one.
    """

    def __init__(self, name: str, where: str) -> None:
        self.name = name
        super().__init__(
            f"a cluster named {name!r} is live ({where}); reconnect with DockerCluster.reconnect({name!r}) "
            f"or stop it with 'dockerparallel down {name}', or pick another name"
        )


class StopError(ClusterStateError):
    """Workers survived every kill while a cluster stopped.

    ``survivors`` lists their handles; the cluster's record is kept so that
    ``dockerparallel down NAME`` (or another ``stop_cluster()``) can retry.
    """

    def __init__(self, name: str, survivors: list[str], reason: str = "") -> None:
        self.name = name
        self.survivors = list(survivors)
        shown = ", ".join(self.survivors[:10]) + (" ..." if len(self.survivors) > 10 else "")
        super().__init__(
            f"cluster {name!r} did not stop cleanly: {len(self.survivors)} worker handle(s) survived "
            f"repeated kills ({shown}){'; ' + reason if reason else ''}; "
            f"retry with stop_cluster() or 'dockerparallel down {name}'"
        )


class StateStoreError(DockerParallelError):
    """The state file cannot be read or written."""


class ConformanceError(DockerParallelError, AssertionError):
    """A provider failed a step of :func:`dockerparallel.testing.check_provider`."""
