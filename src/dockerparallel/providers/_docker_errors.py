"""The one place where the docker SDK's errors become errors of dockerparallel.

:class:`~dockerparallel.providers.docker.DockerProvider` runs each public
method under :func:`docker_errors` (the :func:`engine_errors` decorator).
Below them, the docker SDK's exceptions (``docker.errors``, and requests'
connection errors underneath) travel up untouched; the map turns them into
:class:`~dockerparallel.ProviderError` subclasses naming the provider class
and the public method, through one table, :data:`DOCKER_ERROR_TABLE`. An
engine that does not answer says how to start one (dockerd, or Podman's
service for a ``unix://`` socket whose path names podman); a missing image
says how to build it.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import re
from typing import Any, Callable, Iterator, Mapping, TypeVar, cast

from .._errors import ProviderError

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
#: The attribute an engine's exception carries with the engine's address (providers with several hosts).
ENGINE_ATTRIBUTE = "dockerparallel_engine"
BUILD_HELP = "build or load it first (for the test image: bash scripts/build-test-image.sh)"


class DockerEngineUnavailable(ProviderError, ConnectionError):
    """No Docker Engine answers where the provider looks for one."""


class DockerImageUnavailable(ProviderError, LookupError):
    """The image is not on the engine and cannot be pulled."""


class ImageMissing(LookupError):
    """Raised below the public methods when an image is missing; the map makes it :class:`DockerImageUnavailable`."""


#: Exception class (``module.name``, looked up along the class's MRO, most
#: specific first) -> kind. An exception of none of these passes unchanged.
DOCKER_ERROR_TABLE: Mapping[str, str] = {
    f"{__name__}.ImageMissing": "image_missing",
    "docker.errors.ImageNotFound": "image",
    "docker.errors.NotFound": "not_found",
    "docker.errors.APIError": "refused",
    "requests.exceptions.ConnectionError": "unreachable",
    "builtins.ConnectionError": "unreachable",
    "requests.exceptions.Timeout": "timeout",
    "paramiko.ssh_exception.NoValidConnectionsError": "ssh",
    "paramiko.ssh_exception.SSHException": "ssh",
    "docker.errors.DockerException": "sdk",
}

#: Kind -> (the exception raised, its message); ``{error}`` is the SDK's words, ``{where}`` the engine's address.
DOCKER_KINDS: Mapping[str, tuple[type[ProviderError], str]] = {
    "unreachable": (DockerEngineUnavailable, (
        "no Docker Engine is reachable at {where} ({error}). Start one: run "
        "`bash scripts/install-docker.sh` (installs and starts dockerd) or start dockerd yourself; "
        f"to use another engine set DOCKER_HOST (e.g. DOCKER_HOST={DEFAULT_SOCKET}) "
        "or pass DockerProvider(base_url=...) or DockerProvider(hosts=[...]).")),
    "podman": (DockerEngineUnavailable, (
        "no Podman service is reachable at {where} ({error}). Start Podman's Docker-compatible API as root: "
        "`podman system service --time=0 {where}` (`bash scripts/start-podman.sh` installs podman and starts it); "
        "to use another engine pass DockerProvider(base_url=...) or set DOCKER_HOST.")),
    "ssh": (DockerEngineUnavailable, (
        "cannot reach the Docker Engine at {where} over SSH ({error}). The ssh:// transport uses your SSH "
        "setup: the key named by IdentityFile in ~/.ssh/config (or the ssh agent), the host's key in "
        "~/.ssh/known_hosts (an unknown host is refused), and `docker` on the remote host.")),
    "image_missing": (DockerImageUnavailable, "{error}"),
    "image": (DockerImageUnavailable, "an image is not on the Docker Engine ({error}); " + BUILD_HELP),
    "not_found": (ProviderError, "the Docker Engine has no such object: {error}"),
    "refused": (ProviderError, "the Docker Engine refused: {error}"),
    "timeout": (ProviderError, "the Docker Engine did not answer in time ({error})"),
    "sdk": (ProviderError, "docker SDK error: {error}"),
}

_IN_MAP: contextvars.ContextVar[bool] = contextvars.ContextVar("dockerparallel_docker_map", default=False)
_PEM = re.compile(r"-----BEGIN [A-Z ]+-----.*?-----END [A-Z ]+-----", re.S)


def error_kind(exc: BaseException) -> str | None:
    """The kind of ``exc`` in :data:`DOCKER_ERROR_TABLE` (``None``: not an error of the engine or the SDK)."""
    for cls in type(exc).__mro__:
        kind = DOCKER_ERROR_TABLE.get(f"{cls.__module__}.{cls.__qualname__}")
        if kind is not None:
            return kind
    return None


def is_podman_socket(address: str) -> bool:
    """Whether ``address`` is a local socket of Podman's service (``unix:///run/podman/podman.sock``)."""
    return address.startswith("unix://") and "podman" in address


def engine_address(base_url: str | None) -> str:
    """Where the provider looks for the engine: ``base_url``, else ``DOCKER_HOST``, else the default socket."""
    return base_url or os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET


def _failed_engine(exc: BaseException) -> str | None:
    """The address of the engine an exception (or one it was raised from) is tagged with."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        address = getattr(current, ENGINE_ATTRIBUTE, None)
        if isinstance(address, str):
            return address
        current = current.__cause__ or current.__context__
    return None


def translate(provider: object, method: str, exc: BaseException, base_url: str | None) -> ProviderError | None:
    """The error of dockerparallel that ``exc`` becomes (``None`` when it is no engine or SDK error).

    Parameters
    ----------
    provider : object
        The provider whose public method was running.
    method : str
        That method's name.
    exc : BaseException
        What the docker SDK (or the provider below its public methods) raised.
    base_url : str or None
        The engine address the provider was given; an exception tagged with
        an engine's address (a provider of several hosts) names that one.
    """
    kind = error_kind(exc)
    if kind is None:
        return None
    tagged = _failed_engine(exc)
    where = tagged or engine_address(base_url)
    if kind == "unreachable" and is_podman_socket(where):
        kind = "podman"  # how to start Podman's service, not dockerd
    error, template = DOCKER_KINDS[kind]
    words = _PEM.sub("***", str(exc))  # an engine may quote a container's environment: never its keys
    message = template.format(error=words, where=where)
    if tagged and "{where}" not in template:
        message += f" (engine {tagged})"
    return error(provider, method, message)


@contextlib.contextmanager
def docker_errors(provider: object, method: str, base_url: str | None = None) -> Iterator[None]:
    """Run the body as ``provider.method``: errors of the engine and the SDK leave it translated.

    Errors of dockerparallel and any other exception pass unchanged. Nested
    uses (a public method calling another) translate once, in the outermost.

    Raises
    ------
    DockerEngineUnavailable
        No engine answers at ``base_url`` (the message says how to start one).
    DockerImageUnavailable
        An image is not on the engine and cannot be pulled.
    ProviderError
        Any other error of the engine or the SDK.
    """
    if _IN_MAP.get():
        yield
        return
    token = _IN_MAP.set(True)
    try:
        yield
    except ProviderError:
        raise
    except Exception as exc:
        translated = translate(provider, method, exc, base_url)
        if translated is None:
            raise
        raise translated from exc
    finally:
        _IN_MAP.reset(token)


def engine_errors(method: F) -> F:
    """Run a public method of a provider with a ``base_url`` under :func:`docker_errors`."""

    @functools.wraps(method)
    def mapped(self: Any, *args: Any, **kwargs: Any) -> Any:
        with docker_errors(self, method.__name__, self.base_url):
            return method(self, *args, **kwargs)

    return cast(F, mapped)
