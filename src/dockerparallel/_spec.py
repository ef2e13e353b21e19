"""A cluster's recipe from command-line options, and the cluster built from it."""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass, field
from typing import Any

from ._validation import check_count, check_name
from .backends.dask import DaskWorkerContainer, default_image
from .cluster import DockerCluster
from .container import DockerHardware
from ._config import provider_options
from .providers import make_provider, plugin_of, provider_class
from .state import StateStore


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` different TCP ports free on ``host`` right now (all held open while they are chosen)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def _free_port_on(host: str) -> int:
    """:func:`free_port`, with a ``ValueError`` naming ``host`` when nothing can listen there."""
    try:
        return free_port(host)
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ValueError(f"host: cannot listen on {host!r} on this machine ({reason})") from None


@dataclass
class ClusterSpec:
    """What the CLI options say about a cluster; :meth:`build` makes it."""

    name: str
    provider: str = "local"
    provider_options: dict[str, Any] = field(default_factory=dict)
    image: str | None = None
    workers_per_container: int = 1
    cpu: int = 1024
    memory: int = 2048
    host: str | None = None
    scheduler_port: int = 8786
    dashboard_port: int = 8787
    expected: int = 0
    scheduler: str | None = None  # a scheduler started elsewhere: only workers are run

    def __post_init__(self) -> None:
        check_name(self.name)
        check_count(self.workers_per_container, "workers_per_container", minimum=1, maximum=1024)
        check_count(self.expected, "workers")

    @classmethod
    def for_provider(cls, name: str, provider: str, **fields: Any) -> ClusterSpec:
        """A spec with the defaults of ``provider``: loopback and free ports where the host network is shared."""
        if plugin_of(provider_class(provider)).host_network:
            host = fields.get("host") or "127.0.0.1"
            fields["host"] = host
            _free_port_on(host)  # the host must be an address of this machine, even with both ports given
            ports = free_ports(2, host)  # two different ones: the scheduler's and the dashboard's
            for port, free in zip(("scheduler_port", "dashboard_port"), ports):
                if not fields.get(port):
                    fields[port] = free
        return cls(name=name, provider=provider, **{k: v for k, v in fields.items() if v is not None})

    def container(self) -> DaskWorkerContainer:
        """The worker container."""
        return DaskWorkerContainer(
            image=default_image() if self.image is None else self.image, host=self.host,
            scheduler_port=self.scheduler_port, dashboard_port=self.dashboard_port,
            max_workers_per_container=self.workers_per_container,
        )

    def build(self, store: StateStore) -> DockerCluster:
        """The cluster, on a new provider object."""
        # options not given come from the config, dockerparallel.providers.<name>
        cls = provider_class(self.provider)
        plugin = plugin_of(cls)
        options = {**provider_options(plugin.name, cls), **self.provider_options}
        if plugin.store_option:
            options[plugin.store_option] = store
        return DockerCluster(
            make_provider(self.provider, **options), self.container(), name=self.name,
            worker_number=self.expected, worker_hardware=DockerHardware(self.cpu, self.memory), state=store,
            server=self.scheduler,
        )
