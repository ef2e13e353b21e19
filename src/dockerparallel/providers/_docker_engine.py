"""The Docker Engine as :class:`~dockerparallel.providers.docker.DockerProvider` sees it: pure rules and the connection.

Labels, the worker status of a container state, the server's address from
``docker inspect`` data, and :func:`connect`. The docker SDK is imported
only by :func:`connect`: the package imports without it.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence, TypeVar

from ..container import ENV_SERVER_PORT
from ..provider import ServerAddress

if TYPE_CHECKING:
    import docker

logger = logging.getLogger("dockerparallel.providers.docker")

LABEL_CLUSTER = "dockerparallel.cluster"
LABEL_ROLE = "dockerparallel.role"
LABEL_WORKERS = "dockerparallel.workers"
NETWORK_MODES = ("host", "bridge")

#: Docker container state -> worker status; any other state (exited, dead,
#: removing, or no container at all) is "stopped". A paused container is alive
#: but does no work: it counts as initializing, so it is killed first.
_STATUS = {"created": "initializing", "restarting": "initializing", "paused": "initializing",
           "running": "running"}

T = TypeVar("T")
R = TypeVar("R")


def worker_status(state: str | None) -> str:
    """The worker status of a Docker container state (``None``: no such container)."""
    return _STATUS.get(state or "missing", "stopped")


def label_workers(box: Mapping[str, Any]) -> int:
    """The worker count in a container's labels (1 when the label is missing or broken)."""
    try:
        return max(1, int((box.get("Labels") or {}).get(LABEL_WORKERS, "1")))
    except ValueError:
        return 1


def cluster_labels(name: str, role: str, workers: int) -> dict[str, str]:
    """The labels of a container of cluster ``name``: its cluster, role and (for a worker) worker count."""
    labels = {LABEL_CLUSTER: name, LABEL_ROLE: role}
    if role == "worker":
        labels[LABEL_WORKERS] = str(workers)
    return labels


def label_filters(name: str, role: str | None = None) -> list[str]:
    """The ``label`` filters that list the containers of cluster ``name`` (and ``role``)."""
    return [f"{LABEL_CLUSTER}={name}"] + ([f"{LABEL_ROLE}={role}"] if role else [])


def in_parallel(function: Callable[[T], R], items: Sequence[T], most: int) -> list[tuple[R | None, Exception | None]]:
    """Call ``function`` on each item, at most ``most`` at a time; return ``(result, error)`` pairs in order."""

    def call(item: T) -> tuple[R | None, Exception | None]:
        try:
            return function(item), None
        except Exception as exc:
            return None, exc

    if len(items) <= 1:
        return [call(item) for item in items]
    with ThreadPoolExecutor(min(most, len(items)), "dockerparallel-docker") as pool:
        return list(pool.map(call, items))


def connect(base_url: str | None = None, timeout: int = 120, pool_size: int = 10, *, tls: Any = False,
            use_ssh_client: bool = False) -> docker.DockerClient:
    """Connect to a Docker Engine, negotiating the API version.

    Parameters
    ----------
    base_url : str, optional
        The engine's address (``unix:///var/run/docker.sock``, ``tcp://127.0.0.1:2375``,
        ``ssh://user@host``); from the environment (``DOCKER_HOST``) when omitted.
    timeout : int
        Seconds one API call may take.
    pool_size : int
        Connections kept open to the engine (as many as concurrent calls).
    tls, use_ssh_client : docker.tls.TLSConfig or bool, bool
        TLS of a ``tcp://`` engine; for ``ssh://``, the ``ssh`` program instead of paramiko.

    Returns
    -------
    docker.DockerClient
        A client whose API version is the engine's (``version="auto"``).

    Raises
    ------
    ImportError
        Without the docker SDK.
    ConnectionError
        No engine answers (a provider's public method makes it a ``DockerEngineUnavailable``).
    """
    try:
        import docker
    except ImportError as exc:
        raise ImportError("DockerProvider needs the docker SDK: pip install 'dockerparallel[docker]'") from exc
    try:
        options = {"version": "auto", "timeout": timeout, "max_pool_size": max(10, pool_size)}
        if base_url is None:
            client = docker.from_env(**options)
        else:
            client = docker.DockerClient(base_url=base_url, tls=tls, use_ssh_client=use_ssh_client, **options)
    except docker.errors.DockerException as exc:
        raise ConnectionError(str(exc)) from exc
    logger.debug("connected to the Docker Engine (API %s)", client.api.api_version)
    return client


def published_ports(network_mode: str, host_ip: str, environment: Mapping[str, str]) -> dict[int, Any] | None:
    """The server's port to publish on ``host_ip`` (none on the host network), from its environment."""
    if network_mode == "host":
        return None
    port = environment.get(ENV_SERVER_PORT)
    if not port:
        raise ValueError(f"with network_mode={network_mode!r} the server container must set "
                         f"{ENV_SERVER_PORT} in its environment (the port to publish)")
    return {int(port): (host_ip, None)}


def server_address_from_inspect(info: Mapping[str, Any], host_ip: str) -> ServerAddress:
    """The :class:`ServerAddress` of a server container, from its ``docker inspect`` data.

    Parameters
    ----------
    info : mapping
        The container's inspect data (``Config.Env``, ``HostConfig.NetworkMode``,
        ``NetworkSettings``).
    host_ip : str
        The host address the server is reached at (host network) or its port
        is published on (bridge network).

    Returns
    -------
    ServerAddress
        Host network: ``host_ip`` and the port of ``DOCKERPARALLEL_SERVER_PORT``.
        Bridge network: the published port on ``host_ip`` (public) and the
        container's own address and port (private, for the workers).

    Raises
    ------
    ValueError
        When the environment names no server port, or it is not published.
    """
    env = dict(item.partition("=")[::2] for item in (info.get("Config") or {}).get("Env") or [])
    port = env.get(ENV_SERVER_PORT)
    if not port:
        raise ValueError(f"the server container has no {ENV_SERVER_PORT} in its environment")
    settings = info.get("NetworkSettings") or {}
    if (info.get("HostConfig") or {}).get("NetworkMode") == "host":
        return ServerAddress(None, None, host_ip, int(port))
    bound = (settings.get("Ports") or {}).get(f"{port}/tcp") or []
    if not bound:
        raise ValueError(f"the server port {port} is not published")
    networks = (settings.get("Networks") or {}).values()
    private = next((n["IPAddress"] for n in networks if n.get("IPAddress")), None) or host_ip
    return ServerAddress(host_ip, int(bound[0]["HostPort"]), private, int(port))
