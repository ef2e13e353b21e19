"""`DockerProvider`: the server and the workers are containers of one or several Docker Engines.

The engines are driven through the ``docker`` SDK, which is imported only
when the provider first talks to one: the package imports without it.

Every container carries these labels::

    dockerparallel.cluster=<cluster name>
    dockerparallel.role=server|worker
    dockerparallel.workers=<workers in the container>     (workers only)
    dockerparallel.nanocpus=<its CPU limit>, dockerparallel.memory=<its memory limit in bytes>

so that another process, even after the one that started the cluster died,
finds them on every engine: :meth:`DockerProvider.docker_cluster_exists`,
:meth:`~DockerProvider.reconnect_docker_cluster` and
:meth:`~DockerProvider.cleanup_docker_cluster` work from the labels alone.
A worker handle is the full id of its container, prefixed with the index of
its engine in ``hosts`` when there are several (``"1/<id>"``, see
:mod:`._docker_hosts`).

Every public method runs under the one map of the docker SDK's errors
(:mod:`._docker_errors`): an engine that does not answer is
:class:`DockerEngineUnavailable`, a missing image :class:`DockerImageUnavailable`,
any other error a :class:`~dockerparallel.ProviderError` naming the class, the
method and, with several hosts, the engine. One engine is an
:class:`._docker_engines.Engine`; the pure rules live in :mod:`._docker_hosts`.
"""

from __future__ import annotations

import logging
import socket
import sys
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence, TypeVar

from .._errors import ProviderError
from .._validation import check_count
from .._verbose import say
from ..managed import ManagedCloudProvider
from ..provider import ClusterView, ProviderOption, ProviderPlugin, ServerAddress
from ._docker_engine import (
    LABEL_CLUSTER,
    LABEL_ROLE,
    LABEL_WORKERS,
    NETWORK_MODES,
    connect,
    in_parallel,
    label_workers,
    published_ports,
    server_address_from_inspect,
    worker_status,
)
from ._docker_engines import Engine, log_entries, on_each
from ._docker_errors import (
    DEFAULT_SOCKET,
    DOCKER_ERROR_TABLE,
    DockerEngineUnavailable,
    DockerImageUnavailable,
    docker_errors,
    engine_errors,
    translate,
)
from ._docker_hosts import make_handle, parse_hosts, place, same_engines, split_handle

if TYPE_CHECKING:
    import docker

    from ..container import DockerContainer, DockerHardware

logger = logging.getLogger("dockerparallel.providers.docker")

R = TypeVar("R")

__all__ = [
    "DEFAULT_SOCKET", "DOCKER_ERROR_TABLE", "LABEL_CLUSTER", "LABEL_ROLE", "LABEL_WORKERS", "NETWORK_MODES",
    "DockerEngineUnavailable", "DockerImageUnavailable", "DockerProvider", "connect", "docker_errors",
    "server_address_from_inspect", "worker_status",
]


def _created(box: Mapping[str, Any]) -> int:
    return int(box.get("Created") or 0)  # seconds since the epoch


class DockerProvider(ManagedCloudProvider):
    """Runs the server and the workers as containers of one or several Docker Engines.

    Parameters
    ----------
    network_mode : {"host", "bridge"}, optional
        The containers' network. ``"host"`` (the default on Linux) shares the
        host's network: the server is at ``host_ip`` and the port of its
        ``DOCKERPARALLEL_SERVER_PORT``. With ``"bridge"`` (the default
        elsewhere) the server port is published on ``host_ip``.
    base_url : str, optional
        The engine's address; from the environment (``DOCKER_HOST``) when
        omitted. The same as ``hosts=[base_url]``; give one or the other.
    hosts : list, optional
        Several engines: docker base URLs (``unix://``, ``tcp://``,
        ``ssh://user@host``), or mappings with ``base_url``, ``tls`` (for
        ``tcp://``: ``True`` or the paths ``ca_cert``, ``client_cert``,
        ``client_key`` and ``verify``) and ``use_ssh_client``. Workers go to
        the engine with the most free CPU and memory; see the README's
        "Several Docker hosts".
    server_host : int
        The index in ``hosts`` of the engine that runs the server.
    host_ip : str
        The address of the server's host, at which the workers (on every
        engine) and the client reach the server (host network) or its
        published port (bridge network).
    max_concurrent_calls : int
        How many containers are started or removed at the same time.
    timeout : int
        Seconds one engine API call may take.
    pull : bool
        Pull a missing image.

    Notes
    -----
    A container of ``k`` workers gets ``k`` times the hardware of one worker:
    ``k * cpu / 1024`` cores (at most its engine's CPU count) and
    ``k * memory`` MB.
    """

    plugin = ProviderPlugin(
        name="docker", install="dockerparallel[docker]", modules=("docker",), host_network=True,
        options=(
            ProviderOption("network_mode", "The containers' network.", flag="network", choices=("host", "bridge")),
            ProviderOption("pull", "Pull a missing image.", bool),
            ProviderOption("base_url", "The engine's address (default: DOCKER_HOST, else the local socket)."),
            ProviderOption("hosts", "One engine of several (a docker base URL), repeatable.", multiple=True,
                           flag="docker-host"),
            ProviderOption("host_ip", "The address at which workers and the client reach the server."),
        ),
    )

    def __init__(
        self,
        *,
        network_mode: str | None = None,
        base_url: str | None = None,
        hosts: Sequence[str | Mapping[str, Any]] | None = None,
        server_host: int = 0,
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
        self._hosts, self._hosts_given = parse_hosts(hosts, base_url)
        self.server_host = check_count(server_host, "server_host", minimum=0, maximum=len(self._hosts) - 1)
        self.network_mode = network_mode
        self.base_url = self._hosts[0].base_url
        self.host_ip = host_ip
        self.max_concurrent_calls = check_count(max_concurrent_calls, "max_concurrent_calls", minimum=1, maximum=64)
        self.timeout = check_count(timeout, "timeout", minimum=1, maximum=3600)
        if not isinstance(pull, bool):
            raise TypeError(f"pull must be True or False, got {pull!r}")
        self.pull = pull
        self._engines = [Engine(host, self.timeout, self.max_concurrent_calls) for host in self._hosts]
        self._server_id: str | None = None  # the server's handle
        self._addresses: dict[str, ServerAddress] = {}
        self._ready: set[str] = set()

    def __repr__(self) -> str:
        where = f"hosts={self.hosts!r}" if self._hosts_given else f"base_url={self.base_url!r}"
        return f"DockerProvider(network_mode={self.network_mode!r}, {where}, host_ip={self.host_ip!r})"

    @property
    def hosts(self) -> list[str | dict[str, Any]]:
        """The engines' addresses (and options), as given."""
        return [host.spec() for host in self._hosts]

    def spec_options(self) -> dict[str, Any]:
        """The constructor options (no secret among them; TLS files by path), to rebuild this provider elsewhere."""
        options: dict[str, Any] = {"network_mode": self.network_mode, "host_ip": self.host_ip,
                                   "max_concurrent_calls": self.max_concurrent_calls, "timeout": self.timeout,
                                   "pull": self.pull}
        if self._hosts_given:
            options.update(hosts=self.hosts, server_host=self.server_host)
        else:
            options["base_url"] = self.base_url
        return options

    # -- the engines --------------------------------------------------------------------

    @property
    @engine_errors
    def client(self) -> docker.DockerClient:
        """The docker SDK client of the first engine, connected on first use.

        Raises
        ------
        DockerEngineUnavailable
            No engine answers; the message says how to start one.
        """
        return self._engines[0].client

    @property
    def _several(self) -> bool:
        return len(self._engines) > 1

    def _handle(self, index: int, container_id: str) -> str:
        return make_handle(index, container_id, self._several)

    def _locate(self, handle: str) -> tuple[int, str] | None:
        return split_handle(handle, len(self._engines))

    def _each(self, function: Callable[[Engine], R], indexes: Iterable[int] | None = None,
              ) -> tuple[dict[int, R], dict[int, Exception]]:
        """Call ``function`` on each engine (or those of ``indexes``) at once: results and errors by index."""
        return on_each(self._engines, function, indexes)

    def _on_engines(self, function: Callable[[Engine], R], indexes: Iterable[int] | None = None) -> dict[int, R]:
        """Like :meth:`_each`, but every engine must answer: the first error is raised once all are done."""
        results, errors = self._each(function, indexes)
        if errors:
            raise errors[min(errors)]
        return results

    def _listing(self, cluster: ClusterView, role: str | None = None) -> list[tuple[int, dict[str, Any]]]:
        """``(engine index, container)`` of every container of the cluster (and ``role``) on every engine."""
        found = self._on_engines(lambda engine: engine.containers(cluster.name, role))
        return [(index, box) for index in sorted(found) for box in found[index]]

    def _remove_all(self, targets: Sequence[tuple[int, str]]) -> list[bool]:
        """Remove ``(engine index, container id)`` pairs, a few at a time; whether each is gone."""
        pairs = in_parallel(lambda target: self._engines[target[0]].remove(target[1]), list(targets),
                            self.max_concurrent_calls)
        return [bool(ok) for ok, _ in pairs]

    def _placement(self, cluster: ClusterView, hardware: DockerHardware, sizes: Sequence[int]) -> list[int]:
        """The engine of each new container: the one with the most free CPU and memory first.

        An engine that does not answer gets nothing (a warning says so); when none answers, its error is raised.
        """
        if not self._several:
            return [0] * len(sizes)
        capacities, errors = self._each(lambda engine: engine.capacity(cluster.name))
        for index, error in errors.items():
            reason = translate(self, "run_docker_worker_containers", error, None) or error
            logger.warning("Docker host %s does not answer; no worker goes there now: %s",
                           self._engines[index].address, reason)
        if not capacities:
            raise errors[min(errors)]
        indexes = sorted(capacities)
        needs = [(size * hardware.cores, size * hardware.memory * 2**20) for size in sizes]
        chosen = place([capacities[i] for i in indexes], needs, [self._engines[i].address for i in indexes])
        return [indexes[position] for position in chosen]

    # -- server ---------------------------------------------------------------------------

    @engine_errors
    def initialize_cloud_provider(self, cluster: ClusterView, verbose: int = 0) -> None:
        """Connect to every engine, so that a missing one is reported before anything starts.

        With several hosts, two addresses that reach the same engine are refused:
        its containers would be counted twice.
        """
        if not self._several:
            self.client  # noqa: B018 - connecting is the point
            return
        identities = self._on_engines(lambda engine: engine.identity())
        twins = same_engines([identities[index] for index in range(len(self._engines))])
        if twins:
            first, second = twins[0]
            raise ProviderError(self, "initialize_cloud_provider", (
                f"hosts[{first}] ({self._engines[first].address}) and hosts[{second}] "
                f"({self._engines[second].address}) reach the same Docker Engine; list each engine once"))

    @engine_errors
    def run_docker_server(self, cluster: ClusterView, container: DockerContainer,
                          hardware: DockerHardware, verbose: int = 0) -> None:
        """Start the server container on the ``server_host`` engine (pulling its image if it is missing)."""
        engine = self._engines[self.server_host]
        engine.ensure_image(container.image, self.pull)
        container_id = engine.start_container(cluster.name, container, "server", 1, hardware, self.network_mode,
                                              published_ports(self.network_mode, self.host_ip, container.environment))
        self._server_id = self._handle(self.server_host, container_id)
        say(logger, verbose, "server container %s started on %s", container_id[:12], engine.address)

    @engine_errors
    def stop_docker_server(self, cluster: ClusterView, verbose: int = 0) -> None:
        """Remove every server container of the cluster, on every engine (none is success)."""
        targets = {(index, box["Id"]) for index, box in self._listing(cluster, "server")}
        known = self._locate(self._server_id) if self._server_id is not None else None
        if known is not None:
            targets.add(known)
        self._remove_all(sorted(targets))
        self._server_id = None

    @engine_errors
    def get_server_status(self, cluster: ClusterView, verbose: int = 0) -> str:
        """The status of the server container this provider started or adopted.

        A running container counts as ``"initializing"`` until its server port
        accepts connections.
        """
        located = self._locate(self._server_id) if self._server_id is not None else None
        if self._server_id is None or located is None:
            return "stopped"
        index, container_id = located
        states = {box["Id"]: box.get("State") for box in self._engines[index].containers(cluster.name, "server")}
        status = worker_status(states.get(container_id))
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
        """Where the server listens (see :func:`server_address_from_inspect`); cached per server container.

        With several hosts on a bridge network the workers, too, use the
        published port on ``host_ip``: the container's own address is not
        reachable from another machine.
        """
        server_id = self._server_id
        located = self._locate(server_id) if server_id is not None else None
        if server_id is None or located is None:
            raise ProviderError(self, "get_docker_server_ip", f"cluster {cluster.name!r} has no server")
        if server_id not in self._addresses:
            index, container_id = located
            info = self._engines[index].api.inspect_container(container_id)
            try:
                address = server_address_from_inspect(info, self.host_ip)
            except ValueError as exc:
                raise ProviderError(self, "get_docker_server_ip", str(exc)) from exc
            if self._several and address.public_ip is not None and address.public_port is not None:
                address = ServerAddress(address.public_ip, address.public_port,
                                        address.public_ip, address.public_port)
            self._addresses[server_id] = address
        return self._addresses[server_id]

    # -- finding a cluster again ------------------------------------------------------------

    @engine_errors
    def docker_cluster_exists(self, cluster: ClusterView, verbose: int = 0) -> bool:
        """Whether a live (created, running, ...) container is labelled with the cluster's name, on any engine."""
        return any(worker_status(box.get("State")) != "stopped" for _, box in self._listing(cluster))

    @engine_errors
    def reconnect_docker_cluster(self, cluster: ClusterView, verbose: int = 0) -> None:
        """Adopt the newest live server container and every live worker container of the cluster, on every engine.

        A container that was created but never started (its creator died in
        between) is started now; if it cannot start, it is removed.
        """
        live = [(index, box) for index, box in self._listing(cluster) if worker_status(box.get("State")) != "stopped"]
        live = [(index, box) for index, box in live if self._engines[index].start_if_created(box)]
        servers = sorted(((index, box) for index, box in live if box["Labels"].get(LABEL_ROLE) == "server"),
                         key=lambda item: _created(item[1]))
        self._server_id = self._handle(servers[-1][0], servers[-1][1]["Id"]) if servers else None
        known = {self._locate(handle) for handle in self.worker_ledger.handles()}
        adopted = 0
        for index, box in live:
            if box["Labels"].get(LABEL_ROLE) == "worker" and (index, box["Id"]) not in known:
                workers = label_workers(box)
                self.add_managed_worker_handles([self._handle(index, box["Id"])] * workers)
                adopted += workers
        say(logger, verbose, "cluster %r: %s server, %d worker(s) adopted", cluster.name, "a" if servers else "no", adopted)

    @engine_errors
    def cleanup_docker_cluster(self, cluster: ClusterView, deep: bool = False, verbose: int = 0) -> None:
        """Remove the cluster's stopped containers; with ``deep``, every container labelled with its name.

        Every engine is cleaned, even when another fails (its error is raised
        afterwards). A deep cleanup lists again after removing, a few times, so
        that containers still being created by a dying process are caught too.
        """

        def clean(engine: Engine) -> None:
            for attempt in range(5 if deep else 1):
                doomed = [box["Id"] for box in engine.containers(cluster.name)
                          if deep or worker_status(box.get("State")) == "stopped"]
                if not doomed:
                    break
                say(logger, verbose, "removing %d container(s) of cluster %r on %s", len(doomed), cluster.name,
                     engine.address)
                in_parallel(engine.remove, doomed, self.max_concurrent_calls)
                if deep:
                    time.sleep(0.2 * attempt)

        self._on_engines(clean)
        if deep:
            self._server_id = None
            with self._managed_lock:
                self.worker_ledger.remove(self.worker_ledger.handles())

    @engine_errors
    def get_docker_logs(self, cluster: ClusterView, verbose: int = 0) -> dict[str, str]:
        """What the cluster's containers printed, live or exited, on every engine: the server first.

        Returns
        -------
        dict of str to str
            ``"server"`` (the newest server container), ``"server <handle>"``
            (older ones), then ``"worker <handle>"`` per worker container, oldest
            first; each text is the container's whole log (stdout and stderr).
            A removed container's log is gone with it.
        """
        entries = log_entries(self._listing(cluster), self._handle)
        texts = in_parallel(lambda entry: self._engines[entry[1]].logs(entry[2]), entries, self.max_concurrent_calls)
        errors = [error for _, error in texts if error is not None]
        if errors:
            raise errors[0]
        return {key: str(text) for (key, _, _), (text, _) in zip(entries, texts, strict=True)}

    # -- the three primitives -----------------------------------------------------------------

    @engine_errors
    def run_docker_worker_containers(self, cluster: ClusterView, container: DockerContainer,
                                     hardware: DockerHardware, worker_number: int,
                                     verbose: int = 0) -> list[str]:
        """Start containers of up to ``max_workers_per_container`` workers, a few at a time.

        Each container goes to the engine with the most free CPU and memory
        (see :func:`._docker_hosts.place`). Returns one handle per worker.
        When some containers fail to start, the handles of the others are
        returned (a partial launch); when none starts, the first error is raised.
        """
        sizes = container.container_sizes(worker_number)
        if not sizes:
            return []
        targets = self._placement(cluster, hardware, sizes)
        self._on_engines(lambda engine: engine.ensure_image(container.image, self.pull), targets)

        def start(item: tuple[int, int]) -> str:
            index, size = item
            container_id = self._engines[index].start_container(
                cluster.name, container.for_workers(size, hardware), "worker", size, hardware, self.network_mode, None)
            return self._handle(index, container_id)

        results = in_parallel(start, list(zip(targets, sizes, strict=True)), self.max_concurrent_calls)
        handles = [handle for size, (handle, _) in zip(sizes, results, strict=True) if handle for _ in range(size)]
        errors = [error for _, error in results if error is not None]
        if errors and not handles:
            raise errors[0]
        if errors:
            logger.warning("%d of %d worker container(s) failed to start: %s", len(errors), len(sizes), errors[0])
        say(logger, verbose, "started %d worker container(s) on engine(s) %s", len(sizes) - len(errors), sorted(set(targets)))
        return handles

    @engine_errors
    def get_docker_worker_status(self, cluster: ClusterView, worker_handles: list[str],
                                 verbose: int = 0) -> list[str]:
        """Statuses from one API call per engine holding a handle; a missing container (or engine) is stopped."""
        located = [self._locate(handle) for handle in worker_handles]
        listed = self._on_engines(lambda engine: engine.containers(cluster.name),
                                  {where[0] for where in located if where is not None})
        states = {(index, box["Id"]): box.get("State") for index, boxes in listed.items() for box in boxes}
        return [worker_status(states.get(where)) if where is not None else "stopped" for where in located]

    @engine_errors
    def kill_docker_worker_containers(self, cluster: ClusterView, worker_handles: list[str],
                                      verbose: int = 0) -> list[bool]:
        """Remove the containers by force; a handle that is no container of the cluster is success.

        The handles on an engine that does not answer are not killed (``False``);
        when no engine holding a handle answers, its error is raised.
        """
        located = [self._locate(handle) for handle in worker_handles]
        listed, errors = self._each(lambda engine: engine.containers(cluster.name),
                                    {where[0] for where in located if where is not None})
        if errors and not listed:
            raise errors[min(errors)]
        for index, error in errors.items():
            logger.warning("cannot kill workers on Docker host %s: %s", self._engines[index].address,
                           translate(self, "kill_docker_worker_containers", error, None) or error)
        present = {(index, box["Id"]) for index, boxes in listed.items() for box in boxes}
        targets = sorted({where for where in located if where in present})
        removed = dict(zip(targets, self._remove_all(targets), strict=True))
        return [where is None or (where[0] not in errors and removed.get(where, True)) for where in located]
