"""LocalProcessProvider.get_docker_logs: what real Dask processes printed, the server first."""

from __future__ import annotations

import pytest

from dockerparallel import DockerCluster
from dockerparallel.backends.dask import DaskWorkerContainer
from dockerparallel.providers.local import LocalProcessProvider
from dockerparallel.state import StateStore
from tests.local_fixtures import dask_container, live_children, local_cluster, store, wait_for  # noqa: F401


def _container() -> DaskWorkerContainer:
    return DaskWorkerContainer(host="127.0.0.1")


def _worker_keys(logs: dict[str, str]) -> list[str]:
    return [key for key in logs if key.startswith("worker ")]


def test_logs_of_server_and_workers_outlive_a_killed_worker(local_cluster: DockerCluster, store: StateStore) -> None:
    provider = local_cluster.provider
    assert isinstance(provider, LocalProcessProvider)
    try:
        local_cluster.set_worker_number(1)
        local_cluster.start_cluster(timeout=60)
        (handle,) = set(provider.get_managed_worker_handles())
        wait_for(lambda: "Start worker" in provider.get_docker_logs(local_cluster).get(f"worker {handle}", ""),
                 60, "the worker's startup line in its log")
        logs = provider.get_docker_logs(local_cluster)
        assert list(logs)[0] == "server" and "Scheduler at" in logs["server"]
        assert _worker_keys(logs) == [f"worker {handle}"]

        local_cluster.scale(0)  # the provider kills the worker and forgets its record ...
        wait_for(lambda: local_cluster.get_worker_numbers() == (0, 0, 0), 60, "the worker to go")
        assert store.resources(local_cluster.name, "worker") == []
        after = provider.get_docker_logs(local_cluster)  # ... and its log is still there, by its handle
        assert list(after)[0] == "server" and _worker_keys(after) == [f"worker {handle}"]
        assert "Start worker" in after[f"worker {handle}"]
    finally:
        local_cluster.stop_cluster()
    assert live_children() == []


def test_deep_cleanup_keeps_the_logs_unless_asked(local_cluster: DockerCluster, store: StateStore) -> None:
    provider = local_cluster.provider
    assert isinstance(provider, LocalProcessProvider)
    try:
        local_cluster.start_cluster(timeout=60)
        wait_for(lambda: "Scheduler at" in provider.get_docker_logs(local_cluster).get("server", ""), 60,
                 "the scheduler's startup line")
    finally:
        local_cluster.stop_cluster()
    local_cluster.cleanup(deep=True)
    kept = provider.get_docker_logs(local_cluster)
    assert list(kept) == ["server"] and "Scheduler at" in kept["server"]  # no record left: read from the files
    assert provider.spec_options()["delete_logs"] is False
    provider.delete_logs = True
    local_cluster.cleanup(deep=True)
    assert provider.get_docker_logs(local_cluster) == {}
    assert not (store.log_dir / local_cluster.name).exists()


def test_log_files_without_a_record_are_named_by_handle_or_file_name(store: StateStore) -> None:
    provider = LocalProcessProvider(store)
    folder = store.log_dir / "files"
    folder.mkdir(parents=True)
    texts = {"server-100-local-11-7.log": "old server\n", "server-300-local-33-9.log": "new server\n",
             "worker-200.log": "older form\n", "worker-400-local-44-2.log": "a worker\n", "notes.txt": "no log\n",
             "other-500.log": "not ours\n"}
    for name, text in texts.items():
        (folder / name).write_text(text)
    cluster = DockerCluster(provider, _container(), name="files", state=store)
    assert provider.get_docker_logs(cluster) == {
        "server": "new server\n", "server local-11-7": "old server\n",
        "worker worker-200.log": "older form\n", "worker local-44-2": "a worker\n"}


def test_delete_logs_is_checked_and_rebuilt(store: StateStore) -> None:
    with pytest.raises(TypeError, match="delete_logs"):
        LocalProcessProvider(store, delete_logs="yes")  # type: ignore[arg-type]
    provider = LocalProcessProvider(store, grace_period=2.0, delete_logs=True)
    again = LocalProcessProvider.from_spec_options(provider.spec_options(), store)
    assert again.delete_logs is True and again.spec_options() == provider.spec_options()


def test_no_log_directory_means_no_logs(store: StateStore) -> None:
    provider = LocalProcessProvider(store)
    cluster = DockerCluster(provider, _container(), name="never-started", state=store)
    assert provider.get_docker_logs(cluster) == {}
