"""DockerProvider: unit checks, then real Dask clusters on the local Docker Engine.

Tests marked ``docker`` need an engine and the image ``dockerparallel-test:latest``;
see ``docker_fixtures.py`` for how they skip (or fail under
``DOCKERPARALLEL_REQUIRE_DOCKER=1``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest

import dockerparallel
from dockerparallel import DockerCluster, ServerAddress
from dockerparallel.backends.dask import DaskWorkerContainer, container_token
from dockerparallel.providers.docker import (
    LABEL_WORKERS,
    DockerEngineUnavailable,
    DockerImageUnavailable,
    DockerProvider,
    server_address_from_inspect,
    worker_status,
)
from dockerparallel._spec import free_ports
from dockerparallel.testing import check_provider

try:  # tests/providers may or may not be a package; the fixtures are used by name
    from .docker_fixtures import *  # noqa: F403
except ImportError:
    from docker_fixtures import *  # type: ignore[no-redef]  # noqa: F403

#: Where the dockerparallel under test comes from (this checkout, or a copy on PYTHONPATH).
SRC = os.path.dirname(os.path.dirname(os.path.abspath(dockerparallel.__file__)))


def python(code: str, **popen: Any) -> subprocess.Popen[str]:
    """Start ``code`` in a fresh Python process that imports the dockerparallel under test; its output is piped."""
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def run_python(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh Python process; return its exit code and output."""
    process = python(code)
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        process.kill()
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def worker_counts(client: Any, name: str) -> list[int]:
    """Workers per running worker container of cluster ``name``, from the Docker API."""
    return sorted(int(c["Labels"][LABEL_WORKERS]) for c in labelled(client, name, "worker", all=False))


def worker_states(client: Any, name: str) -> list[str]:
    """The engine's state of each worker container of cluster ``name`` ("created", "running", ...), sorted."""
    return sorted(c["State"] for c in labelled(client, name, "worker"))


def containers_running_a_task(dask: Any, client: Any, name: str) -> list[str]:
    """Ids of the running worker containers of cluster ``name`` with a task executing on one of their workers."""
    executing = dask.run(lambda dask_worker: (dask_worker.name, len(dask_worker.state.executing)))
    tokens = {container_token(worker) for worker, tasks in executing.values() if tasks}
    return [box["Id"] for box in labelled(client, name, "worker", all=False)
            if any(token and token in box.get("Command", "") for token in tokens)]


# -- without an engine ------------------------------------------------------------------


def test_constructor_takes_keywords_only_and_checks_them() -> None:
    provider = DockerProvider(network_mode="host", base_url=None, host_ip="127.0.0.1")
    assert (provider.network_mode, provider.base_url, provider.host_ip) == ("host", None, "127.0.0.1")
    assert DockerProvider(network_mode="bridge").network_mode == "bridge"
    options = DockerProvider(network_mode="bridge", max_concurrent_calls=3).spec_options()
    assert DockerProvider.from_spec_options(options, None).spec_options() == options
    with pytest.raises(TypeError):
        DockerProvider("host")  # type: ignore[misc]
    with pytest.raises(ValueError, match="network_mode"):
        DockerProvider(network_mode="none")
    with pytest.raises(TypeError, match="host_ip"):
        DockerProvider(host_ip="")
    with pytest.raises(ValueError, match="max_concurrent_calls"):
        DockerProvider(max_concurrent_calls=0)


def test_package_and_provider_import_without_the_docker_sdk() -> None:
    result = run_python("""
        import sys
        sys.modules["docker"] = None  # as if the SDK were not installed
        import dockerparallel
        from dockerparallel.providers.docker import DockerProvider
        provider = DockerProvider()
        try:
            provider.client
        except ImportError as exc:
            print("ImportError:", exc)
    """)
    assert result.returncode == 0, result.stderr
    assert "pip install 'dockerparallel[docker]'" in result.stdout


def test_unreachable_engine_says_how_to_start_one(tmp_path: Any) -> None:
    provider = DockerProvider(base_url=f"unix://{tmp_path}/no-docker.sock")
    cluster = DockerCluster(provider, dask_container(8786, 8787))
    with pytest.raises(DockerEngineUnavailable) as caught:
        cluster.start_cluster()
    message = str(caught.value)
    assert "no-docker.sock" in message and "scripts/install-docker.sh" in message and "DOCKER_HOST=" in message


@pytest.mark.parametrize(("state", "status"), [
    ("created", "initializing"), ("restarting", "initializing"), ("paused", "initializing"),
    ("running", "running"), ("exited", "stopped"), ("dead", "stopped"), ("removing", "stopped"), (None, "stopped"),
])
def test_container_state_to_worker_status(state: str | None, status: str) -> None:
    assert worker_status(state) == status


def test_server_address_host_and_bridge() -> None:
    env = {"Config": {"Env": ["A=1", "DOCKERPARALLEL_SERVER_PORT=9000"]}}
    host = server_address_from_inspect({**env, "HostConfig": {"NetworkMode": "host"}}, "127.0.0.1")
    assert host == ServerAddress(None, None, "127.0.0.1", 9000)
    bridge = {
        **env, "HostConfig": {"NetworkMode": "bridge"},
        "NetworkSettings": {"Ports": {"9000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "49153"}]},
                            "Networks": {"bridge": {"IPAddress": "172.17.0.2"}}},
    }
    assert server_address_from_inspect(bridge, "127.0.0.1") == ServerAddress("127.0.0.1", 49153, "172.17.0.2", 9000)
    with pytest.raises(ValueError, match="not published"):
        server_address_from_inspect({**bridge, "NetworkSettings": {}}, "127.0.0.1")


# -- on the engine ----------------------------------------------------------------------------


@pytest.mark.docker
def test_missing_image_error_names_the_image(docker_client: Any, cluster_name: str) -> None:
    image = "dockerparallel-no-such-image:never"
    container = DaskWorkerContainer(image=image, host="127.0.0.1", scheduler_port=8786)
    cluster = DockerCluster(DockerProvider(pull=False), container, name=cluster_name)  # no registry traffic
    with pytest.raises(DockerImageUnavailable, match=image):
        cluster.start_cluster(timeout=30)
    assert labelled(docker_client, cluster_name) == []


@pytest.mark.docker
def test_six_workers_in_three_containers_compute(docker_client: Any, docker_cluster: DockerCluster) -> None:
    docker_cluster.set_worker_number(6)
    assert worker_counts(docker_client, docker_cluster.name) == [2, 2, 2]
    box = docker_client.api.inspect_container(labelled(docker_client, docker_cluster.name, "worker")[0]["Id"])
    assert box["HostConfig"]["NanoCpus"] == 2 * SMALL.cpu * 10**9 // 1024
    assert box["HostConfig"]["Memory"] == 2 * SMALL.memory * 2**20
    assert box["HostConfig"]["NetworkMode"] == "host"
    with dask_client(docker_cluster) as client:
        client.wait_for_workers(6, timeout=90)
        assert sum_of_squares(client, 200) == expected_sum_of_squares(200)


@pytest.mark.docker
def test_status_refresh_is_one_api_call(docker_cluster: DockerCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    docker_cluster.set_worker_number(4)
    provider: DockerProvider = docker_cluster.provider  # type: ignore[assignment]
    api = provider.client.api
    calls: list[str] = []
    for method in ("containers", "inspect_container"):
        original = getattr(api, method)
        monkeypatch.setattr(api, method, lambda *a, _m=method, _f=original, **k: (calls.append(_m), _f(*a, **k))[1])
    handles = provider.worker_ledger.handles()
    assert provider.get_docker_worker_status(docker_cluster, handles) == ["running", "running"]
    assert calls == ["containers"]
    assert docker_cluster.get_worker_numbers()[:2] == (0, 4)
    assert calls == ["containers", "containers"]


@pytest.mark.docker
def test_scale_6_10_3_0_counts_containers(docker_client: Any, docker_cluster: DockerCluster) -> None:
    # every container holds 2 workers: 10 -> 3 may remove at most 7, so 3 containers go and 4 workers stay
    for asked, containers in ((6, [2, 2, 2]), (10, [2] * 5), (3, [2, 2]), (0, [])):
        docker_cluster.set_worker_number(asked)
        assert worker_counts(docker_client, docker_cluster.name) == containers, asked
        numbers = docker_cluster.get_worker_numbers()
        assert numbers.initializing + numbers.running == sum(containers)
        assert len(labelled(docker_client, docker_cluster.name, "worker")) == len(containers)  # kills remove
    assert len(labelled(docker_client, docker_cluster.name, "server", all=False)) == 1


@pytest.mark.docker
def test_worker_container_killed_from_outside_is_replaced(
    docker_client: Any, docker_cluster: DockerCluster
) -> None:
    docker_cluster.set_worker_number(6)
    with dask_client(docker_cluster) as client:
        client.wait_for_workers(6, timeout=90)
        result = client.submit(sum, client.map(lambda x: (time.sleep(0.2), x * x)[1], range(120)))
        busy: list[str] = []

        def a_task_runs() -> bool:  # the kill lands mid-computation: on a container whose worker runs a task now
            busy[:] = containers_running_a_task(client, docker_client, docker_cluster.name)
            return bool(busy)

        wait_for(a_task_runs, 60, "a task to run in a worker container")
        victim = busy[0]
        assert not result.done()
        docker_client.api.kill(victim)
        wait_for(lambda: docker_cluster.update().running == 6 and victim not in
                 docker_cluster.provider.get_managed_worker_handles(), 60, "the killed container to be replaced")
        assert worker_counts(docker_client, docker_cluster.name) == [2, 2, 2]
        assert result.result(timeout=120) == expected_sum_of_squares(120)
        client.wait_for_workers(6, timeout=90)
        assert sum_of_squares(client, 50) == expected_sum_of_squares(50)


CHILD = """
    import threading

    import docker
    from dockerparallel import DockerCluster
    from dockerparallel.backends.dask import DaskWorkerContainer
    from dockerparallel.providers.docker import DockerProvider

    # The scale-up (4 containers, 2 at a time) stops at a known point, whatever the thread timing:
    # the first worker container starts, then its thread waits for ever; the other thread creates
    # its container and waits before starting it. Once the engine shows one container running and
    # one created, no engine call of this process is in flight, and the test kills it.
    scaling = threading.Event()
    first = threading.Lock()
    engine_start = docker.APIClient.start

    def start(self, container, *args, **kwargs):
        if not scaling.is_set():
            return engine_start(self, container, *args, **kwargs)
        if first.acquire(blocking=False):
            engine_start(self, container, *args, **kwargs)
        threading.Event().wait()

    docker.APIClient.start = start

    container = DaskWorkerContainer(host="127.0.0.1", scheduler_port={port}, dashboard_port={dashboard},
                                    image="dockerparallel-test:latest", max_workers_per_container=2)
    cluster = DockerCluster(DockerProvider(pull=False, max_concurrent_calls=2), container, name="{name}")
    cluster.start_cluster(timeout=60)
    print("scaling", flush=True)
    scaling.set()
    cluster.set_worker_number(8)
    print("scaled", flush=True)
"""

FRESH = """
    from dockerparallel import DockerCluster
    from dockerparallel.backends.dask import DaskWorkerContainer
    from dockerparallel.providers.docker import DockerProvider

    container = DaskWorkerContainer(host="127.0.0.1", scheduler_port={port}, dashboard_port={dashboard},
                                    image="dockerparallel-test:latest", max_workers_per_container=2)
    cluster = DockerCluster(DockerProvider(pull=False), container, name="{name}")
    print("exists", cluster.cluster_exists())
    cluster.reconnect()
    print("workers", sum(cluster.get_worker_numbers()[:2]))
    cluster.cleanup(deep=True)
    cluster.stop_cluster()
    print("exists", cluster.cluster_exists())
"""


@pytest.mark.docker
def test_sigkill_mid_scale_up_then_cleanup_from_a_fresh_process(docker_client: Any, cluster_name: str) -> None:
    port, dashboard = free_ports(2)
    fields = {"port": port, "dashboard": dashboard, "name": cluster_name}
    child = python(CHILD.format(**fields))
    try:
        wait_for(lambda: worker_states(docker_client, cluster_name) == ["created", "running"]
                 or child.poll() is not None, 90, "one worker container running and one created")
        child.send_signal(signal.SIGKILL)
        out, err = child.communicate(timeout=30)
    finally:
        child.kill()
    assert "scaling" in out and "scaled" not in out, err
    assert worker_states(docker_client, cluster_name) == ["created", "running"]
    assert sum(int(c["Labels"][LABEL_WORKERS]) for c in labelled(docker_client, cluster_name, "worker")) == 4
    fresh = run_python(FRESH.format(**fields))  # starts the created container and counts it
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.split("\n")[:3] == ["exists True", "workers 4", "exists False"], fresh.stdout
    assert labelled(docker_client, cluster_name) == []


@pytest.mark.docker
def test_conformance_docker(docker_client: Any, dask_worker_container: DaskWorkerContainer) -> None:
    report = check_provider(lambda: DockerProvider(pull=False), dask_worker_container, timeout=90)
    assert report.skipped == [] and report.passed_names == [
        "start cluster", "scale up to 5", "shared handles counted", "scale down to 3",
        "kill of unknown handles succeeds", "killed worker reports stopped", "update() heals",
        "reconnect from a fresh provider", "stop leaves nothing running"], str(report)


@pytest.mark.docker
def test_cli_up_status_scale_down_on_docker(docker_client: Any, cluster_name: str, tmp_path: Any) -> None:
    from tests.local_fixtures import run_cli

    state = tmp_path / "state.sqlite3"
    out = run_cli(state, "up", "--provider", "docker", "--image", "dockerparallel-test:latest", "--no-pull",
                  "-n", "4", "-k", "2", "--memory", "512", "--name", cluster_name).stdout
    assert f"cluster {cluster_name} is up with 4 worker(s)" in out and "tls://127.0.0.1:" in out
    try:
        assert worker_counts(docker_client, cluster_name) == [2, 2]
        assert "│ 4 " in run_cli(state, "status", cluster_name).stdout
        run_cli(state, "scale", cluster_name, "2")
        assert worker_counts(docker_client, cluster_name) == [2]
    finally:
        run_cli(state, "down", cluster_name)
    assert labelled(docker_client, cluster_name) == []
