"""One Docker Engine of a :class:`~dockerparallel.providers.docker.DockerProvider`: its connection and containers.

A provider holds one :class:`Engine` per host. An engine connects on first
use and caches what does not change (its size, its identity, the images it
has). Its methods let the docker SDK's errors travel up, each tagged with
the engine's address (:func:`at_engine`), so that the provider's error map
(:mod:`._docker_errors`) says which engine failed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import uuid
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
    TypeVar,
)

from ._docker_engine import (
    LABEL_ROLE,
    cluster_labels,
    connect,
    in_parallel,
    label_filters,
    worker_status,
)
from ._docker_errors import BUILD_HELP, ENGINE_ATTRIBUTE, ImageMissing, engine_address
from ._docker_hosts import Capacity, EngineHost, engine_identity

if TYPE_CHECKING:
    import docker

    from ..container import DockerContainer, DockerHardware

logger = logging.getLogger("dockerparallel.providers.docker")

#: Labels with a container's limits, read back when placing new containers.
LABEL_NANO_CPUS = "dockerparallel.nanocpus"
LABEL_MEMORY = "dockerparallel.memory"

R = TypeVar("R")


@contextlib.contextmanager
def at_engine(address: str) -> Iterator[None]:
    """Tag an exception leaving the body with the engine's ``address`` (the first tag stays)."""
    try:
        yield
    except Exception as exc:
        if not hasattr(exc, ENGINE_ATTRIBUTE):
            with contextlib.suppress(AttributeError, TypeError):
                setattr(exc, ENGINE_ATTRIBUTE, address)
        raise


class Engine:
    """One engine: a host address, its lazily connected client, and the operations on its containers.

    Parameters
    ----------
    host : EngineHost
        The engine's address and transport options.
    timeout : int
        Seconds one API call may take.
    pool_size : int
        Connections kept open (as many as concurrent calls).
    """

    def __init__(self, host: EngineHost, timeout: int, pool_size: int) -> None:
        self.host = host
        self.address = engine_address(host.base_url)
        self.timeout = timeout
        self.pool_size = pool_size
        self._client: docker.DockerClient | None = None
        self._lock = threading.Lock()
        self._info: dict[str, Any] | None = None
        self._images: set[str] = set()

    def __repr__(self) -> str:
        return f"Engine({self.address!r})"

    @property
    def client(self) -> docker.DockerClient:
        """The docker SDK client, connected on first use."""
        with self._lock:
            if self._client is None:
                with at_engine(self.address):
                    self._client = connect(self.host.base_url, self.timeout, self.pool_size,
                                           tls=self.host.tls_config(), use_ssh_client=self.host.use_ssh_client)
            return self._client

    @property
    def api(self) -> Any:
        """The low-level API client."""
        return self.client.api

    def info(self) -> dict[str, Any]:
        """The engine's ``info()`` (asked once): ``NCPU``, ``MemTotal``, ``ID``, ..."""
        if self._info is None:
            with at_engine(self.address):
                self._info = dict(self.client.info())
        return self._info

    def cpus(self) -> float:
        return float(self.info().get("NCPU") or os.cpu_count() or 1)

    def identity(self) -> tuple[str, str, str]:
        return engine_identity(self.info())

    def containers(self, name: str, role: str | None = None) -> list[dict[str, Any]]:
        """Every container labelled with cluster ``name`` (and ``role``), in one API call."""
        with at_engine(self.address):
            return list(self.api.containers(all=True, filters={"label": label_filters(name, role)}))

    def remove(self, container_id: str) -> bool:
        """Remove a container by force; a missing one (or one being removed) is success."""
        import docker

        try:
            with at_engine(self.address):
                self.api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: removal already in progress
                logger.warning("could not remove container %s on %s: %s", container_id[:12], self.address, exc)
                return False
        return True

    def ensure_image(self, image: str, pull: bool) -> None:
        """Make sure ``image`` is on the engine: pull it when it is missing (and ``pull``)."""
        import docker
        from docker.utils import parse_repository_tag

        if image in self._images:
            return
        with at_engine(self.address):
            try:
                self.api.inspect_image(image)
            except docker.errors.ImageNotFound:
                if not pull:
                    raise ImageMissing(f"image {image!r} is not on the Docker Engine at {self.address} and pulling "
                                       f"is off (pull=False); {BUILD_HELP}") from None
                logger.info("image %s is not on the engine at %s; pulling it", image, self.address)
                repository, tag = parse_repository_tag(image)
                try:
                    self._pull(repository, tag or "latest")
                    self.api.inspect_image(image)
                except docker.errors.DockerException as exc:
                    raise ImageMissing(f"image {image!r} is not on the Docker Engine at {self.address} and could "
                                       f"not be pulled ({exc}); {BUILD_HELP}") from exc
        self._images.add(image)

    def _pull(self, repository: str, tag: str) -> None:
        """Pull an image; an error reported inside the progress stream is raised.

        Docker answers most failed pulls with an HTTP error, which the SDK
        raises; Podman answers them all with 200 and an ``error`` item in
        the stream, which the SDK returns as text.
        """
        import docker

        for item in self.api.pull(repository, tag=tag, stream=True, decode=True):
            if isinstance(item, dict) and item.get("error"):
                raise docker.errors.DockerException(str(item["error"]))

    def limits(self, hardware: DockerHardware, workers: int) -> tuple[float, int]:
        """The cores (at most the engine's) and bytes of memory of a container of ``workers`` workers."""
        return min(workers * hardware.cores, self.cpus()), workers * hardware.memory * 2**20

    def start_container(self, name: str, container: DockerContainer, role: str, workers: int,
                        hardware: DockerHardware, network_mode: str, ports: dict[int, Any] | None) -> str:
        """Create and start one labelled container of cluster ``name``; return its full id."""
        cores, memory = self.limits(hardware, workers)
        labels = {**cluster_labels(name, role, workers), LABEL_NANO_CPUS: str(int(cores * 1e9)),
                  LABEL_MEMORY: str(memory)}
        with at_engine(self.address):
            api = self.api
            host_config = api.create_host_config(network_mode=network_mode, nano_cpus=int(cores * 1e9),
                                                 mem_limit=memory, port_bindings=ports)
            created = api.create_container(
                image=container.image, command=list(container.command) or None,
                environment=dict(container.environment), labels=labels, detach=True,
                name=f"{name}-{role}-{uuid.uuid4().hex[:8]}", ports=list(ports or ()) or None,
                host_config=host_config,
            )
            container_id = str(created["Id"])
            try:
                api.start(container_id)
            except Exception:
                self.remove(container_id)
                raise
        logger.debug("started %s container %s on %s", role, container_id[:12], self.address)
        return container_id

    def start_if_created(self, box: Mapping[str, Any]) -> bool:
        """Start a container left in the ``created`` state; return whether it lives."""
        if box.get("State") != "created":
            return True
        try:
            with at_engine(self.address):
                self.api.start(box["Id"])
            return True
        except Exception as exc:  # a broken leftover: remove it rather than count it
            logger.warning("removing container %s that cannot start on %s: %s", box["Id"][:12], self.address, exc)
            self.remove(box["Id"])
            return False

    def capacity(self, name: str) -> Capacity:
        """The engine's size, less the limits of cluster ``name``'s live containers on it (one list call)."""
        info = self.info()
        capacity = Capacity(float(info.get("NCPU") or 1), int(info.get("MemTotal") or 0))
        for box in self.containers(name):
            if worker_status(box.get("State")) != "stopped":
                capacity.take(*self._box_limits(box))
        return capacity

    def _box_limits(self, box: Mapping[str, Any]) -> tuple[float, int]:
        """A container's cores and memory: from its labels, else (an older container) from inspecting it."""
        labels = box.get("Labels") or {}
        try:
            return int(labels[LABEL_NANO_CPUS]) / 1e9, int(labels[LABEL_MEMORY])
        except (KeyError, ValueError):
            pass
        with at_engine(self.address):
            host_config = self.api.inspect_container(box["Id"]).get("HostConfig") or {}
        return (host_config.get("NanoCpus") or 0) / 1e9, int(host_config.get("Memory") or 0)

    def logs(self, container_id: str) -> str:
        """What a container printed (stdout and stderr, as the engine keeps them); ``""`` when it is gone."""
        import docker

        try:
            with at_engine(self.address):
                data = self.api.logs(container_id, stdout=True, stderr=True, timestamps=False)
        except docker.errors.NotFound:
            return ""
        return bytes(data).decode("utf-8", errors="replace")


def on_each(engines: Sequence[Engine], function: Callable[[Engine], R], indexes: Iterable[int] | None = None,
            ) -> tuple[dict[int, R], dict[int, Exception]]:
    """Call ``function`` on each engine (or those of ``indexes``) at once.

    Returns
    -------
    tuple of dict
        The results and the errors, by engine index; every engine has
        answered (or failed) when it returns.
    """
    chosen = sorted(set(range(len(engines)) if indexes is None else indexes))
    pairs = in_parallel(lambda index: function(engines[index]), chosen, max(1, len(chosen)))
    results: dict[int, R] = {}
    errors: dict[int, Exception] = {}
    for index, (result, error) in zip(chosen, pairs, strict=True):
        if error is not None:
            errors[index] = error
        else:
            results[index] = result  # type: ignore[assignment]
    return results, errors


def log_entries(boxes: Sequence[tuple[int, Mapping[str, Any]]], handle: Callable[[int, str], str],
                ) -> list[tuple[str, int, str]]:
    """``(key, engine index, container id)`` of each container, in the order of ``get_docker_logs``.

    The newest server is ``"server"``, older ones ``"server <handle>"``, then
    each worker container ``"worker <handle>"``, oldest first.
    """

    def created(item: tuple[int, Mapping[str, Any]]) -> int:
        return int(item[1].get("Created") or 0)

    def role(item: tuple[int, Mapping[str, Any]]) -> str:
        return str((item[1].get("Labels") or {}).get(LABEL_ROLE, ""))

    servers = sorted((item for item in boxes if role(item) == "server"), key=lambda item: -created(item))
    workers = sorted((item for item in boxes if role(item) == "worker"), key=created)
    entries = []
    for position, (index, box) in enumerate(servers):
        entries.append(("server" if position == 0 else f"server {handle(index, box['Id'])}", index, str(box["Id"])))
    entries += [(f"worker {handle(index, box['Id'])}", index, str(box["Id"])) for index, box in workers]
    return entries
