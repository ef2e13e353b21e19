"""``stop_on_exit=True`` (the R original's ``stopClusterOnExit``) stops the cluster when the process exits."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap

from dockerparallel import DockerCluster
from dockerparallel.providers.local import labelled_processes
from dockerparallel.state import StateStore
from dockerparallel.testing import FakeCloud, FakeCloudProvider
from tests.local_fixtures import wait_for

from ._helpers import make_cluster

SCRIPT = """
import sys
from dockerparallel import DockerCluster
from dockerparallel.backends.dask import DaskWorkerContainer
from dockerparallel.providers.local import LocalProcessProvider
from dockerparallel._spec import free_port, free_ports

container = DaskWorkerContainer(host="127.0.0.1", scheduler_port=(ports := free_ports(2))[0], dashboard_port=ports[1])
cluster = DockerCluster(LocalProcessProvider(), container, name=sys.argv[1], worker_number=2,
                        stop_on_exit=sys.argv[2] == "yes")
cluster.start_cluster(timeout=60)
print("started", flush=True)
"""  # the script ends without stopping the cluster


def _run(name: str, stop: str) -> None:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT), name, stop], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "started" in done.stdout, done.stderr[-2000:]


def test_a_process_that_exits_without_stopping_stops_its_cluster() -> None:
    store = StateStore()
    _run("exits", "yes")
    assert labelled_processes("exits", store) == {}
    assert store.load_cluster("exits") is None


def test_without_it_the_cluster_outlives_the_process() -> None:
    store = StateStore()
    _run("outlives", "no")
    try:
        assert len(labelled_processes("outlives", store)) == 3  # the server and two one-worker processes
    finally:
        DockerCluster.reconnect("outlives").stop_cluster()
    wait_for(lambda: labelled_processes("outlives", store) == {}, 30, "the cluster to stop")


def test_a_collected_object_stops_its_cluster_and_reconnect_turns_it_off() -> None:
    cloud = FakeCloud()
    cluster = make_cluster(FakeCloudProvider(cloud), name="collected", worker_number=3, stop_on_exit=True)
    cluster.start_cluster(timeout=5)
    assert cluster.stop_on_exit
    cluster.reconnect()
    assert not cluster.stop_on_exit
    cluster.stop_on_exit = True
    del cluster
    gc.collect()
    assert cloud.live() == []


