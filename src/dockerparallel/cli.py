"""The ``dockerparallel`` command: up, scale, status, list, logs, down, demo.

Every import of Dask (and so of :mod:`dockerparallel.cluster`, the providers
and the backends) happens inside the command that needs it: ``--help``,
completion and ``status`` of an empty state file answer without it.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand

from ._cli_output import UNREADABLE, ClientPool, OutputFormat, live_row, print_json, record_row, table
from ._cli_output import unreadable_reason as _unreadable
from ._cli_providers import ProviderOptionsCommand
from ._errors import ClusterExistsError, DockerParallelError, StateStoreError
from ._validation import check_count, check_seconds
from .state import ClusterRecord, StateStore

if TYPE_CHECKING:
    from .cluster import DockerCluster

__all__ = ["UNREADABLE", "app", "main"]

app = typer.Typer(
    help="Run Dask clusters on container services without Kubernetes.",
    epilog=("Exit status: 0 when done; 1 on an error, including a number out of range "
            "(a negative worker number, say), said on one line; 2 when the command line does not parse."),
    no_args_is_help=True, add_completion=True, pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: typer's Rich help formatter alone takes 0.1-0.2 s to import
)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])
_EXPECTED_ERRORS = (DockerParallelError, ValueError, TypeError, TimeoutError, ImportError, OSError, KeyError)


def _one_line_errors(func: F) -> F:
    """Turn an error into one line on stderr and exit status 1 (the traceback goes to the -vv log)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.TyperException):  # a command line that does not parse: exit status 2
            raise
        except Exception as exc:
            logging.getLogger("dockerparallel.cli").debug("%s failed", func.__name__, exc_info=True)
            err_console.print(f"[red]error:[/red] {escape(_describe(exc))}", highlight=False)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _describe(exc: Exception) -> str:
    if isinstance(exc, KeyError) and exc.args:
        text = str(exc.args[0])
    elif isinstance(exc, _EXPECTED_ERRORS):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc} (run with -vv for the details)"
    return " ".join(text.split())  # one line, whatever the exception said


def _version(value: bool) -> None:
    """``--version``: this package's version and Dask's, read from the installed metadata (Dask is not imported)."""
    if not value:
        return
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    console.print(f"dockerparallel {installed('dockerparallel')} (dask {installed('dask')}, "
                  f"distributed {installed('distributed')})", highlight=False)
    raise typer.Exit()


@app.callback()
def _root(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More output (-v, -vv)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the versions of dockerparallel and Dask, and exit."),
) -> None:
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


def complete_name(incomplete: str) -> list[str]:
    """Shell completion of a NAME argument: the recorded clusters whose name starts with ``incomplete``."""
    try:
        names = [record.name for record in StateStore().list_clusters()]
    except Exception:  # noqa: BLE001 - completion must never fail the shell
        return []
    return [name for name in names if name.startswith(incomplete)]


def _name_argument(help_text: str = "Cluster name.") -> Any:
    return typer.Argument(..., help=help_text, autocompletion=complete_name)


def _record(store: StateStore, name: str) -> ClusterRecord:
    record = store.load_cluster(name)
    if record is None:
        raise KeyError(f"no cluster named {name!r}; see 'dockerparallel list'")
    return record


def _load(store: StateStore, name: str) -> DockerCluster:
    from .cluster import DockerCluster

    _record(store, name)
    return DockerCluster.reconnect(name, state=store)  # type: ignore[no-any-return]


def _check_name_free(store: StateStore, name: str | None) -> None:
    """The fast answer for a recorded name; ``start_cluster()`` checks it again, atomically."""
    if name is not None and store.load_cluster(name) is not None:
        raise ClusterExistsError(name, f"its record exists in {store.path}")


def _counts_connected(provider: str | object) -> bool:
    """Whether a wait counts the workers the scheduler sees: only where it is reachable from here
    (a provider that shares this machine's network)."""
    from .providers import plugin_of, provider_class

    cls = provider_class(provider) if isinstance(provider, str) else type(provider)
    return plugin_of(cls).host_network


def _start(cluster: DockerCluster, store: StateStore, workers: int, timeout: float, wait: bool,
           connected: bool) -> None:
    """Start ``cluster``; if that fails, remove what was started and the record, then re-raise."""
    from ._progress import wait_with_progress

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


_UP_HELP = (
    "Start a cluster and wait until its workers run. Defaults come from the dockerparallel config.\n\n"
    "Each provider adds its own options (for instance --network and --pull for docker; --region, --subnet "
    "and --security-group for ecs): 'dockerparallel up --provider NAME --help' shows them, "
    "'dockerparallel providers' lists every installed provider with its options."
)


@app.command(cls=ProviderOptionsCommand, help=_UP_HELP,
             context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@_one_line_errors
def up(
    ctx: typer.Context,
    provider: Optional[str] = typer.Option(
        None, help="Where to run: an installed provider's name (local, docker, ecs, or a plugin's: see "
        "'dockerparallel providers') or package.module:Class (default: dockerparallel.provider, local)."),
    workers: Optional[int] = typer.Option(None, "--workers", "-n",
                                          help="Number of workers (default: dockerparallel.workers, else 2)."),
    name: Optional[str] = typer.Option(None, help="Cluster name (generated when omitted)."),
    cpu: Optional[int] = typer.Option(None, help="CPU per worker, in 1/1024 core (default: the config's, 1024)."),
    memory: Optional[str] = typer.Option(None, help="Memory per worker: MB or a size such as '4 GiB' "
                                         "(default: the config's, 2 GiB)."),
    workers_per_container: Optional[int] = typer.Option(None, "--workers-per-container", "-k",
                                                        help="Workers per container (default: the config's, 1)."),
    image: Optional[str] = typer.Option(None, help="Container image (docker, ecs; default: the config's)."),
    host: Optional[str] = typer.Option(None, help="Listen address (local, docker: 127.0.0.1)."),
    port: int = typer.Option(0, help="Scheduler port (0: a free one on local/docker, 8786 elsewhere)."),
    dashboard_port: int = typer.Option(0, help="Dashboard port (0: a free one on local/docker, 8787 elsewhere)."),
    timeout: str = typer.Option("10 minutes", help="How long to wait for the workers: seconds or '5m'."),
    wait: bool = typer.Option(True, help="Wait until the workers run (local, docker: until the scheduler sees them)."),
    scheduler: Optional[str] = typer.Option(None, help="A scheduler started elsewhere ('tcp://10.0.0.5:8786'): "
                                            "only workers are started, and they join it."),
) -> None:
    """Start a cluster and wait until its workers run (see ``_UP_HELP``)."""
    from ._cli_providers import ProviderOptionError, parse_provider_options
    from ._spec import ClusterSpec
    from .cluster import DockerCluster

    seconds = check_seconds(timeout, "timeout")
    store = StateStore()
    _check_name_free(store, name)
    chosen = _up_defaults(provider, workers, cpu, memory, workers_per_container, image)
    try:
        options = parse_provider_options(chosen["provider"], ctx.args)
    except ProviderOptionError as exc:  # a word of the command line: a usage error (exit status 2)
        raise typer.BadParameter(str(exc), param_hint="provider options") from None
    spec = ClusterSpec.for_provider(
        name or DockerCluster.new_name(), chosen["provider"], image=chosen["image"], host=host,
        workers_per_container=chosen["per"], cpu=chosen["cpu"], memory=chosen["memory"],
        scheduler_port=port or None, dashboard_port=dashboard_port or None, expected=chosen["workers"],
        scheduler=scheduler, provider_options=options,
    )
    cluster = spec.build(store)
    _start(cluster, store, chosen["workers"], seconds, wait, connected=_counts_connected(chosen["provider"]))
    console.print(f"cluster [bold]{spec.name}[/bold] is up with {chosen['workers']} worker(s)")
    console.print(f"  scheduler: {cluster.scheduler_address}")
    console.print(f"  dashboard: {cluster.dashboard_link}")
    console.print(f"  idle timeout: {_idle_text(cluster)}")


def _up_defaults(provider: str | None, workers: int | None, cpu: int | None, memory: str | None,
                 per: int | None, image: str | None) -> dict[str, Any]:
    """The options of ``up``, each from the command line or else from the dockerparallel config."""
    from . import _config

    hardware = _config.hardware("worker-hardware")
    return {
        "provider": provider or _config.get("provider") or "local",
        "workers": workers if workers is not None else (_config.count("workers") or 2),
        "cpu": cpu if cpu is not None else hardware.cpu,
        "memory": hardware.memory if memory is None else _config.megabytes(
            int(memory) if memory.strip().isdigit() else memory, name="memory"),  # a bare number is MB
        "per": per if per is not None else _config.count("workers-per-container", minimum=1, maximum=1024),
        "image": image if image is not None else _config.get("image"),
    }


def _idle_text(cluster: DockerCluster) -> str:
    seconds = getattr(cluster.worker_container, "idle_timeout", None)
    if not seconds:
        return "off (the cluster runs until 'dockerparallel down')"
    return f"{seconds:g} s (the whole cluster stops once its scheduler has been idle that long)"


@app.command(cls=_SignedArguments)
@_one_line_errors
def scale(
    name: str = _name_argument(),
    workers: int = typer.Argument(..., help="The new number of workers (0 or more)."),
    wait: bool = typer.Option(False, help=("Wait until the workers run: on local and docker, until the scheduler "
                                           "sees exactly that many workers connected, as 'up' does.")),
    timeout: float = typer.Option(600.0, help="Seconds to wait with --wait."),
) -> None:
    """Set the number of workers of a running cluster."""
    from ._progress import wait_with_progress

    check_count(workers, "worker_number")  # before anything is read or changed
    check_seconds(timeout, "timeout")
    cluster = _load(StateStore(), name)
    cluster.set_worker_number(workers)
    if wait:
        wait_with_progress(cluster, workers, timeout, err_console,
                           connected=_counts_connected(cluster.provider))
    numbers = cluster.get_worker_numbers()
    console.print(f"{name}: expected {numbers.expected}, running {numbers.running}, "
                  f"initializing {numbers.initializing}")


_OUTPUT_HELP = ("table, or json: an array of objects with the keys name, provider, server, expected, running, "
                "initializing, connected, scheduler, dashboard, created, error (null when unknown).")

_STATUS_HELP = (
    "Show clusters: server state, worker numbers (expected, running, initializing, and connected: the workers "
    "the scheduler sees, when it can be reached from here) and links.\n\n"
    "A record that cannot be rebuilt (its provider class no longer imports, for instance one defined in a "
    "script) shows as 'unreadable', with the reason on stderr (and in 'error' with --output json). 'status' "
    "still shows the others and exits 0; 'status NAME' of such a cluster exits 1. "
    "'dockerparallel down NAME --provider PROVIDER' stops it and removes the record.\n\n"
    "--watch redraws the table every --interval (2s, 500ms, 1m) until Ctrl-C."
)


@app.command(help=_STATUS_HELP)
@_one_line_errors
def status(
    name: Optional[str] = typer.Argument(None, help="Cluster name (all when omitted).", autocompletion=complete_name),
    output: OutputFormat = typer.Option(OutputFormat.TABLE, "--output", "-o", help=_OUTPUT_HELP),
    watch: bool = typer.Option(False, "--watch", "-w", help="Redraw the table every --interval until Ctrl-C."),
    interval: str = typer.Option("2s", help="Time between redraws with --watch: 2s, 500ms, 1m."),
) -> None:
    """Show clusters: server state and worker numbers (see ``_STATUS_HELP``)."""
    store = StateStore()
    if watch:
        _watch(store, name, output, interval)
        return
    records = [_record(store, name)] if name else store.list_clusters()
    clients = ClientPool()
    try:
        rows = [live_row(store, record, clients) for record in records]
    finally:
        clients.close()
    if output is OutputFormat.JSON:
        print_json(rows)
    else:
        console.print(table(rows))
    for row in rows:
        if row.error:
            label = "[red]error:[/red]" if name else "[yellow]warning:[/yellow]"
            err_console.print(f"{label} {escape(row.error)}", highlight=False)
    if name and any(row.error for row in rows):
        raise typer.Exit(1)


def _watch(store: StateStore, name: str | None, output: OutputFormat, interval: str) -> None:
    from ._cli_watch import parse_interval, watch

    if output is not OutputFormat.TABLE:
        raise ValueError("--watch redraws a table; it cannot be combined with --output json")
    seconds = parse_interval(interval)
    if name:
        _record(store, name)
    watch(store, name, seconds, console)


@app.command("list")
@_one_line_errors
def list_(output: OutputFormat = typer.Option(OutputFormat.TABLE, "--output", "-o", help=(
        _OUTPUT_HELP + " 'list' reads the state file only: server, running, initializing, connected, scheduler "
        "and dashboard are null (see 'status')."))) -> None:
    """List the recorded clusters (name, provider, creation time), without asking any provider."""
    rows = [record_row(record) for record in StateStore().list_clusters()]
    if output is OutputFormat.JSON:
        print_json(rows)
        return
    for row in rows:
        created = (row.created or "").replace("T", " ")[:19]
        console.print(f"{row.name}\t{row.provider}\t{created}", highlight=False, markup=False)


_LOGS_HELP = (
    "Print what the cluster's containers printed, each under a header line as 'tail' writes: "
    "'==> server <==', '==> worker HANDLE <=='.\n\n"
    "--server and --worker ID (repeatable: the workers whose handle contains ID) choose entries; with "
    "neither, every container the provider can still read is shown. --follow prints what is new every "
    "second until Ctrl-C."
)


@app.command(help=_LOGS_HELP)
@_one_line_errors
def logs(
    name: str = _name_argument(),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new output until Ctrl-C."),
    worker: list[str] = typer.Option([], "--worker", help="Only the workers whose handle contains this, repeatable."),
    server: bool = typer.Option(False, "--server", help="Only the server (with --worker: the server too)."),
) -> None:
    """Print the output of a cluster's containers (see ``_LOGS_HELP``)."""
    from . import _cli_logs

    cluster = _load(StateStore(), name)
    provider = type(cluster.provider).__name__

    def fetch() -> dict[str, str]:
        found = cluster.provider.get_docker_logs(cluster, cluster.verbose)
        return _cli_logs.select(_cli_logs.check_logs(found, provider), worker, server)

    if follow:
        _cli_logs.follow(fetch, sys.stdout)
        return
    found = fetch()
    if not found:
        raise ValueError(f"no output of cluster {name!r}"
                         + (" matches --server/--worker" if worker or server else f": {provider} keeps none"))
    _cli_logs.print_logs(found, sys.stdout)


_DOWN_HELP = (
    "Stop a cluster and remove everything labelled with its name.\n\n"
    "A recorded cluster is rebuilt from its record (--provider is then not used); one whose record "
    "cannot be rebuilt needs --provider, which says where to look for what it left.\n\n"
    "The ecs provider keeps the cluster's CloudWatch log group (so 'logs' still reads it) unless "
    "--delete-logs is given; the other providers keep no logs beyond their containers, and ignore it."
)


@app.command(help=_DOWN_HELP)
@_one_line_errors
def down(
    name: str = _name_argument(),
    provider: Optional[str] = typer.Option(
        None, help="Provider, for a cluster this machine has no record of, or whose record cannot be rebuilt."),
    image: Optional[str] = typer.Option(None, help="Image, with --provider."),
    delete_logs: bool = typer.Option(False, "--delete-logs", help="Also delete the logs the provider keeps (ecs)."),
) -> None:
    """Stop a cluster and remove everything labelled with its name (see ``_DOWN_HELP``)."""
    store = StateStore()
    cluster = _cluster_to_stop(store, name, provider, image)
    if delete_logs and hasattr(cluster.provider, "delete_logs"):
        cluster.provider.delete_logs = True
    with err_console.status(f"stopping {name}"):
        cluster.stop_cluster()
        cluster.cleanup(deep=True)
    store.delete_cluster(name)
    console.print(f"cluster [bold]{name}[/bold] is down")


def _cluster_to_stop(store: StateStore, name: str, provider: str | None, image: str | None) -> DockerCluster:
    """The cluster ``name``, from its record, else (no record, or one that cannot be rebuilt) from ``provider``."""
    from ._spec import ClusterSpec
    from .cluster import DockerCluster

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
def providers(output: OutputFormat = typer.Option(OutputFormat.TABLE, "--output", "-o", help=(
        "table, or json: an array of objects with the keys name, path, package, ready, missing, install, "
        "host_network, options, error."))) -> None:
    """List the installed providers (plugins of the entry-point group dockerparallel.providers): where each
    comes from, whether what it needs is installed (else what to pip install), and its options on 'up'."""
    from ._cli_providers import provider_rows, providers_options_text, providers_table

    rows = provider_rows()
    if output is OutputFormat.JSON:
        print_json(rows)
    else:
        console.print(providers_table(rows))
        console.print(providers_options_text(rows), highlight=False, markup=False)
    for row in rows:
        if row.error:
            err_console.print(f"[yellow]warning:[/yellow] provider {escape(row.name)}: {escape(row.error)}",
                              highlight=False)


@app.command()
@_one_line_errors
def demo(
    workers: int = typer.Option(4, "--workers", "-n", help="Workers to start with."),
    tasks: int = typer.Option(64, help="Tasks of the computation."),
) -> None:
    """Start a local cluster, compute pi by Monte Carlo on it while scaling, and stop it."""
    from . import _demo

    check_count(workers, "workers", minimum=1, maximum=64)
    check_count(tasks, "tasks", minimum=1, maximum=100_000)
    _demo.run(console, err_console, workers=workers, tasks=tasks)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script: usage errors are one line too."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        app(args=args)  # prints the help, or answers a shell's completion request
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
        err_console.print(f"[red]error:[/red] {escape(' '.join(message.split()))}", highlight=False)
        raise SystemExit(getattr(exc, "exit_code", 2)) from None
    raise SystemExit(status if isinstance(status, int) else 0)
