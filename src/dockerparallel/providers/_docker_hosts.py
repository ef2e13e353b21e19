"""Several Docker Engines behind one :class:`~dockerparallel.providers.docker.DockerProvider`: pure rules.

What an engine address may be (:class:`EngineHost`), how a handle names
the engine its container lives on (:func:`make_handle`, :func:`split_handle`)
and where a new container goes (:func:`place`). Nothing here talks to an
engine.

A handle is ``"<host index>/<container id>"`` when the provider has several
hosts and the bare container id when it has one; a handle without a host
index is on the first host, so handles of a single-host provider stay what
they always were. The index is the position in the ``hosts`` list, which
:meth:`~dockerparallel.providers.docker.DockerProvider.spec_options` keeps:
a provider rebuilt from it reads the same handles.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

logger = logging.getLogger("dockerparallel.providers.docker")

#: The keys of a host given as a mapping.
HOST_KEYS = frozenset({"base_url", "tls", "use_ssh_client"})
#: The keys of a host's ``tls`` mapping (file paths, and whether to verify the engine's certificate).
TLS_KEYS = frozenset({"ca_cert", "client_cert", "client_key", "verify"})
_SCHEMES = ("unix://", "tcp://", "ssh://", "http://", "https://", "npipe://")


@dataclass(frozen=True)
class EngineHost:
    """One engine address of a provider.

    Attributes
    ----------
    base_url : str or None
        The docker SDK's base URL (``unix://``, ``tcp://``, ``ssh://``); ``None``:
        from the environment (``DOCKER_HOST``), only for a single host.
    tls : bool or mapping
        For ``tcp://``: ``True`` (certificates ``ca.pem``, ``cert.pem``,
        ``key.pem`` in ``DOCKER_CERT_PATH`` or ``~/.docker``), or a mapping of
        ``ca_cert``, ``client_cert``, ``client_key`` (file paths) and
        ``verify``; ``False``: no TLS.
    use_ssh_client : bool
        For ``ssh://``: run the ``ssh`` program instead of paramiko.
    """

    base_url: str | None
    tls: bool | Mapping[str, Any] = False
    use_ssh_client: bool = False

    def spec(self) -> str | dict[str, Any]:
        """This host as JSON-able data (file paths only, never a key's content)."""
        if not self.tls and not self.use_ssh_client:
            return str(self.base_url)
        spec: dict[str, Any] = {"base_url": self.base_url}
        if self.tls:
            spec["tls"] = self.tls if isinstance(self.tls, bool) else dict(self.tls)
        if self.use_ssh_client:
            spec["use_ssh_client"] = True
        return spec

    def tls_config(self) -> Any:
        """The docker SDK's ``TLSConfig`` of this host (``False`` without TLS)."""
        if not self.tls:
            return False
        from docker.tls import TLSConfig

        options: Mapping[str, Any] = {} if isinstance(self.tls, bool) else self.tls
        folder = os.environ.get("DOCKER_CERT_PATH") or os.path.join(os.path.expanduser("~"), ".docker")
        ca_cert = options.get("ca_cert", os.path.join(folder, "ca.pem"))
        cert = options.get("client_cert", os.path.join(folder, "cert.pem"))
        key = options.get("client_key", os.path.join(folder, "key.pem"))
        verify = bool(options.get("verify", True))
        return TLSConfig(client_cert=(cert, key), ca_cert=ca_cert if verify else None, verify=verify)


def _check_url(url: object, where: str) -> str:
    if not isinstance(url, str) or not url:
        raise TypeError(f"{where} must be a non-empty string (a docker base URL), got {url!r}")
    if not url.startswith(_SCHEMES):
        raise ValueError(f"{where} must start with one of {', '.join(_SCHEMES)}; got {url!r}")
    return url


def _check_tls(tls: object, url: str, where: str) -> bool | dict[str, Any]:
    if isinstance(tls, bool):
        value: bool | dict[str, Any] = tls
    elif isinstance(tls, Mapping):
        unknown = sorted(set(tls) - TLS_KEYS)
        if unknown:
            raise ValueError(f"{where}.tls: unknown option(s) {unknown}; known: {sorted(TLS_KEYS)}")
        for key, item in tls.items():
            if key == "verify" and not isinstance(item, bool):
                raise TypeError(f"{where}.tls.verify must be True or False, got {item!r}")
            if key != "verify" and (not isinstance(item, str) or not item):
                raise TypeError(f"{where}.tls.{key} must be a file path, got {item!r}")
        value = dict(tls)
    else:
        raise TypeError(f"{where}.tls must be True, False or a mapping, got {tls!r}")
    if value and not url.startswith(("tcp://", "https://")):
        raise ValueError(f"{where}.tls applies to tcp:// hosts only, not {url!r}")
    return value


def parse_host(host: object, index: int) -> EngineHost:
    """One entry of ``hosts``: a base URL, or a mapping with ``base_url``, ``tls``, ``use_ssh_client``.

    Raises
    ------
    TypeError, ValueError
        Naming ``hosts[index]`` and what is wrong with it.
    """
    where = f"hosts[{index}]"
    if isinstance(host, str):
        return EngineHost(_check_url(host, where))
    if not isinstance(host, Mapping):
        raise TypeError(f"{where} must be a base URL or a mapping, got {host!r}")
    unknown = sorted(set(host) - HOST_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {unknown}; known: {sorted(HOST_KEYS)}")
    url = _check_url(host.get("base_url"), f"{where}.base_url")
    ssh_client = host.get("use_ssh_client", False)
    if not isinstance(ssh_client, bool):
        raise TypeError(f"{where}.use_ssh_client must be True or False, got {ssh_client!r}")
    if ssh_client and not url.startswith("ssh://"):
        raise ValueError(f"{where}.use_ssh_client applies to ssh:// hosts only, not {url!r}")
    tls = _check_tls(host.get("tls", False), url, where)
    return EngineHost(url, tls, ssh_client)


def parse_hosts(hosts: Sequence[Any] | None, base_url: str | None) -> tuple[list[EngineHost], bool]:
    """The engines of a provider and whether ``hosts`` was given.

    Raises
    ------
    TypeError, ValueError
        Both ``hosts`` and ``base_url``, an empty list, a bad entry, or one address twice.
    """
    if hosts is None:
        return [EngineHost(base_url)], False
    if base_url is not None:
        raise ValueError("give either base_url or hosts, not both (base_url is the same as hosts=[base_url])")
    if isinstance(hosts, (str, bytes)) or not isinstance(hosts, Sequence):
        raise TypeError(f"hosts must be a list of docker base URLs, got {hosts!r}")
    if not hosts:
        raise ValueError("hosts must name at least one Docker Engine")
    parsed = [parse_host(host, index) for index, host in enumerate(hosts)]
    urls = [host.base_url for host in parsed]
    twice = sorted({url for url in urls if urls.count(url) > 1 and url is not None})
    if twice:
        raise ValueError(f"hosts names the same address more than once: {twice}")
    return parsed, True


# -- handles ----------------------------------------------------------------------------------------


def make_handle(index: int, container_id: str, several: bool) -> str:
    """The handle of container ``container_id`` on host ``index`` (bare id with a single host)."""
    return f"{index}/{container_id}" if several else container_id


def split_handle(handle: str, hosts: int) -> tuple[int, str] | None:
    """``(host index, container id)`` of a handle; ``None`` when it names no host of the provider.

    A handle without ``/`` is on the first host.
    """
    index, slash, container_id = handle.partition("/")
    if not slash:
        return 0, handle
    if not index.isdigit() or not container_id or int(index) >= hosts:
        return None
    return int(index), container_id


# -- placement ----------------------------------------------------------------------------------------


@dataclass
class Capacity:
    """What one engine has and what the cluster's running containers hold of it.

    Attributes
    ----------
    cpus : float
        The engine's cores (``NCPU``).
    memory : int
        The engine's memory in bytes (``MemTotal``).
    used_cpus, used_memory : float, int
        The limits of the cluster's containers running on it.
    """

    cpus: float
    memory: int
    used_cpus: float = 0.0
    used_memory: int = 0

    def room(self, cpus: float, memory: int) -> float:
        """How many containers of ``cpus`` cores and ``memory`` bytes still fit (may be fractional or negative)."""
        free_cpus, free_memory = self.cpus - self.used_cpus, self.memory - self.used_memory
        by_cpu = free_cpus / cpus if cpus > 0 else math.inf
        by_memory = free_memory / memory if memory > 0 else math.inf
        return min(by_cpu, by_memory)

    def take(self, cpus: float, memory: int) -> None:
        self.used_cpus += cpus
        self.used_memory += memory


def place(capacities: Sequence[Capacity], needs: Sequence[tuple[float, int]], names: Sequence[str]) -> list[int]:
    """The host index of each new container, one after the other: the one with the most room first.

    Parameters
    ----------
    capacities : sequence of Capacity
        One per host; updated with each container placed.
    needs : sequence of (float, int)
        The cores and bytes of memory of each new container (its limits on that host).
    names : sequence of str
        The hosts' addresses, for the warning.

    Returns
    -------
    list of int
        A container that fits nowhere goes to the host with the most room
        (ties: the first host) and a warning is logged.
    """
    chosen = []
    for cpus, memory in needs:
        rooms = [capacity.room(min(cpus, capacity.cpus), memory) for capacity in capacities]
        best = max(range(len(capacities)), key=lambda index: (rooms[index], -index))
        if rooms[best] < 1:
            logger.warning("a container of %.2f core(s) and %d MB fits on no Docker host; starting it on %s, "
                           "which has the most room", cpus, memory // 2**20, names[best])
        capacities[best].take(min(cpus, capacities[best].cpus), memory)
        chosen.append(best)
    return chosen


def engine_identity(info: Mapping[str, Any]) -> tuple[str, str, str]:
    """What tells two engines apart: their ID, host name and data root (two daemons of one machine share an ID)."""
    return str(info.get("ID", "")), str(info.get("Name", "")), str(info.get("DockerRootDir", ""))


def same_engines(identities: Sequence[tuple[str, str, str]]) -> list[tuple[int, int]]:
    """Pairs of host indexes whose addresses reach the same engine."""
    first: dict[tuple[str, str, str], int] = {}
    pairs = []
    for index, identity in enumerate(identities):
        if identity in first:
            pairs.append((first[identity], index))
        else:
            first[identity] = index
    return pairs
