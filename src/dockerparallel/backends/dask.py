"""The Dask backend: ``dask scheduler`` as the server, ``dask worker`` as the workers."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import dask

from .._validation import check_count, check_seconds
from ._names import WORKER_NAME_PREFIX, container_token  # noqa: F401 - container_token is public here
from ..container import ENV_SERVER_IP, ENV_SERVER_PORT, DockerContainer, DockerHardware

if TYPE_CHECKING:
    from distributed import Client, Security

    from ..provider import ServerAddress


logger = logging.getLogger("dockerparallel.backends.dask")

ENV_SCHEDULER_ADDRESS = "DASK_SCHEDULER_ADDRESS"
#: Security field -> the Dask config variable that carries it into a container.
TLS_ENVIRONMENT = {
    "tls_ca_file": "DASK_DISTRIBUTED__COMM__TLS__CA_FILE",
    "tls_scheduler_cert": "DASK_DISTRIBUTED__COMM__TLS__SCHEDULER__CERT",
    "tls_scheduler_key": "DASK_DISTRIBUTED__COMM__TLS__SCHEDULER__KEY",
    "tls_worker_cert": "DASK_DISTRIBUTED__COMM__TLS__WORKER__CERT",
    "tls_worker_key": "DASK_DISTRIBUTED__COMM__TLS__WORKER__KEY",
}
_CLIENT_FIELDS = ("tls_ca_file", "tls_client_cert", "tls_client_key")
ENV_DASHBOARD_PORT = "DOCKERPARALLEL_DASHBOARD_PORT"


def default_image() -> str:
    """The official Dask image of the installed Dask version."""
    return f"ghcr.io/dask/dask:{dask.__version__}"


def new_security() -> Security:
    """Fresh per-cluster TLS certificates (a self-signed key pair, held in memory)."""
    from distributed import Security

    return Security.temporary()


def security_to_dict(security: Security) -> dict[str, str]:
    """The PEM contents of ``security``, for the (mode 0600) state store."""
    names = set(TLS_ENVIRONMENT) | set(_CLIENT_FIELDS)
    return {name: getattr(security, name) for name in sorted(names)}


def security_from_dict(data: dict[str, str]) -> Security:
    """The inverse of :func:`security_to_dict`."""
    from distributed import Security

    return Security(require_encryption=True, **data)


def secure_container(container: DockerContainer, security: Security) -> DockerContainer:
    """``container`` with the cluster's certificates in its environment, the keys and certificates marked secret."""
    env = security_environment(security)
    secret = {k: v for k, v in env.items() if k in TLS_ENVIRONMENT.values()}
    plain = {k: v for k, v in env.items() if k not in secret}
    return container.with_environment(**plain).with_secrets(**secret)


def security_environment(security: Security) -> dict[str, str]:
    """Environment variables that give a container the cluster's certificates."""
    env = {var: getattr(security, name) for name, var in TLS_ENVIRONMENT.items()}
    env["DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION"] = "True"
    return env


@dataclass(frozen=True, repr=False)
class DaskWorkerContainer(DockerContainer):
    """A Dask worker container; its server container runs the Dask scheduler.

    Parameters
    ----------
    image : str
        Image with Dask installed (default: ``ghcr.io/dask/dask:<dask version>``).
    max_workers_per_container : int
        Workers packed into one container (``dask worker --nworkers k``).
    host : str, optional
        Address the scheduler and workers listen on (``"127.0.0.1"`` keeps a
        local cluster on the loopback interface); all interfaces when omitted.
    scheduler_port, dashboard_port : int
        Ports of the scheduler and of its dashboard.
    death_timeout : int
        Seconds a worker waits for a lost scheduler before it exits.
    idle_timeout : float, optional
        Seconds the scheduler may stay idle (no task) before it stops; its
        workers then exit after ``death_timeout``: the whole cluster stops.
        ``None``: never.
    protocol : str
        ``"tcp"``, or ``"tls"`` once :meth:`with_security` has given the
        container its certificates.
    """

    image: str = field(default_factory=default_image)
    name: str | None = "dask-worker"
    command: Sequence[str] = ("dask", "worker")
    host: str | None = None
    scheduler_port: int = 8786
    dashboard_port: int = 8787
    death_timeout: int = 120
    idle_timeout: float | None = None
    protocol: str = "tcp"

    def __post_init__(self) -> None:
        super().__post_init__()
        for port in ("scheduler_port", "dashboard_port"):
            object.__setattr__(self, port, check_count(getattr(self, port), port, minimum=1, maximum=65535))
        if self.host is not None and not isinstance(self.host, str):
            raise TypeError(f"host must be a string or None, got {type(self.host).__name__}")
        timeout = check_count(self.death_timeout, "death_timeout", minimum=1, maximum=10**9)
        object.__setattr__(self, "death_timeout", timeout)
        if self.idle_timeout is not None:
            object.__setattr__(self, "idle_timeout", check_seconds(self.idle_timeout, "idle_timeout", allow_zero=False))
        if self.protocol not in ("tcp", "tls"):
            raise ValueError(f"protocol must be 'tcp' or 'tls', got {self.protocol!r}")

    def with_security(self, security: Security) -> DaskWorkerContainer:
        """A copy that speaks TLS with the certificates of ``security``."""
        from distributed import Security

        if not isinstance(security, Security):
            raise TypeError(
                f"security must be True, False or a distributed.Security, got {type(security).__name__}"
            )
        return secure_container(self, security).replace(protocol="tls")  # type: ignore[return-value]

    def server_container(self) -> DockerContainer:
        """The Dask scheduler container."""
        command = ["dask", "scheduler", "--protocol", self.protocol, "--port", str(self.scheduler_port),
                   "--dashboard-address", f"{self.host or ''}:{self.dashboard_port}"]
        if self.host:
            command += ["--host", self.host]
        if self.idle_timeout is not None:
            command += ["--idle-timeout", f"{self.idle_timeout:g}s"]
        return DockerContainer(
            image=self.image,
            name="dask-scheduler",
            command=command,
            environment={**self.environment, ENV_SERVER_PORT: str(self.scheduler_port),
                         ENV_DASHBOARD_PORT: str(self.dashboard_port)},
            secret_variables=self.secret_variables,
        )

    def for_server(self, address: ServerAddress) -> DaskWorkerContainer:
        """A copy whose workers connect to the scheduler at ``address``."""
        return self.with_environment(  # type: ignore[return-value]
            **{ENV_SERVER_IP: address.private_ip, ENV_SERVER_PORT: str(address.private_port),
               ENV_SCHEDULER_ADDRESS: f"{self.protocol}://{address.private_ip}:{address.private_port}"}
        )

    def for_workers(self, workers: int, hardware: DockerHardware | None = None) -> DaskWorkerContainer:
        """A copy running ``workers`` Dask workers, sized by ``hardware`` (per worker)."""
        workers = check_count(workers, "workers", minimum=1, maximum=self.max_workers_per_container)
        hardware = hardware or DockerHardware()
        scheduler = self.environment.get(ENV_SCHEDULER_ADDRESS)
        if scheduler is None:
            raise ValueError("the worker container has no scheduler address; call for_server() first")
        command = [
            "dask", "worker", scheduler,
            "--nworkers", str(workers),
            "--nthreads", str(max(1, round(hardware.cores))),
            "--memory-limit", f"{hardware.memory}MB",
            "--name", f"{WORKER_NAME_PREFIX}{uuid.uuid4().hex[:8]}",
            "--death-timeout", str(self.death_timeout),
        ]
        if self.host:
            command += ["--host", self.host]
        return self.replace(command=command)  # type: ignore[return-value]

    def scheduler_address(self, address: ServerAddress) -> str:
        """The address a client connects to."""
        return f"{self.protocol}://{address.client_ip}:{address.client_port}"

    def dashboard_link(self, address: ServerAddress) -> str:
        """The link to the scheduler's dashboard."""
        return f"http://{address.client_ip}:{self.dashboard_port}/status"

    def client(self, address: ServerAddress, **kwargs: Any) -> Client:
        """A :class:`distributed.Client` connected to the scheduler at ``address``."""
        from distributed import Client

        return Client(self.scheduler_address(address), **kwargs)


#: Adaptive scaling lives in ._adaptive (it imports ``distributed``); its names are imported on first use.
_ADAPTIVE_NAMES = ("Adaptive", "AdaptiveCluster", "adaptive_options", "container_key")

if TYPE_CHECKING:
    from ._adaptive import Adaptive, AdaptiveCluster, adaptive_options, container_key  # noqa: F401


def __getattr__(name: str) -> Any:
    """``Adaptive`` and its helpers, imported from :mod:`._adaptive` on first access (PEP 562)."""
    if name in _ADAPTIVE_NAMES:
        from . import _adaptive

        value = getattr(_adaptive, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
