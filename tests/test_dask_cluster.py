"""DockerCluster as a Dask cluster manager: a ``distributed.deploy.Cluster``, sync and async, in a notebook."""

from __future__ import annotations

import asyncio
import os
import time
import urllib.request
from pathlib import Path

import distributed
import pytest
from distributed import Client

from dockerparallel import DockerCluster
from dockerparallel.backends.dask import DaskWorkerContainer
from dockerparallel.providers.local import LocalProcessProvider
from dockerparallel.state import StateStore

from tests.local_fixtures import dask_container, live_children, local_cluster, store, wait_for  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]


def test_it_is_a_dask_cluster(local_cluster: DockerCluster) -> None:
    assert isinstance(local_cluster, distributed.deploy.Cluster)
    local_cluster.set_worker_number(2)
    local_cluster.start_cluster(timeout=60)
    local_cluster.wait_for_workers(2, timeout="60s")
    assert len(local_cluster.scheduler_info["workers"]) == 2  # followed from the scheduler
    html = local_cluster._repr_html_()
    assert "expected workers: 2" in html and "Workers" in html
    with Client(local_cluster) as client:
        assert client.submit(lambda: 6 * 7).result(timeout=60) == 42
    local_cluster.close()
    assert local_cluster.status == distributed.core.Status.closed
    assert live_children() == []


def test_wait_for_workers_counts_what_the_scheduler_sees(local_cluster: DockerCluster) -> None:
    local_cluster.start_cluster(timeout=60)
    local_cluster.set_worker_number(3)
    local_cluster.wait_for_workers(3, timeout=60)
    with Client(local_cluster) as client:
        assert len(client.scheduler_info(n_workers=-1)["workers"]) >= 3
    with pytest.raises(TimeoutError):
        local_cluster.wait_for_workers(5, timeout="1s")
    local_cluster.stop_cluster()


def test_the_dashboard_serves_its_status_plot(local_cluster: DockerCluster) -> None:
    local_cluster.start_cluster(timeout=60)
    link = local_cluster.dashboard_link
    assert link.startswith("http://127.0.0.1:")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    pages: list[str] = []

    def served() -> bool:  # the scheduler starts its dashboard a moment after it listens (defer_dashboard)
        try:
            with opener.open(link, timeout=30) as page:
                pages.append(page.read().decode())
        except OSError:  # 404 until then
            return False
        return True

    wait_for(served, timeout=60, what="the dashboard", poll=0.1)
    html = pages[-1]
    assert "Dask needs bokeh" not in html
    assert "<title>Dask Diagnostic UI</title>" in html  # the status page with its Bokeh plots
    assert "Bokeh" in html and "embed" in html
    local_cluster.stop_cluster()


def test_async_with_cluster_and_client(store: StateStore, dask_container: DaskWorkerContainer) -> None:
    async def main() -> int:
        async with DockerCluster(LocalProcessProvider(store), dask_container, worker_number=2, state=store,
                                 asynchronous=True) as cluster:
            async with Client(cluster, asynchronous=True) as client:
                await client.wait_for_workers(2, timeout=60)
                total = await client.submit(sum, range(10))
            assert cluster.status == distributed.core.Status.running
        assert cluster.status == distributed.core.Status.closed
        return int(total)

    assert asyncio.run(main()) == 45
    assert live_children() == []


def test_scale_by_memory_or_cores(local_cluster: DockerCluster) -> None:
    local_cluster.scale(memory="5 GiB")  # 2 GB per worker by default: 3 workers
    assert local_cluster.expected_workers == 3
    local_cluster.scale(cores=4)
    assert local_cluster.expected_workers == 4


@pytest.mark.slow
def test_the_notebook_runs_on_a_real_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbclient
    import nbformat

    notebook = nbformat.read(ROOT / "examples" / "dask_cluster.ipynb", as_version=4)
    monkeypatch.setenv("DOCKERPARALLEL_STATE", str(tmp_path / "state.sqlite3"))
    client = nbclient.NotebookClient(notebook, timeout=180, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env={**os.environ})
    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    cluster_html = [out["data"]["text/html"] for out in outputs
                    if out.output_type in ("display_data", "execute_result") and "text/html" in out.get("data", {})
                    and "DockerCluster" in out["data"]["text/html"]]
    assert cluster_html and "expected workers: 2" in cluster_html[-1]
    assert live_children() == []


def test_idle_timeout_stops_the_whole_cluster(store: StateStore) -> None:
    from tests.local_fixtures import wait_for

    container = DaskWorkerContainer(host="127.0.0.1", scheduler_port=(ports := _ports())[0], dashboard_port=ports[1],
                                    death_timeout=3, max_workers_per_container=1)
    cluster = DockerCluster(LocalProcessProvider(store), container, worker_number=2, state=store,
                            idle_timeout="4s")
    assert "--idle-timeout" in cluster.server_container.command
    started = time.monotonic()
    cluster.start_cluster(timeout=60)
    wait_for(lambda: live_children() == [], 60, "the idle cluster to stop by itself")
    assert time.monotonic() - started >= 3.5, "the cluster stopped before it had been idle for 4 s"
    assert cluster.server_status() == "stopped"
    cluster.stop_cluster()


def test_idle_timeout_defaults_per_provider(dask_container: DaskWorkerContainer) -> None:
    from dockerparallel.testing import FakeCloudProvider

    local = DockerCluster(LocalProcessProvider(), dask_container, state=False)
    assert "--idle-timeout" not in local.server_container.command  # off on local processes
    other = DockerCluster(FakeCloudProvider(), dask_container, state=False, security=False)
    assert "--idle-timeout" not in other.server_container.command
    import dask

    with dask.config.set({"dockerparallel.idle-timeout.other": "30 minutes"}):
        configured = DockerCluster(FakeCloudProvider(), dask_container, state=False, security=False)
    assert configured.worker_container.idle_timeout == 1800  # type: ignore[attr-defined]


def _port() -> int:
    return _ports()[0]


def _ports() -> list[int]:
    from dockerparallel._spec import free_ports

    return free_ports(2)


def test_starting_twice_without_a_reachable_scheduler_is_fine(dask_container: DaskWorkerContainer) -> None:
    from dockerparallel.testing import FakeCloudProvider

    cluster = DockerCluster(FakeCloudProvider(), dask_container.replace(scheduler_port=_port()), state=False,
                            security=False)
    cluster.start_cluster(timeout=5)  # nothing listens at the fake's address: the object goes on without
    cluster.start_cluster(timeout=5)
    assert cluster.scheduler_comm is None
    cluster.stop_cluster()
