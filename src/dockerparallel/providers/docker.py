"""`DockerProvider`: the server and the workers are containers of a Docker Engine.

The engine is driven through the ``docker`` SDK, which is imported only when
the provider first talks to the engine: the package imports without it.

Every container carries three labels::

    dockerparallel.cluster=<cluster name>
    dockerparallel.role=server|worker
    dockerparallel.workers=<workers in the container>     (workers only)

so that another process, even after the one that started the cluster died,
finds them: :meth:`DockerProvider.docker_cluster_exists`,
:meth:`~DockerProvider.reconnect_docker_cluster` and
:meth:`~DockerProvider.cleanup_docker_cluster` work from the labels alone.
A worker handle is the full id of its container.

Every public method runs under the one map of the docker SDK's errors
(:mod:`._docker_errors`): an engine that does not answer is
:class:`DockerEngineUnavailable`, a missing image
:class:`DockerImageUnavailable`, any other error of the engine a
:class:`~dockerparallel.ProviderError`; each names the class and the method.
The pure rules and the connection live in :mod:`._docker_engine`.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence, TypeVar

from .._errors import ProviderError
from .._validation import check_count
from ..container import ENV_SERVER_PORT
from ..managed import ManagedCloudProvider
from ..provider import ClusterView, ServerAddress
from ._docker_engine import (
    LABEL_CLUSTER,
    LABEL_ROLE,
    LABEL_WORKERS,
    NETWORK_MODES,
    cluster_labels,
    connect,
    in_parallel,
    label_filters,
    label_workers,
    server_address_from_inspect,
    worker_status,
)
from ._docker_errors import (
    BUILD_HELP,
    DEFAULT_SOCKET,
    DOCKER_ERROR_TABLE,
    DockerEngineUnavailable,
    DockerImageUnavailable,
    ImageMissing,
    docker_errors,
    engine_errors,
)

if TYPE_CHECKING:
    import docker

    from ..container import DockerContainer, DockerHardware

logger = logging.getLogger("dockerparallel.providers.docker")

T = TypeVar("T")
R = TypeVar("R")

__all__ = [
    "DEFAULT_SOCKET", "DOCKER_ERROR_TABLE", "LABEL_CLUSTER", "LABEL_ROLE", "LABEL_WORKERS", "NETWORK_MODES",
    "DockerEngineUnavailable", "DockerImageUnavailable", "DockerProvider", "connect", "docker_errors",
    "server_address_from_inspect", "worker_status",
]


def _log(verbose: int, message: str, *args: Any) -> None:
    logger.log(logging.INFO if verbose else logging.DEBUG, message, *args)


class DockerProvider(ManagedCloudProvider):
    """Runs the server and the workers as containers of a Docker Engine.

    Parameters
    ----------
    network_mode : {"host", "bridge"}, optional
        The containers' network. ``"host"`` (the default on Linux) shares the
        host's network: the server is at ``host_ip`` and the port of its
        ``DOCKERPARALLEL_SERVER_PORT``. With ``"bridge"`` (the default
        elsewhere) the server port is published on ``host_ip``.
    base_url : str, optional
        The engine's address; from the environment (``DOCKER_HOST``) when omitted.
    host_ip : str
        The host address of the server (host network) or of its published
        port (bridge network).
    max_concurrent_calls : int
        How many containers are started or removed at the same time.
    timeout : int
        Seconds one engine API call may take.

    Notes
    -----
    A container of ``k`` workers gets ``k`` times the hardware of one worker:
    ``k * cpu / 1024`` cores (at most the engine's CPU count) and
    ``k * memory`` MB.
    """

    def __init__(
        self,
        *,
        network_mode: str | None = None,
        base_url: str | None = None,
        host_ip: str = "127.0.0.1",
        max_concurrent_calls: int = 8,
        timeout: int = 120,
        pull: bool = True,
    ) -> None:
        if network_mode is None:
            network_mode = "host" if sys.platform.startswith("linux") else "bridge"
        if network_mode not in NETWORK_MODES:
            raise ValueError(f"network_mode must be one of {', '.join(NETWORK_MODES)}; got {network_mode!r}")
        for option, value in (("base_url", base_url), ("host_ip", host_ip)):
            if value is not None and (not isinstance(value, str) or not value):
                raise TypeError(f"{option} must be a non-empty string, got {value!r}")
        self.network_mode = network_mode
        self.base_url = base_url
        self.host_ip = host_ip
        self.max_concurrent_calls = check_count(max_concurrent_calls, "max_concurrent_calls", minimum=1, maximum=64)
        self.timeout = check_count(timeout, "timeout", minimum=1, maximum=3600)
        if not isinstance(pull, bool):
            raise TypeError(f"pull must be True or False, got {pull!r}")
        self.pull = pull
        self._client: docker.DockerClient | None = None
        self._client_lock = threading.Lock()
        self._cpus: float | None = None
        self._images: set[str] = set()
        self._server_id: str | None = None
        self._addresses: dict[str, ServerAddress] = {}
        self._ready: set[str] = set()

    def __repr__(self) -> str:
        return (
            f"DockerProvider(network_mode={self.network_mode!r}, base_url={self.base_url!r}, "
            f"host_ip={self.host_ip!r})"
        )

    def spec_options(self) -> dict[str, Any]:
        """The constructor options (no secret among them), to rebuild this provider elsewhere."""
        return {"network_mode": self.network_mode, "base_url": self.base_url, "host_ip": self.host_ip,
                "max_concurrent_calls": self.max_concurrent_calls, "timeout": self.timeout, "pull": self.pull}

    # -- the engine -------------------------------------------------------------------

    @property
    @engine_errors
    def client(self) -> docker.DockerClient:
        """The docker SDK client, connected on first use.

        Raises
        ------
        DockerEngineUnavailable
            No engine answers; the message says how to start one.
        ImportError
            Without the docker SDK.
        """
        with self._client_lock:
            if self._client is None:
                self._client = connect(self.base_url, self.timeout, self.max_concurrent_calls)
            return self._client

    def _engine_cpus(self) -> float:
        if self._cpus is None:
            self._cpus = float(self.client.info().get("NCPU") or os.cpu_count() or 1)
        return self._cpus

    def _parallel(self, function: Callable[[T], R], items: Sequence[T]) -> list[tuple[R | None, Exception | None]]:
        """Call ``function`` on each item, a few at a time; return ``(result, error)`` pairs."""
        return in_parallel(function, items, self.max_concurrent_calls)

    def _containers(self, cluster: ClusterView, role: str | None = None) -> list[dict[str, Any]]:
        """Every container labelled with the cluster (and ``role``), in one API call."""
        return list(self.client.api.containers(all=True, filters={"label": label_filters(cluster.name, role)}))

    def _states(self, cluster: ClusterView) -> dict[str, str]:
        """Container id -> Docker state of every container of the cluster."""
        return {c["Id"]: c.get("State", "") for c in self._containers(cluster)}

    def _remove(self, container_id: str) -> bool:
        """Remove a container by force; a missing one (or one being removed) is success."""
        import docker

        try:
            self.client.api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: removal already in progress
                logger.warning("could not remove container %s: %s", container_id[:12], exc)
                return False
        return True

    def _remove_all(self, container_ids: Sequence[str]) -> list[bool]:
        return [bool(ok) for ok, _ in self._parallel(self._remove, list(container_ids))]

    def _ensure_image(self, image: str) -> None:
        """Make sure ``image`` is on the engine: pull it when it is missing."""
        import docker
        from docker.utils import parse_repository_tag

        if image in self._images:
            return
        api = self.client.api
        try:
            api.inspect_image(image)
        except docker.errors.ImageNotFound:
            if not self.pull:
                raise ImageMissing(
                    f"image {image!r} is not on the Docker Engine and pulling is off (pull=False); {BUILD_HELP}"
                ) from None
            logger.info("image %s is not on the engine; pulling it", image)
            repository, tag = parse_repository_tag(image)
            try:
                api.pull(repository, tag=tag or "latest")
                api.inspect_image(image)
            except docker.errors.DockerException as exc:
                raise ImageMissing(
                    f"image {image!r} is not on the Docker Engine and could not be pulled ({exc}); {BUILD_HELP}"
                ) from exc
        self._images.add(image)

    def _host_config(self, hardware: DockerHardware, workers: int, ports: dict[int, Any] | None) -> Any:
        cores = min(workers * hardware.cores, self._engine_cpus())
        return self.client.api.create_host_config(
            network_mode=self.network_mode, nano_cpus=int(cores * 1e9),
            mem_limit=f"{workers * hardware.memory}m", port_bindings=ports,
        )

    def _published_ports(self, container: DockerContainer) -> dict[int, Any] | None:
        if self.network_mode == "host":
            return None
        port = container.environment.get(ENV_SERVER_PORT)
        if not port:
            raise ValueError(f"with network_mode={self.network_mode!r} the server container must set "
                             f"{ENV_SERVER_PORT} in its environment (the port to publish)")
        return {int(port): (self.host_ip, None)}

    def _start_container(
        self, cluster: ClusterView, container: DockerContainer, role: str, workers: int,
        hardware: DockerHardware,
    ) -> str:
        """Create and start one labelled container; return its full id."""
        api = self.client.api
        labels = cluster_labels(cluster.name, role, workers)
        ports = self._published_ports(container) if role == "server" else None
        created = api.create_container(
            image=container.image, command=list(container.command) or None,
            environment=dict(container.environment), labels=labels, detach=True,
            name=f"{cluster.name}-{role}-{uuid.uuid4().hex[:8]}", ports=list(ports or ()) or None,
            host_config=self._host_config(hardware, workers, ports),
        )
        container_id = str(created["Id"])
        try:
            api.start(container_id)
        except Exception:
            self._remove(container_id)
            raise
        logger.debug("started %s container %s", role, container_id[:12])
        return container_id

    # -- server ---------------------------------------------------------------------------

    @engine_errors
    def initialize_cloud_provider(self, cluster: ClusterView, verbose: int = 0) -> None:
        """Connect to the engine, so that a missing engine is reported before anything starts."""
        self.client  # noqa: B018 - connecting is the point

    @engine_errors
    def run_docker_server(self, cluster: ClusterView, container: DockerContainer,
                          hardware: DockerHardware, verbose: int = 0) -> None:
        """Start the server container (pulling its image if it is missing)."""
        self._ensure_image(container.image)
        self._server_id = self._start_container(cluster, container, "server", 1, hardware)
        _log(verbose, "server container %s started", self._server_id[:12])

    @engine_errors
    def stop_docker_server(self, cluster: ClusterView, verbose: int = 0) -> None:
        """Remove every server container of the cluster (none is success)."""
        ids = {c["Id"] for c in self._containers(cluster, "server")}
        if self._server_id is not None:
            ids.add(self._server_id)
        self._remove_all(sorted(ids))
        self._server_id = None

    @engine_errors
    def get_server_status(self, cluster: ClusterView, verbose: int = 0) -> str:
        """The status of the server container this provider started or adopted.

        A running container counts as ``"initializing"`` until its server port
        accepts connections.
        """
        if self._server_id is None:
            return "stopped"
        status = worker_status(self._states(cluster).get(self._server_id))
        if status == "running" and not self._server_accepts(cluster, self._server_id):
            return "initializing"
        return status

    def _server_accepts(self, cluster: ClusterView, server_id: str) -> bool:
        """Whether the server port has accepted a connection (``True`` when it has no port to probe).

        Once it has, the container's state alone counts: a TLS server logs
        each bare probe as a failed handshake.
        """
        if server_id in self._ready:
            return True
        try:
            address = self.get_docker_server_ip(cluster)
        except ProviderError:
            return True
        try:
            with socket.create_connection((address.client_ip, address.client_port), timeout=0.5):
                self._ready.add(server_id)
                return True
        except OSError:
            return False

    @engine_errors
    def get_docker_server_ip(self, cluster: ClusterView, verbose: int = 0) -> ServerAddress:
        """Where the server listens (see :func:`server_address_from_inspect`); cached per server container."""
        server_id = self._server_id
        if server_id is None:
            raise ProviderError(self, "get_docker_server_ip", f"cluster {cluster.name!r} has no server")
        if server_id not in self._addresses:
            info = self.client.api.inspect_container(server_id)
            try:
                self._addresses[server_id] = server_address_from_inspect(info, self.host_ip)
            except ValueError as exc:
                raise ProviderError(self, "get_docker_server_ip", str(exc)) from exc
        return self._addresses[server_id]

    # -- finding a cluster again ------------------------------------------------------------

    @engine_errors
    def docker_cluster_exists(self, cluster: ClusterView, verbose: int = 0) -> bool:
        """Whether a live (created, running, ...) container is labelled with the cluster's name."""
        return any(worker_status(c.get("State")) != "stopped" for c in self._containers(cluster))

    @engine_errors
    def reconnect_docker_cluster(self, cluster: ClusterView, verbose: int = 0) -> None:
        """Adopt the newest live server container and every live worker container of the cluster.

        A container that was created but never started (its creator died in
        between) is started now; if it cannot start, it is removed.
        """
        live = [c for c in self._containers(cluster) if worker_status(c.get("State")) != "stopped"]
        live = [c for c in live if self._start_if_created(c)]
        servers = sorted((c for c in live if c["Labels"].get(LABEL_ROLE) == "server"),
                         key=lambda c: c.get("Created", 0))
        self._server_id = servers[-1]["Id"] if servers else None
        known = set(self.worker_ledger.handles())
        adopted = 0
        for box in live:
            if box["Labels"].get(LABEL_ROLE) == "worker" and box["Id"] not in known:
                workers = label_workers(box)
                self.add_managed_worker_handles([box["Id"]] * workers)
                adopted += workers
        _log(verbose, "cluster %r: %s server, %d worker(s) adopted", cluster.name, "a" if servers else "no", adopted)

    def _start_if_created(self, box: Mapping[str, Any]) -> bool:
        """Start a container left in the ``created`` state; return whether it lives."""
        if box.get("State") != "created":
            return True
        try:
            self.client.api.start(box["Id"])
            return True
        except Exception as exc:  # a broken leftover: remove it rather than count it
            logger.warning("removing container %s that cannot start: %s", box["Id"][:12], exc)
            self._remove(box["Id"])
            return False

    @engine_errors
    def cleanup_docker_cluster(self, cluster: ClusterView, deep: bool = False, verbose: int = 0) -> None:
        """Remove the cluster's stopped containers; with ``deep``, every container labelled with its name.

        A deep cleanup lists again after removing, a few times, so that
        containers still being created by a dying process are caught too.
        """
        for attempt in range(5 if deep else 1):
            doomed = [c["Id"] for c in self._containers(cluster) if deep or worker_status(c.get("State")) == "stopped"]
            if not doomed:
                break
            _log(verbose, "removing %d container(s) of cluster %r", len(doomed), cluster.name)
            self._remove_all(doomed)
            if deep:
                time.sleep(0.2 * attempt)
        if deep:
            self._server_id = None
            with self._managed_lock:
                self.worker_ledger.remove(self.worker_ledger.handles())

    # -- the three primitives -----------------------------------------------------------------

    @engine_errors
    def run_docker_worker_containers(self, cluster: ClusterView, container: DockerContainer,
                                     hardware: DockerHardware, worker_number: int,
                                     verbose: int = 0) -> list[str]:
        """Start containers of up to ``max_workers_per_container`` workers, a few at a time.

        Returns one handle (the container id) per worker. When some
        containers fail to start, the handles of the others are returned (a
        partial launch); when none starts, the first error is raised.
        """
        per = container.max_workers_per_container
        sizes = [min(per, worker_number - start) for start in range(0, worker_number, per)]
        if not sizes:
            return []
        self._ensure_image(container.image)

        def start(size: int) -> str:
            return self._start_container(cluster, container.for_workers(size, hardware), "worker", size, hardware)

        results = self._parallel(start, sizes)
        handles = [cid for size, (cid, _) in zip(sizes, results, strict=True) if cid for _ in range(size)]
        errors = [error for _, error in results if error is not None]
        if errors and not handles:
            raise errors[0]
        if errors:
            logger.warning("%d of %d worker container(s) failed to start: %s", len(errors), len(sizes), errors[0])
        return handles

    @engine_errors
    def get_docker_worker_status(self, cluster: ClusterView, worker_handles: list[str],
                                 verbose: int = 0) -> list[str]:
        """Statuses from one API call listing the cluster's containers; a missing container is stopped."""
        states = self._states(cluster)
        return [worker_status(states.get(handle)) for handle in worker_handles]

    @engine_errors
    def kill_docker_worker_containers(self, cluster: ClusterView, worker_handles: list[str],
                                      verbose: int = 0) -> list[bool]:
        """Remove the containers by force; a handle that is no container of the cluster is success."""
        states = self._states(cluster)
        targets = [handle for handle in worker_handles if handle in states]
        removed = dict(zip(targets, self._remove_all(targets), strict=True))
        return [removed.get(handle, True) for handle in worker_handles]
