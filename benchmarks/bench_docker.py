"""Time getting 16 Dask workers connected: DockerProvider vs `docker run` vs `docker-compose up --scale`.

Each variant starts its own Dask scheduler first (not timed) and connects a
``distributed.Client`` to it; the timer then covers starting 8 containers of
2 workers each and ``client.wait_for_workers(16)``. All containers use the
image ``dockerparallel-test:latest``, host networking, the same command and
the same CPU and memory limits, and listen on 127.0.0.1 only. Everything a
variant starts is removed (by label) before the next one begins.

Needs a Docker Engine, the test image (``bash scripts/build-test-image.sh
.venv/bin/python``) and Debian's ``docker-compose`` (``apt-get install -y
docker-compose``); a missing ``docker-compose`` skips that variant.

Run: ``.venv/bin/python benchmarks/bench_docker.py [--repeat N]``. It prints times and
ratios, no PASS/FAIL goal line: it exits 0 when every run completes (``_goals.py``).
With ``--charts DIR`` (default ``docs/assets/charts``; ``--no-charts``) it draws
the best times of each variant, when matplotlib imports (``benchmarks/_charts.py``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

from dockerparallel import DockerCluster, DockerHardware, ServerAddress
from dockerparallel.backends.dask import DaskWorkerContainer
from dockerparallel.providers.docker import LABEL_CLUSTER, DockerProvider, connect

import _charts  # benchmarks/ is on sys.path when a benchmark runs as a script
from _goals import exit_status

IMAGE = "dockerparallel-test:latest"
CONTAINERS, PER_CONTAINER = 8, 2
WORKERS = CONTAINERS * PER_CONTAINER
#: One worker: a quarter core and 512 MB, so a container of 2 gets --cpus 0.5 --memory 1024m.
HARDWARE = DockerHardware(cpu=256, memory=512)
#: The scheduler's container: one core and 2 GB in every variant.
SERVER = DockerHardware(cpu=1024, memory=2048)
DOCKER = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else "docker"
TIMEOUT = 300


def free_ports(count: int) -> list[int]:
    """``count`` different free TCP ports on 127.0.0.1."""
    from dockerparallel._spec import free_ports as pick

    return pick(count)


def new_container() -> DaskWorkerContainer:
    return DaskWorkerContainer(image=IMAGE, host="127.0.0.1", scheduler_port=(ports := free_ports(2))[0],
                               dashboard_port=ports[1], max_workers_per_container=PER_CONTAINER)


def worker_command(container: DaskWorkerContainer, unique_name: bool) -> list[str]:
    """The command of one worker container, as DockerProvider runs it (``--name`` dropped if not unique)."""
    address = ServerAddress(None, None, "127.0.0.1", container.scheduler_port)
    command = list(container.for_server(address).for_workers(PER_CONTAINER, HARDWARE).command)
    if not unique_name:
        at = command.index("--name")
        del command[at:at + 2]
    return command


def limits(hardware: DockerHardware, workers: int = 1) -> list[str]:
    """``docker run`` options giving ``workers`` times ``hardware``."""
    return ["--cpus", str(workers * hardware.cores), "--memory", f"{workers * hardware.memory}m"]


def docker_run(label: str, command: Sequence[str], extra: Sequence[str] = ()) -> None:
    subprocess.run([DOCKER, "run", "-d", "--network", "host", "--label", f"{LABEL_CLUSTER}={label}",
                    *extra, IMAGE, *command], check=True, stdout=subprocess.DEVNULL)


def remove_labelled(label: str) -> None:
    api = connect().api
    for box in api.containers(all=True, filters={"label": f"{LABEL_CLUSTER}={label}"}):
        api.remove_container(box["Id"], force=True)


def timed_workers(client: Any, launch: Callable[[], None]) -> tuple[float, float]:
    """Seconds until ``launch`` returns and until ``WORKERS`` workers are connected."""
    started = time.perf_counter()
    launch()
    launched = time.perf_counter() - started
    client.wait_for_workers(WORKERS, timeout=TIMEOUT)
    return launched, time.perf_counter() - started


def dask_client(address: str) -> Any:
    from distributed import Client

    return Client(address, timeout=60)


def with_scheduler(label: str, launch: Callable[[DaskWorkerContainer], None]) -> tuple[float, float]:
    """Start a scheduler with ``docker run`` (not timed), then time ``launch``; remove everything after."""
    container = new_container()
    try:
        docker_run(label, list(container.server_container().command), limits(SERVER))
        with dask_client(f"tcp://127.0.0.1:{container.scheduler_port}") as client:
            return timed_workers(client, lambda: launch(container))
    finally:
        remove_labelled(label)


def run_provider(label: str) -> tuple[float, float]:
    """DockerProvider: ``set_worker_number(16)`` on a started cluster (plain TCP, like the baselines)."""
    cluster = DockerCluster(DockerProvider(pull=False), new_container(), name=label, worker_hardware=HARDWARE,
                            server_hardware=SERVER, security=False, state=False)
    try:
        cluster.start_cluster(timeout=60)
        with cluster.get_client(timeout=60) as client:
            return timed_workers(client, lambda: cluster.set_worker_number(WORKERS))
    finally:
        cluster.stop_cluster()
        cluster.cleanup(deep=True)


def run_docker_loop(label: str) -> tuple[float, float]:
    """A thread pool running ``docker run -d`` once per container, all at once."""

    def launch(container: DaskWorkerContainer) -> None:
        with ThreadPoolExecutor(CONTAINERS) as pool:
            list(pool.map(lambda _: docker_run(label, worker_command(container, True), limits(HARDWARE, PER_CONTAINER)),
                          range(CONTAINERS)))

    return with_scheduler(label, launch)


COMPOSE = """version: "2.4"
services:
  worker:
    image: {image}
    network_mode: host
    command: {command}
    cpus: {cpus}
    mem_limit: {memory}m
    labels:
      {label_key}: {label}
"""


def run_compose(label: str) -> tuple[float, float]:
    """``docker-compose up -d --scale worker=8`` on a generated compose file."""
    compose = shutil.which("docker-compose")
    if compose is None:
        raise FileNotFoundError("docker-compose is not installed (apt-get install -y docker-compose)")
    with tempfile.TemporaryDirectory(prefix="bench-compose-") as folder:
        path = os.path.join(folder, "docker-compose.yml")
        base = [compose, "--project-name", label, "--file", path]

        def launch(container: DaskWorkerContainer) -> None:
            with open(path, "w") as file:
                file.write(COMPOSE.format(
                    image=IMAGE, command=worker_command(container, False), cpus=PER_CONTAINER * HARDWARE.cores,
                    memory=PER_CONTAINER * HARDWARE.memory, label_key=LABEL_CLUSTER, label=label))
            subprocess.run([*base, "up", "-d", "--scale", f"worker={CONTAINERS}"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        try:
            return with_scheduler(label, launch)
        finally:
            subprocess.run([*base, "down", "--timeout", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


VARIANTS: dict[str, Callable[[str], tuple[float, float]]] = {
    "DockerProvider": run_provider,
    "docker run loop": run_docker_loop,
    "docker-compose --scale": run_compose,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each variant (the best is kept)")
    _charts.add_option(parser)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="Mismatched versions")
    print(f"{WORKERS} Dask workers in {CONTAINERS} containers x {PER_CONTAINER}, image {IMAGE}, host network")
    best: dict[str, tuple[float, float]] = {}
    for name, run in VARIANTS.items():
        try:
            runs = [run(f"bench-{uuid.uuid4().hex[:8]}") for _ in range(args.repeat)]
        except FileNotFoundError as exc:
            print(f"{name:<24} skipped: {exc}")
            continue
        best[name] = min(runs, key=lambda r: r[1])
    print(f"{'variant (best of ' + str(args.repeat) + ')':<24} {'containers started':>19} {'16 workers connected':>21}")
    for name, (launched, connected) in best.items():
        print(f"{name:<24} {launched:>18.2f}s {connected:>20.2f}s")
    ours = best.get("DockerProvider")
    for name, (_, connected) in best.items():
        if ours and name != "DockerProvider":
            print(f"ratio DockerProvider / {name}: {ours[1] / connected:.2f} (below 1: DockerProvider is faster)")
    _charts.draw("docker-start", args.charts, _charts.docker_start_chart,
                 [(name, launched, connected) for name, (launched, connected) in best.items()], workers=WORKERS,
                 note=f"best of {args.repeat} runs each")
    return exit_status()


if __name__ == "__main__":
    raise SystemExit(main())
