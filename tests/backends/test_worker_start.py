"""How a Dask cluster starts: the nannies' start method and wait for the scheduler, and the dashboards."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dockerparallel import DockerCluster, DockerContainer, ServerAddress
from dockerparallel._records import container_from_dict, container_to_dict
from dockerparallel.backends.dask import (
    DASHBOARD_PRELOAD, ENV_START_METHOD, SCHEDULER_WAIT_PRELOAD, DaskWorkerContainer, fork_environment,
)
from dockerparallel.providers.local import _resolve
from tests.local_fixtures import (  # noqa: F401
    dask_container, free_port, free_ports, live_children, local_cluster, store, wait_for,
)

ADDRESS = ServerAddress(None, None, "127.0.0.1", 9999)
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork is the default on Linux only")


def _workers(container: DaskWorkerContainer, workers: int = 1) -> DaskWorkerContainer:
    return container.for_server(ADDRESS).for_workers(workers)  # type: ignore[attr-defined, no-any-return]


def test_worker_dashboard_is_off_by_default_and_can_be_turned_on() -> None:
    assert "--no-dashboard" in _workers(DaskWorkerContainer(max_workers_per_container=2)).command
    on = _workers(DaskWorkerContainer(max_workers_per_container=2, worker_dashboard=True))
    assert "--no-dashboard" not in on.command and "--dashboard" not in on.command  # dask worker's own default


def test_the_scheduler_starts_its_dashboard_once_it_listens_by_default() -> None:
    server = list(DaskWorkerContainer(dashboard_port=4321).server_container().command)
    assert ":4321" in server and "--no-dashboard" in server  # Dask's own start is replaced by the preload's
    assert server[server.index("--preload") + 1] == DASHBOARD_PRELOAD
    eager = DaskWorkerContainer(dashboard_port=4321, defer_dashboard=False).server_container()
    assert ":4321" in eager.command and "--no-dashboard" not in eager.command and "--preload" not in eager.command
    assert ENV_START_METHOD not in eager.environment


def test_a_configured_scheduler_preload_is_not_displaced() -> None:
    import dask

    with dask.config.set({"distributed.scheduler.preload": ["my_preload"]}):
        server = DaskWorkerContainer().server_container()
    assert "--preload" not in server.command and "--no-dashboard" not in server.command


def test_without_bokeh_the_deferred_dashboard_says_to_install_it() -> None:
    from distributed.preloading import _import_module

    module = _import_module(DASHBOARD_PRELOAD)
    added: list[Any] = []

    def no_bokeh(name: str) -> Any:
        raise ImportError(name)

    module.importlib = SimpleNamespace(import_module=no_bokeh)
    application = SimpleNamespace(add_handlers=lambda host, routes: added.extend(routes))
    scheduler = SimpleNamespace(http_application=application)
    asyncio.run(module._start_dashboard(scheduler))
    assert "MissingBokeh" in [route[1].__name__ for route in added]


def test_the_deferred_dashboard_answers_at_the_dashboard_link(local_cluster: DockerCluster) -> None:
    local_cluster.start_cluster(timeout=60)
    pages: list[bytes] = []

    def answers() -> bool:
        try:
            with urllib.request.urlopen(local_cluster.dashboard_link, timeout=5) as response:
                pages.append(response.read())
        except OSError:  # refused, or 404 until the dashboard is connected
            return False
        return True

    wait_for(answers, timeout=60, poll=0.1)
    assert b"bokeh" in pages[-1].lower()
    local_cluster.stop_cluster()


def test_default_start_method_is_fork_on_linux_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    assert _workers(DaskWorkerContainer()).environment[ENV_START_METHOD] == "fork"
    for platform in ("darwin", "win32"):
        monkeypatch.setattr(sys, "platform", platform)
        container = DaskWorkerContainer()
        assert container.worker_start_method() is None
        assert ENV_START_METHOD not in _workers(container).environment  # Dask's default: spawn


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_an_explicit_start_method_is_passed_on(method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert _workers(DaskWorkerContainer(start_method=method)).environment[ENV_START_METHOD] == method


def test_the_containers_own_environment_wins() -> None:
    container = DaskWorkerContainer(start_method="fork").with_environment(**{ENV_START_METHOD: "spawn"})
    assert _workers(container).environment[ENV_START_METHOD] == "spawn"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs, error",
    [({"start_method": "clone"}, ValueError), ({"start_method": 1}, ValueError),
     ({"worker_dashboard": "no"}, TypeError), ({"wait_for_scheduler": 1}, TypeError),
     ({"defer_dashboard": "yes"}, TypeError)],
)
def test_bad_start_options(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        DaskWorkerContainer(**kwargs)  # type: ignore[arg-type]


def test_the_options_survive_the_cluster_record() -> None:
    container = DaskWorkerContainer(start_method="spawn", worker_dashboard=True, wait_for_scheduler=False,
                                    defer_dashboard=True)
    assert container_from_dict(container_to_dict(container)) == container


@linux_only
def test_forked_workers_of_different_containers_hash_alike(local_cluster: DockerCluster) -> None:
    local_cluster.set_worker_number(4)  # 2 containers of 2: two nannies, each forking its workers
    local_cluster.start_cluster(timeout=60)
    with local_cluster.get_client() as client:
        client.wait_for_workers(4, timeout=60)
        methods = client.run(lambda: __import__("dask").config.get("distributed.worker.multiprocessing-method"))
        assert set(methods.values()) == {"fork"}
        hashes = client.run(lambda: hash("dockerparallel"))
        assert len(hashes) == 4 and len(set(hashes.values())) == 1, hashes
    local_cluster.stop_cluster()
    assert live_children() == []


@linux_only
def test_restart_starts_forked_workers_again(local_cluster: DockerCluster) -> None:
    local_cluster.set_worker_number(2)
    local_cluster.start_cluster(timeout=60)
    with local_cluster.get_client() as client:
        client.wait_for_workers(2, timeout=60)
        before = set(client.run(lambda: __import__("os").getpid()).values())
        client.restart(timeout=60)  # the nanny forks a new worker process
        client.wait_for_workers(2, timeout=60)
        after = set(client.run(lambda: __import__("os").getpid()).values())
        assert len(after) == 2 and not before & after
        assert client.submit(lambda: 6 * 7).result(timeout=30) == 42
    local_cluster.stop_cluster()
    assert live_children() == []


def test_forked_workers_get_what_the_nanny_gives_spawned_ones() -> None:
    forked = _workers(DaskWorkerContainer(start_method="fork")).environment
    assert forked["PYTHONHASHSEED"] == "6640" and forked["MALLOC_TRIM_THRESHOLD_"] == "65536"
    assert forked["OMP_NUM_THREADS"] == "1"
    spawned = _workers(DaskWorkerContainer(start_method="spawn")).environment
    assert "PYTHONHASHSEED" not in spawned and "OMP_NUM_THREADS" not in spawned  # the nanny sets them itself


def test_the_dask_configuration_of_pre_spawn_variables_is_followed() -> None:
    import dask

    with dask.config.set({"distributed.nanny.pre-spawn-environ": {"OMP_NUM_THREADS": 2, "PYTHONHASHSEED": "7"}}):
        env = fork_environment()
    assert env["OMP_NUM_THREADS"] == "2" and env["PYTHONHASHSEED"] == "7"
    assert env["MALLOC_TRIM_THRESHOLD_"] == "65536"


def test_nannies_wait_for_the_scheduler_by_default() -> None:
    command = list(_workers(DaskWorkerContainer()).command)
    assert command[command.index("--preload-nanny") + 1] == SCHEDULER_WAIT_PRELOAD
    assert "--preload-nanny" not in _workers(DaskWorkerContainer(wait_for_scheduler=False)).command


def test_over_tls_the_preloads_are_left_out_unless_asked_for() -> None:
    tls = DaskWorkerContainer(protocol="tls")
    assert not tls.uses_preloads() and DaskWorkerContainer().uses_preloads()
    assert "--preload-nanny" not in _workers(tls).command  # the certificates fill the environment
    assert "--preload" not in tls.server_container().command
    assert "--no-dashboard" not in tls.server_container().command  # Dask starts its dashboard itself
    asked = DaskWorkerContainer(protocol="tls", wait_for_scheduler=True, defer_dashboard=True)
    assert "--preload-nanny" in _workers(asked).command and "--preload" in asked.server_container().command


def _preload_setup() -> Callable[[Any], Awaitable[None]]:
    from distributed.preloading import _import_module

    return _import_module(SCHEDULER_WAIT_PRELOAD).dask_setup  # type: ignore[no-any-return]


def _nanny(address: str) -> Any:
    return SimpleNamespace(scheduler=SimpleNamespace(addr=address), connection_args={})


def test_the_preload_returns_once_the_scheduler_listens() -> None:
    port = free_port()

    async def late_server() -> float:
        async def listen_later() -> asyncio.AbstractServer:
            await asyncio.sleep(0.5)
            return await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)

        listening = asyncio.ensure_future(listen_later())
        started = time.monotonic()
        await _preload_setup()(_nanny(f"tcp://127.0.0.1:{port}"))
        waited = time.monotonic() - started
        (await listening).close()
        return waited

    assert 0.5 <= asyncio.run(late_server()) < 1.5


def test_the_preload_gives_up_after_the_connect_timeout_and_on_other_protocols() -> None:
    import dask

    setup = _preload_setup()
    with dask.config.set({"distributed.comm.timeouts.connect": "0.3s"}):
        started = time.monotonic()
        asyncio.run(setup(_nanny(f"tcp://127.0.0.1:{free_port()}")))  # nothing listens there
        assert 0.3 <= time.monotonic() - started < 1.5
    started = time.monotonic()
    asyncio.run(setup(_nanny("inproc://somewhere/1/2")))
    assert time.monotonic() - started < 0.1


def _spawn(container: DockerContainer, log: Path) -> subprocess.Popen[bytes]:
    """Run ``container`` as a local process group, as the local provider does."""
    with open(log, "ab") as out:
        return subprocess.Popen(_resolve(list(container.command)), env={**os.environ, **container.environment},
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def test_workers_started_long_before_the_scheduler_connect_as_soon_as_it_listens(tmp_path: Path) -> None:
    from distributed import Client

    container = DaskWorkerContainer(host="127.0.0.1", scheduler_port=(ports := free_ports(2))[0],
                                    dashboard_port=ports[1], max_workers_per_container=2)
    workers = container.for_server(ServerAddress(None, None, "127.0.0.1", ports[0]))
    processes = [_spawn(workers.for_workers(2), tmp_path / f"worker-{i}.log") for i in range(2)]
    try:
        time.sleep(5.0)  # the nannies have been trying for seconds: Dask's backoff is past a second by now
        processes.append(_spawn(container.server_container(), tmp_path / "scheduler.log"))
        wait_for(lambda: _listens(ports[0]), timeout=60, poll=0.005)
        listening = time.monotonic()
        with Client(f"tcp://127.0.0.1:{ports[0]}", timeout=30) as client:
            client.wait_for_workers(4, timeout=60)
        assert time.monotonic() - listening < 1.5, "workers waited in the connect backoff"
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _listens(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True
