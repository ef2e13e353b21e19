"""The Dask backend: ``dask scheduler`` as the server, ``dask worker`` as the workers."""

from __future__ import annotations

import logging
import sys
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import dask

from .._validation import check_count, check_flag, check_seconds
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
#: The Dask config variable that chooses how a nanny starts its worker processes.
ENV_START_METHOD = "DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD"
#: The values of :attr:`DaskWorkerContainer.start_method` (besides ``None``).
START_METHODS = ("fork", "forkserver", "spawn")
#: Dask's ``distributed.nanny.pre-spawn-environ``, for when ``distributed`` (which ships it) is not imported.
_PRE_SPAWN_DEFAULTS = {"MALLOC_TRIM_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                       "OPENBLAS_NUM_THREADS": "1"}
#: The hash seed Dask's nanny gives the workers it spawns, so that all workers hash strings alike.
_DASK_HASH_SEED = "6640"
#: A nanny preload (the text of a module, as ``dask worker --preload-nanny`` takes it) that waits
#: until the scheduler accepts connections, trying every 20 ms, before the nanny connects to it.
SCHEDULER_WAIT_PRELOAD = """\
# dockerparallel: wait until the scheduler listens, trying every 20 ms, for at most
# distributed.comm.timeouts.connect; then the nanny connects (and retries) as usual.
import asyncio, time
import dask
from dask.utils import parse_timedelta
from distributed.comm import get_address_host_port

async def dask_setup(nanny):
    address = nanny.scheduler.addr
    if not address.startswith(("tcp://", "tls://")):
        return
    ssl = nanny.connection_args.get("ssl_context") if address.startswith("tls://") else None
    host, port = get_address_host_port(address)
    deadline = time.monotonic() + parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"))
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=ssl), 5)
        except ConnectionRefusedError:
            await asyncio.sleep(0.02)
        except (OSError, asyncio.TimeoutError):
            return
        else:
            writer.close()
            return
"""

#: A scheduler preload (the text of a module, as ``dask scheduler --preload`` takes it) that starts the
#: Bokeh dashboard once the scheduler listens, importing it in a thread: the scheduler runs ``--no-dashboard``.
DASHBOARD_PRELOAD = """\
# dockerparallel: start the dashboard once the scheduler listens; Bokeh is imported in a thread meanwhile.
import asyncio, importlib, logging

logger = logging.getLogger("distributed.scheduler")
_tasks = set()

async def _start_dashboard(scheduler):
    loop = asyncio.get_running_loop()
    try:
        module = await loop.run_in_executor(None, importlib.import_module, "distributed.dashboard.scheduler")
    except ImportError:  # as Dask does without Bokeh: a page that says to install it
        from distributed.http.utils import get_handlers
        modules = ["distributed.http.scheduler.missing_bokeh"]
        scheduler.http_application.add_handlers(r".*", get_handlers(scheduler, modules, ""))
        return
    try:
        module.connect(scheduler.http_application, scheduler.http_server, scheduler, prefix="")
    except Exception:
        logger.exception("dockerparallel: the dashboard did not start")
    else:
        logger.info("dockerparallel: dashboard started")

def dask_setup(scheduler):
    task = asyncio.ensure_future(_start_dashboard(scheduler))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
"""


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


def fork_environment() -> dict[str, str]:
    """The variables a Dask nanny sets for the workers it spawns, for a container whose workers are forked.

    A spawned worker gets Dask's ``distributed.nanny.pre-spawn-environ``
    (``MALLOC_TRIM_THRESHOLD_``, ``OMP_NUM_THREADS``, ...) and
    ``PYTHONHASHSEED`` when its interpreter starts. A forked worker is a copy
    of its nanny and inherits the nanny's instead: a random hash seed per
    container, so workers of two containers would hash strings differently.
    In the container's environment they apply to the nanny, hence to the
    workers it forks.

    Returns
    -------
    dict of str to str
        Dask's pre-spawn variables (this process's Dask configuration over
        Dask's defaults) and ``PYTHONHASHSEED``, which is Dask's ``6640``
        unless the configuration sets one other than ``0``.
    """
    configured = dask.config.get("distributed.nanny.pre-spawn-environ", default=None) or {}
    env = {**_PRE_SPAWN_DEFAULTS, **{str(k): str(v) for k, v in configured.items()}}
    if env.get("PYTHONHASHSEED") in (None, "0"):
        env["PYTHONHASHSEED"] = _DASK_HASH_SEED
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
    worker_dashboard : bool
        Whether each worker serves a dashboard of its own (``dask worker
        --dashboard``). Off by default, as in ``distributed.LocalCluster``:
        it makes every worker process import Bokeh (more CPU than importing
        Dask itself), and the scheduler's dashboard shows every worker anyway.
    start_method : {"fork", "forkserver", "spawn"}, optional
        How the nanny of each container starts its worker processes (Dask's
        ``distributed.worker.multiprocessing-method``, set in the container's
        environment). ``"fork"`` copies the nanny, which has imported Dask
        already: a worker starts in milliseconds instead of importing Dask
        again in a fresh interpreter, as ``"spawn"`` (Dask's default) does.
        ``None`` (the default): ``"fork"`` when the machine that builds the
        command runs Linux, else Dask's default. See :meth:`worker_start_method`;
        with ``"fork"`` the container's environment also gets the variables
        of :func:`fork_environment`.
    defer_dashboard : bool, optional
        Whether the scheduler starts its dashboard just after it starts
        listening (:data:`DASHBOARD_PRELOAD`, a scheduler preload, with
        ``--no-dashboard``) instead of before: importing Bokeh takes about
        half a second of CPU, which then overlaps the workers' start instead
        of delaying it. The dashboard answers at the same address and link,
        from a moment after the scheduler accepts connections (about half a
        second when idle). Never when Dask's configuration names scheduler
        preloads (``distributed.scheduler.preload``), which a ``--preload``
        option would displace. ``None`` (the default): as
        :meth:`uses_preloads`.
    wait_for_scheduler : bool, optional
        Whether each nanny waits until the scheduler listens, trying every
        20 ms, before it connects (:data:`SCHEDULER_WAIT_PRELOAD`, a nanny
        preload). Workers start while the scheduler boots, and Dask's own
        connect retries back off exponentially with jitter: a nanny that
        tried for a second may sleep another second after the scheduler is
        up. The wait ends after ``distributed.comm.timeouts.connect`` (30 s)
        or on any error other than a refused connection, and the nanny then
        connects as usual. ``None`` (the default): as :meth:`uses_preloads`.
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
    worker_dashboard: bool = False
    start_method: str | None = None
    wait_for_scheduler: bool | None = None
    defer_dashboard: bool | None = None

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
        check_flag(self.worker_dashboard, "worker_dashboard")
        for flag in ("wait_for_scheduler", "defer_dashboard"):
            if getattr(self, flag) is not None:
                check_flag(getattr(self, flag), flag)
        if self.start_method is not None and self.start_method not in START_METHODS:
            raise ValueError(f"start_method must be one of {', '.join(map(repr, START_METHODS))} or None, "
                             f"got {self.start_method!r}")

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
        if self.uses_preloads(self.defer_dashboard) and not dask.config.get("distributed.scheduler.preload",
                                                                            default=None):
            command += ["--no-dashboard", "--preload", DASHBOARD_PRELOAD]
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
        if not self.worker_dashboard:
            command.append("--no-dashboard")
        if self.uses_preloads(self.wait_for_scheduler):
            command += ["--preload-nanny", SCHEDULER_WAIT_PRELOAD]
        environment = {**self.start_environment(), **self.environment}  # the container's own variables win
        return self.replace(command=command, environment=environment)  # type: ignore[return-value]

    def uses_preloads(self, option: bool | None = None) -> bool:
        """Whether the start-up preloads are used: ``option`` (:attr:`defer_dashboard`, :attr:`wait_for_scheduler`).

        Parameters
        ----------
        option : bool, optional
            The option's value; ``None`` (its default) stands for the rule.

        Returns
        -------
        bool
            ``option`` if it is set; else ``True`` over TCP and ``False``
            over TLS. A TLS container's environment holds the cluster's
            certificates (about 7 KB), and a provider may limit command and
            environment together (ECS: 8 KB of ``run_task`` overrides, when
            a given task definition cannot take the certificates as
            secrets): the preloads (about 1 KB each) stay out.
        """
        return self.protocol == "tcp" if option is None else option

    def worker_start_method(self) -> str | None:
        """The start method the worker command asks for.

        Returns
        -------
        str or None
            :attr:`start_method` if set; else ``"fork"`` when this machine
            runs Linux (where the containers of every provider run Linux
            too), and ``None`` elsewhere: Dask's default (``"spawn"``), as
            macOS and Windows have no safe ``fork``.
        """
        if self.start_method is not None:
            return self.start_method
        return "fork" if sys.platform.startswith("linux") else None

    def start_environment(self) -> dict[str, str]:
        """The environment that gives a worker container its start method (empty for Dask's default).

        With ``"fork"``, it also holds :func:`fork_environment`.
        """
        method = self.worker_start_method()
        if method is None:
            return {}
        return {**(fork_environment() if method == "fork" else {}), ENV_START_METHOD: method}

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
