"""The ``dockerparallel`` command: up, scale, status, list, down, demo."""

from __future__ import annotations

import functools
import logging
import re
import sys
import time
from typing import Any, Callable, Optional, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperCommand

from . import _demo
from ._progress import wait_with_progress
from ._errors import ClusterExistsError, DockerParallelError
from ._validation import check_count, check_seconds
from ._spec import HOST_NETWORK_PROVIDERS, ClusterSpec
from .cluster import DockerCluster
from .providers import PROVIDERS, provider_label
from .state import ClusterRecord, StateStore, StateStoreError

app = typer.Typer(
    help="Run Dask clusters on container services without Kubernetes.",
    epilog=("Exit status: 0 when done; 1 on an error, including a number out of range "
            "(a negative worker number, say), said on one line; 2 when the command line does not parse."),
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])
_EXPECTED_ERRORS = (DockerParallelError, ValueError, TypeError, TimeoutError, ImportError, OSError, KeyError)
#: The server column of a cluster whose record cannot be rebuilt.
UNREADABLE = "unreadable"


def _one_line_errors(func: F) -> F:
    """Turn an error into one line on stderr and exit status 1 (the traceback goes to the -vv log)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except Exception as exc:
            logging.getLogger("dockerparallel.cli").debug("%s failed", func.__name__, exc_info=True)
            err_console.print(f"[red]error:[/red] {_describe(exc)}", highlight=False)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _describe(exc: Exception) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    if isinstance(exc, _EXPECTED_ERRORS):
        return str(exc)
    return f"{type(exc).__name__}: {exc} (run with -vv for the details)"


@app.callback()
def _root(verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More output (-v, -vv).")) -> None:
    """Run Dask clusters on container services without Kubernetes."""
    # Only our own loggers get louder: a cloud SDK's debug log carries request headers and bodies.
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("dockerparallel").setLevel(level)


class _SignedArguments(TyperCommand):
    """A command whose number arguments may be negative: ``scale NAME -1`` reaches the range check
    (which names the argument) instead of failing as the unknown option ``-1``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, list(args))  # the parser consumes the list it gets
        except typer.TyperException as exc:  # NoSuchOption, from the click that typer bundles
            if not re.fullmatch(r"-\d", str(getattr(exc, "option_name", ""))):
                raise
        ctx.ignore_unknown_options = True  # now "-1" is kept as an argument
        return super().parse_args(ctx, args)


def _record(store: StateStore, name: str) -> ClusterRecord:
    record = store.load_cluster(name)
    if record is None:
        raise KeyError(f"no cluster named {name!r}; see 'dockerparallel list'")
    return record


def _load(store: StateStore, name: str) -> DockerCluster:
    _record(store, name)
    return DockerCluster.reconnect(name, state=store)  # type: ignore[no-any-return]


def _check_name_free(store: StateStore, name: str | None) -> None:
    """The fast answer for a recorded name; ``start_cluster()`` checks it again, atomically."""
    if name is not None and store.load_cluster(name) is not None:
        raise ClusterExistsError(name, f"its record exists in {store.path}")


def _unreadable(exc: StateStoreError, name: str) -> str:
    """What to say of a record that cannot be rebuilt, and how to remove it."""
    return (f"{exc}; to stop it and remove the record, pass --provider: 'dockerparallel down {name} "
            f"--provider PROVIDER' (where it ran: {', '.join(PROVIDERS)})")


def _provider_options(provider: str, region: str | None, subnet: list[str], security_group: list[str],
                      network: str | None, pull: bool) -> dict[str, Any]:
    if provider == "ecs":
        return {k: v for k, v in {"region": region, "subnets": subnet or None,
                                  "security_groups": security_group or None}.items() if v}
    if provider == "docker":
        return {"pull": pull, **({"network_mode": network} if network else {})}
    return {}


def _start(cluster: DockerCluster, store: StateStore, workers: int, timeout: float, wait: bool,
           connected: bool) -> None:
    """Start ``cluster``; if that fails, remove what was started and the record, then re-raise."""
    try:
        with err_console.status(f"starting the server of {cluster.name}"):
            cluster.start_cluster(timeout=timeout)
        if wait:
            wait_with_progress(cluster, workers, timeout, err_console, connected=connected)
    except ClusterExistsError:
        raise  # the name is another cluster's, live: nothing of ours to remove, and its record is not ours
    except BaseException:
        err_console.print(f"start of {cluster.name} failed; removing what was started", highlight=False)
        try:
            cluster.stop_cluster()
            cluster.cleanup(deep=True)
        finally:
            store.delete_cluster(cluster.name)
        raise


@app.command()
@_one_line_errors
def up(
    provider: str = typer.Option("local", help=f"Where to run: {', '.join(PROVIDERS)}."),
    workers: int = typer.Option(2, "--workers", "-n", help="Number of workers."),
    name: Optional[str] = typer.Option(None, help="Cluster name (generated when omitted)."),
    cpu: int = typer.Option(1024, help="CPU per worker, in 1/1024 core."),
    memory: int = typer.Option(2048, help="Memory per worker, in MB."),
    workers_per_container: int = typer.Option(1, "--workers-per-container", "-k", help="Workers per container."),
    image: Optional[str] = typer.Option(None, help="Container image (docker, ecs)."),
    host: Optional[str] = typer.Option(None, help="Listen address (local, docker: 127.0.0.1)."),
    port: int = typer.Option(0, help="Scheduler port (0: a free one on local/docker, 8786 elsewhere)."),
    dashboard_port: int = typer.Option(0, help="Dashboard port (0: a free one on local/docker, 8787 elsewhere)."),
    network: Optional[str] = typer.Option(None, help="Docker network mode (host, bridge)."),
    pull: bool = typer.Option(True, help="Pull a missing image (docker)."),
    region: Optional[str] = typer.Option(None, help="AWS region (ecs)."),
    subnet: list[str] = typer.Option([], help="Subnet id, repeatable (ecs)."),
    security_group: list[str] = typer.Option([], help="Security group id, repeatable (ecs)."),
    timeout: float = typer.Option(600.0, help="Seconds to wait for the workers."),
    wait: bool = typer.Option(True, help="Wait until the workers run."),
) -> None:
    """Start a cluster and wait until its workers run."""
    check_seconds(timeout, "timeout")
    store = StateStore()
    _check_name_free(store, name)
    spec = ClusterSpec.for_provider(
        name or DockerCluster.new_name(), provider, image=image, workers_per_container=workers_per_container,
        cpu=cpu, memory=memory, host=host, scheduler_port=port or None, dashboard_port=dashboard_port or None,
        expected=workers,
        provider_options=_provider_options(provider, region, subnet, security_group, network, pull),
    )
    cluster = spec.build(store)
    _start(cluster, store, workers, timeout, wait, connected=provider in HOST_NETWORK_PROVIDERS)
    console.print(f"cluster [bold]{spec.name}[/bold] is up with {workers} worker(s)")
    console.print(f"  scheduler: {cluster.scheduler_address}")
    console.print(f"  dashboard: {cluster.dashboard_link}")


@app.command(cls=_SignedArguments)
@_one_line_errors
def scale(
    name: str = typer.Argument(..., help="Cluster name."),
    workers: int = typer.Argument(..., help="The new number of workers (0 or more)."),
    wait: bool = typer.Option(False, help="Wait until the workers run."),
    timeout: float = typer.Option(600.0, help="Seconds to wait with --wait."),
) -> None:
    """Set the number of workers of a running cluster."""
    check_count(workers, "worker_number")  # before anything is read or changed
    check_seconds(timeout, "timeout")
    cluster = _load(StateStore(), name)
    cluster.set_worker_number(workers)
    if wait:
        wait_with_progress(cluster, workers, timeout, err_console)
    numbers = cluster.get_worker_numbers()
    console.print(f"{name}: expected {numbers.expected}, running {numbers.running}, "
                  f"initializing {numbers.initializing}")


_STATUS_HELP = (
    "Show clusters: server state and worker numbers.\n\n"
    "A record that cannot be rebuilt (its provider class no longer imports, for instance one defined in a "
    "script) shows as 'unreadable', with the reason on stderr. 'status' still shows the others and exits 0; "
    "'status NAME' of such a cluster exits 1. 'dockerparallel down NAME --provider PROVIDER' stops it "
    "and removes the record."
)


@app.command(help=_STATUS_HELP)
@_one_line_errors
def status(name: Optional[str] = typer.Argument(None, help="Cluster name (all when omitted).")) -> None:
    """Show clusters: server state and worker numbers (see ``_STATUS_HELP``)."""
    store = StateStore()
    records = [_record(store, name)] if name else store.list_clusters()
    table = Table("name", "provider", "server", "expected", "running", "initializing")
    table.add_column("scheduler", overflow="fold")
    reasons = []
    for record in records:
        row, reason = _status_row(store, record)
        table.add_row(*row)
        reasons += [reason] if reason else []
    console.print(table)
    for reason in reasons:
        label = "[red]error:[/red]" if name else "[yellow]warning:[/yellow]"
        err_console.print(f"{label} {escape(reason)}", highlight=False)
    if name and reasons:
        raise typer.Exit(1)


def _status_row(store: StateStore, record: ClusterRecord) -> tuple[list[str], str | None]:
    """The table row of a recorded cluster, and why its record cannot be rebuilt (``None`` if it can)."""
    label = provider_label(record.provider)
    try:
        cluster = DockerCluster.reconnect(record.name, state=store)
    except StateStoreError as exc:
        return [record.name, label, UNREADABLE, "-", "-", "-", "-"], _unreadable(exc, record.name)
    server = cluster.server_status()
    numbers = cluster.get_worker_numbers()
    address = cluster.scheduler_address if server == "running" else "-"
    row = [record.name, label, server, str(numbers.expected), str(numbers.running), str(numbers.initializing)]
    return [*row, address], None


@app.command("list")
@_one_line_errors
def list_() -> None:
    """List the recorded clusters."""
    for record in StateStore().list_clusters():
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        console.print(f"{record.name}\t{provider_label(record.provider)}\t{created}", highlight=False)


_DOWN_HELP = (
    "Stop a cluster and remove everything labelled with its name.\n\n"
    "A recorded cluster is rebuilt from its record (--provider is then not used); one whose record "
    "cannot be rebuilt needs --provider, which says where to look for what it left."
)


@app.command(help=_DOWN_HELP)
@_one_line_errors
def down(
    name: str = typer.Argument(..., help="Cluster name."),
    provider: Optional[str] = typer.Option(
        None, help="Provider, for a cluster this machine has no record of, or whose record cannot be rebuilt."),
    image: Optional[str] = typer.Option(None, help="Image, with --provider."),
) -> None:
    """Stop a cluster and remove everything labelled with its name (see ``_DOWN_HELP``)."""
    store = StateStore()
    cluster = _cluster_to_stop(store, name, provider, image)
    with err_console.status(f"stopping {name}"):
        cluster.stop_cluster()
        cluster.cleanup(deep=True)
    store.delete_cluster(name)
    console.print(f"cluster [bold]{name}[/bold] is down")


def _cluster_to_stop(store: StateStore, name: str, provider: str | None, image: str | None) -> DockerCluster:
    """The cluster ``name``, from its record, else (no record, or one that cannot be rebuilt) from ``provider``."""
    if store.load_cluster(name) is not None:
        try:
            return DockerCluster.reconnect(name, state=store)  # type: ignore[no-any-return]
        except StateStoreError as exc:
            if provider is None:
                raise StateStoreError(_unreadable(exc, name)) from None
            logging.getLogger("dockerparallel.cli").info("%s; looking for it on %s", exc, provider)
    elif provider is None:
        raise KeyError(f"no cluster named {name!r}; pass --provider to clean up one started elsewhere")
    cluster = ClusterSpec.for_provider(name, provider, image=image).build(store)
    cluster.reconnect()  # type: ignore[call-arg]
    return cluster


@app.command()
@_one_line_errors
def demo(
    workers: int = typer.Option(4, "--workers", "-n", help="Workers to start with."),
    tasks: int = typer.Option(64, help="Tasks of the computation."),
) -> None:
    """Start a local cluster, compute pi by Monte Carlo on it while scaling, and stop it."""
    check_count(workers, "workers", minimum=1, maximum=64)
    check_count(tasks, "tasks", minimum=1, maximum=100_000)
    _demo.run(console, err_console, workers=workers, tasks=tasks)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script: usage errors are one line too."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        app(args=args)  # prints the help
        return
    try:
        status = app(args=args, standalone_mode=False)
    except typer.Abort:
        err_console.print("aborted")
        raise SystemExit(130) from None
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except typer.TyperException as exc:
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        err_console.print(f"[red]error:[/red] {message}", highlight=False)
        raise SystemExit(getattr(exc, "exit_code", 2)) from None
    raise SystemExit(status if isinstance(status, int) else 0)
