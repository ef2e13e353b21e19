"""A real crash: the process scaling a local cluster to 20 workers is SIGKILLed mid-launch.

A child process starts a cluster on local processes (one worker per process, so
the scale-up is 20 process starts) and is killed once the state store shows a
few of the 20 workers. A new process then calls ``DockerCluster.reconnect(name)``
and ``stop_cluster()``; afterwards no process carries the cluster's label, no
Dask process names the scheduler's port and the store no longer holds the cluster.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from dockerparallel._spec import free_ports
from dockerparallel.backends.dask import DaskWorkerContainer
from dockerparallel.container import DockerContainer, DockerHardware
from dockerparallel.providers.local import ENV_CLUSTER
from dockerparallel.state import StateStore
from tests.local_fixtures import processes_mentioning, wait_for

ROOT = Path(__file__).resolve().parents[1]
WORKERS = 20


@dataclass(frozen=True, repr=False)
class SlowStartContainer(DaskWorkerContainer):
    """A Dask container whose every worker start takes ``start_delay`` seconds longer, as on a slow cloud.

    It gives the test time to kill the launching process between the 3rd and the 20th start.
    """

    start_delay: float = 0.15

    def for_workers(self, workers: int, hardware: DockerHardware | None = None) -> DockerContainer:
        time.sleep(self.start_delay)
        return super().for_workers(workers, hardware)


LAUNCHER = textwrap.dedent(f"""
    import sys
    from dockerparallel import DockerCluster
    from dockerparallel.providers.local import LocalProcessProvider
    from dockerparallel.state import StateStore
    from tests.test_crash import SlowStartContainer

    path, name, port, dashboard = sys.argv[1:5]
    store = StateStore(path)
    container = SlowStartContainer(host="127.0.0.1", scheduler_port=int(port), dashboard_port=int(dashboard),
                                   max_workers_per_container=1)
    cluster = DockerCluster(LocalProcessProvider(store, grace_period=3.0), container, name=name, state=store)
    cluster.start_cluster(timeout=60)
    cluster.set_worker_number({WORKERS})
    print("the launch finished before the kill", flush=True)
""")

RECOVER = textwrap.dedent("""
    import sys
    from dockerparallel import DockerCluster
    from dockerparallel.state import StateStore

    cluster = DockerCluster.reconnect(sys.argv[2], state=StateStore(sys.argv[1]))
    print(repr(cluster.last_reconnect))
    print(cluster.last_reconnect)
    cluster.stop_cluster()
""")


def processes_labelled(cluster: str) -> list[psutil.Process]:
    """Every live process whose environment carries the label of ``cluster`` (group leaders or not)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and proc.environ().get(ENV_CLUSTER) == cluster:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def run_python(script: str, *args: str, **options: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", script, *args], cwd=ROOT, text=True,  # type: ignore[call-overload]
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **options)


@pytest.fixture
def crash_name() -> Iterator[str]:
    """A fresh cluster name; whatever still carries its label at the end is killed."""
    name = f"crash-{uuid.uuid4().hex[:8]}"
    yield name
    for proc in processes_labelled(name):
        try:
            proc.kill()
        except psutil.Error:
            pass


def test_a_crash_during_a_scale_up_leaves_nothing_after_reconnect_and_stop(tmp_path: Path, crash_name: str) -> None:
    path, (port, dashboard) = tmp_path / "state.sqlite3", free_ports(2)
    store = StateStore(path)
    launcher = run_python(LAUNCHER, str(path), crash_name, str(port), str(dashboard))

    def some_workers_recorded() -> bool:
        assert launcher.poll() is None, f"the launcher exited: {launcher.communicate()}"
        return len(store.resources(crash_name, "worker")) >= 3

    wait_for(some_workers_recorded, timeout=60, poll=0.02)
    launcher.send_signal(signal.SIGKILL)
    out, _ = launcher.communicate(timeout=30)
    assert launcher.returncode == -signal.SIGKILL and "finished" not in out
    recorded = len(store.resources(crash_name, "worker"))
    alive = len([p for p in processes_labelled(crash_name) if p.environ().get("DOCKERPARALLEL_ROLE") == "worker"
                 and os.getpgid(p.pid) == p.pid])
    assert 3 <= recorded <= alive < WORKERS, (recorded, alive)  # orphans of an unfinished launch
    assert store.resources(crash_name, "intent"), "the launch intent was not recorded"
    # The kill may also land between a process start and its record; forget the newest record
    # to be sure that case is met: reconnect must find that worker by its label alone.
    store.delete_resources(crash_name, [store.resources(crash_name, "worker")[-1].handle])

    recover = run_python(RECOVER, str(path), crash_name)
    out, err = recover.communicate(timeout=120)
    assert recover.returncode == 0, err
    assert "interrupted_launch=True" in out and "a launch had been interrupted" in out, out
    assert f"recorded={recorded - 1}, found={alive - recorded + 1}," in out, out
    assert "server='running'" in out, out

    assert processes_labelled(crash_name) == []
    wait_for(lambda: not processes_mentioning(f"127.0.0.1:{port}") and not processes_mentioning(f"--port {port}"),
             timeout=15)
    assert store.load_cluster(crash_name) is None and store.resources(crash_name) == []
