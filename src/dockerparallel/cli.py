"""The ``dockerparallel`` command."""

from __future__ import annotations

import typer
from rich.console import Console

from .container import DockerContainer
from .testing import FakeCloud, FakeCloudProvider, check_provider

app = typer.Typer(help="Run Dask clusters on container services without Kubernetes.", no_args_is_help=True)
console = Console()


@app.callback()
def _root() -> None:
    """Run Dask clusters on container services without Kubernetes."""


@app.command()
def demo() -> None:
    """Run a provider through the conformance kit and print the result."""
    cloud = FakeCloud()
    container = DockerContainer("demo", command=["worker"], max_workers_per_container=4)
    report = check_provider(lambda: FakeCloudProvider(cloud), container, server_container=container)
    console.print(str(report))


def main() -> None:
    """Entry point of the console script."""
    app()
