"""Adaptive scaling: Dask's ``Adaptive`` whose scale-down retires whole containers through the lifecycle."""

from __future__ import annotations

import asyncio
import logging
import math
import subprocess
import sys
import threading
import time
from collections import Counter
from types import SimpleNamespace
from typing import Any, Callable, Iterator

import dask.config
import distributed
import pytest
from distributed.core import Status
from distributed.protocol import pickle

from dockerparallel import DockerCluster
from dockerparallel.backends.dask import Adaptive, adaptive_options, container_key, container_token
from tests.local_fixtures import dask_container, local_cluster, store, wait_for  # noqa: F401

GiB = 2**30


class FakeScheduler:
    """The scheduler rpc of a cluster: answers and records ``adaptive_target``, ``workers_to_close``, ..."""

    def __init__(self, target: int = 1, to_close: list[str] | None = None) -> None:
        self.target, self.to_close = target, list(to_close or [])
        self.identity_info: dict[str, Any] = {"n_workers": 0, "total_memory": 0}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def adaptive_target(self, **kwargs: Any) -> int:
        self.calls.append(("adaptive_target", kwargs))
        return self.target

    async def workers_to_close(self, **kwargs: Any) -> list[str]:
        self.calls.append(("workers_to_close", kwargs))
        return list(self.to_close)

    async def retire_workers(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("retire_workers", kwargs))
        return {}

    async def identity(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("identity", kwargs))
        return self.identity_info

    def called(self, op: str) -> list[dict[str, Any]]:
        return [kwargs for name, kwargs in self.calls if name == op]


class FakeLifecycle:
    """``retire`` as the real lifecycle does it: lower the expected number, then run the action."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        self.retired: list[tuple[int, float, str]] = []

    def retire(self, expected: int, action: Callable[[], None], timeout: float = 30.0) -> None:
        self.cluster.expected = expected
        action()
        self.retired.append((expected, timeout, threading.current_thread().name))


class FakeLoop:
    """An event loop that only records the callbacks it is given."""

    def __init__(self) -> None:
        self.callbacks: list[Callable[[], Any]] = []

    def add_callback(self, callback: Callable[[], Any], *args: Any) -> None:
        self.callbacks.append(callback)


class FakeCluster:
    """What :class:`Adaptive` uses of a cluster (``AdaptiveCluster``)."""

    def __init__(self, expected: int = 1, scheduler: FakeScheduler | None = None, loop: Any = None) -> None:
        self.loop = loop if loop is not None else FakeLoop()
        self.status = Status.running
        self.scheduler_comm = scheduler or FakeScheduler()
        self.expected = expected
        self.lifecycle = FakeLifecycle(self)
        self.numbers: list[tuple[int, str]] = []

    @property
    def expected_workers(self) -> int:
        return self.expected

    def set_worker_number(self, worker_number: int) -> None:
        self.numbers.append((worker_number, threading.current_thread().name))
        self.expected = worker_number


@pytest.fixture
def adaptives() -> Iterator[Callable[..., Adaptive]]:
    """Build adaptives on fake clusters; stop them all at the end."""
    made: list[Adaptive] = []

    def make(cluster: Any, **kwargs: Any) -> Adaptive:
        made.append(Adaptive(cluster, **kwargs))
        return made[-1]

    yield make
    for adaptive in made:
        adaptive.stop(timeout=5)


def check(adaptive: Adaptive, rounds: int = 1) -> None:
    """Run ``rounds`` adaptive checks in an event loop of this thread."""

    async def run() -> None:
        for _ in range(rounds):
            await adaptive.adapt()

    asyncio.run(run())


# -- options -------------------------------------------------------------------------------------------


def test_time_strings_and_sizes(adaptives: Callable[..., Adaptive]) -> None:
    adaptive = adaptives(FakeCluster(), minimum=1, maximum=4, interval="500ms", wait_count=2,
                         target_duration="5s", minimum_memory="1 GiB")
    assert (adaptive.minimum, adaptive.maximum, adaptive.wait_count) == (1, 4, 2)
    assert adaptive.interval == 0.5 and adaptive.target_duration == 5.0 and adaptive.minimum_memory == GiB
    assert adaptive.periodic_callback is not None and adaptive.periodic_callback.callback_time == 500
    assert isinstance(adaptive, distributed.deploy.Adaptive)


def test_dask_defaults() -> None:
    options = adaptive_options()
    assert (options.interval, options.minimum, options.maximum, options.wait_count) == (1.0, 0, math.inf, 3)
    assert (options.target_duration, options.minimum_memory) == (5.0, 0)


def test_dask_config_is_respected(adaptives: Callable[..., Adaptive]) -> None:
    with dask.config.set({"distributed.adaptive.interval": "250ms", "distributed.adaptive.minimum": 2,
                          "distributed.adaptive.maximum": 7, "distributed.adaptive.wait-count": 5,
                          "distributed.adaptive.target-duration": "1m",
                          "distributed.adaptive.minimum-memory": "512 MiB"}):
        adaptive = adaptives(FakeCluster())
    assert (adaptive.interval, adaptive.minimum, adaptive.maximum, adaptive.wait_count) == (0.25, 2, 7, 5)
    assert (adaptive.target_duration, adaptive.minimum_memory) == (60.0, GiB // 2)


def test_interval_zero_adapts_only_on_demand(adaptives: Callable[..., Adaptive]) -> None:
    cluster = FakeCluster()
    adaptive = adaptives(cluster, interval=0)
    assert adaptive.state == "inactive" and adaptive.periodic_callback is None and cluster.loop.callbacks == []


@pytest.mark.parametrize(
    "kwargs, error, word",
    [
        ({"minimum": -1}, ValueError, "minimum"),
        ({"minimum": 3, "maximum": 2}, ValueError, "maximum"),
        ({"maximum": 2.5}, ValueError, "maximum"),
        ({"interval": math.nan}, ValueError, "interval"),
        ({"interval": "soon"}, ValueError, "interval"),
        ({"interval": -1}, ValueError, "interval"),
        ({"wait_count": 0}, ValueError, "wait_count"),
        ({"target_duration": 0}, ValueError, "target_duration"),
        ({"target_duration": True}, TypeError, "target_duration"),
        ({"minimum_memory": "lots"}, ValueError, "minimum_memory"),
        ({"minimum_memory": -1}, ValueError, "minimum_memory"),
    ],
)
def test_bad_options_name_the_argument(kwargs: dict[str, Any], error: type[Exception], word: str) -> None:
    cluster = FakeCluster()
    with pytest.raises(error, match=word):
        Adaptive(cluster, **kwargs)  # type: ignore[arg-type]
    assert cluster.loop.callbacks == []  # nothing was scheduled


# -- choosing whole containers -----------------------------------------------------------------------------


def worker(name: object, address: str = "tcp://127.0.0.1:1") -> SimpleNamespace:
    return SimpleNamespace(name=name, address=address)


def test_workers_to_close_groups_by_container(adaptives: Callable[..., Adaptive]) -> None:
    scheduler = FakeScheduler(to_close=["dp-abcdef12-0", "dp-abcdef12-1"])
    adaptive = adaptives(FakeCluster(expected=3, scheduler=scheduler), memory_ratio=3)
    assert asyncio.run(adaptive.workers_to_close(target=1)) == ["dp-abcdef12-0", "dp-abcdef12-1"]
    (call,) = scheduler.called("workers_to_close")
    assert (call["target"], call["attribute"], call["memory_ratio"]) == (1, "name", 3)
    key = pickle.loads(call["key"])
    assert key(worker("dp-abcdef12-0")) == key(worker("dp-abcdef12-1")) == container_token("dp-abcdef12-0")
    assert key(worker("dp-abcdef12")) == "dp-abcdef12"
    assert key(worker("dp-12345678-0")) != key(worker("dp-abcdef12-0"))
    assert key(worker("someone-else", "tcp://10.0.0.1:5")) == "tcp://10.0.0.1:5"  # a group of its own
    assert key(worker(7, "tcp://10.0.0.1:6")) == "tcp://10.0.0.1:6"


def test_key_works_on_a_scheduler_without_dockerparallel() -> None:
    code = ("import sys, pickle; sys.modules['dockerparallel'] = None; "
            "key = pickle.loads(sys.stdin.buffer.read()); "
            "from types import SimpleNamespace as W; print(key(W(name='dp-abcdef12-1', address='x')))")
    result = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(container_key()),
                            capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip() == "dp-abcdef12"


def test_a_key_of_ones_own_is_used(adaptives: Callable[..., Adaptive]) -> None:
    scheduler = FakeScheduler()
    adaptive = adaptives(FakeCluster(expected=3, scheduler=scheduler), worker_key=len)
    asyncio.run(adaptive.workers_to_close(target=1))
    assert pickle.loads(scheduler.called("workers_to_close")[0]["key"]) is len


# -- scaling through the cluster -------------------------------------------------------------------------------


def test_scale_up_calls_set_worker_number_off_the_event_loop(adaptives: Callable[..., Adaptive]) -> None:
    cluster = FakeCluster(expected=1, scheduler=FakeScheduler(target=10))
    adaptive = adaptives(cluster, minimum=1, maximum=4, target_duration="2s")
    check(adaptive)
    assert [n for n, _ in cluster.numbers] == [4]  # clamped to maximum
    assert cluster.numbers[0][1].startswith("dockerparallel-adaptive")
    assert cluster.scheduler_comm.called("adaptive_target") == [{"target_duration": 2.0}]
    assert [target for _, target in adaptive.history] == [4]


def test_minimum_is_kept(adaptives: Callable[..., Adaptive]) -> None:
    cluster = FakeCluster(expected=0, scheduler=FakeScheduler(target=0))
    check(adaptives(cluster, minimum=2))
    assert [n for n, _ in cluster.numbers] == [2]


def test_minimum_memory_raises_the_target(adaptives: Callable[..., Adaptive]) -> None:
    scheduler = FakeScheduler(target=1)
    scheduler.identity_info = {"n_workers": 2, "total_memory": 2 * GiB}
    cluster = FakeCluster(expected=2, scheduler=scheduler)
    check(adaptives(cluster, minimum_memory="3 GiB"))
    assert [n for n, _ in cluster.numbers] == [3]
    assert scheduler.called("identity") == [{"n_workers": 0}]


def test_scale_down_retires_whole_containers_after_wait_count(adaptives: Callable[..., Adaptive]) -> None:
    names = ["dp-aaaaaaaa-0", "dp-aaaaaaaa-1", "dp-bbbbbbbb"]
    cluster = FakeCluster(expected=4, scheduler=FakeScheduler(target=1, to_close=names))
    adaptive = adaptives(cluster, minimum=1, wait_count=2)
    check(adaptive)
    assert cluster.lifecycle.retired == [] and cluster.expected == 4  # one suggestion is not enough
    check(adaptive)
    ((expected, timeout, thread),) = cluster.lifecycle.retired
    assert (expected, timeout, cluster.expected) == (1, Adaptive.retire_timeout, 1)
    assert thread.startswith("dockerparallel-adaptive")
    (retire,) = cluster.scheduler_comm.called("retire_workers")
    assert sorted(retire["names"]) == names and retire["close_workers"] is True
    assert [target for _, target in adaptive.history] == [1]
    assert cluster.numbers == []


def test_suggestions_must_be_consecutive(adaptives: Callable[..., Adaptive]) -> None:
    scheduler = FakeScheduler(target=1, to_close=["dp-aaaaaaaa-0"])
    cluster = FakeCluster(expected=2, scheduler=scheduler)
    adaptive = adaptives(cluster, wait_count=2)
    check(adaptive)
    scheduler.to_close = ["dp-bbbbbbbb-0"]
    check(adaptive)
    assert cluster.lifecycle.retired == []
    check(adaptive)
    assert cluster.scheduler_comm.called("retire_workers")[0]["names"] == ["dp-bbbbbbbb-0"]


def test_workers_of_no_container_are_not_retired(adaptives: Callable[..., Adaptive]) -> None:
    cluster = FakeCluster(expected=2, scheduler=FakeScheduler(target=1, to_close=["tcp://10.0.0.1:5"]))
    check(adaptives(cluster, wait_count=1))
    assert cluster.lifecycle.retired == [] and cluster.scheduler_comm.called("retire_workers") == []


# -- running and stopping -------------------------------------------------------------------------------------------


def test_checks_wait_while_the_cluster_starts_and_end_when_it_closes(adaptives: Callable[..., Adaptive]) -> None:
    cluster = FakeCluster(expected=1, scheduler=FakeScheduler(target=3))
    adaptive = adaptives(cluster)
    adaptive.state = "running"
    cluster.status = Status.created
    asyncio.run(adaptive.tick())
    assert cluster.numbers == [] and adaptive.state == "running"
    cluster.status = Status.running
    asyncio.run(adaptive.tick())
    assert [n for n, _ in cluster.numbers] == [3]
    cluster.status = Status.closed
    asyncio.run(adaptive.tick())
    assert adaptive.state == "stopped"


def test_a_stopped_adaptive_changes_nothing(adaptives: Callable[..., Adaptive]) -> None:
    cluster = FakeCluster(expected=1, scheduler=FakeScheduler(target=3))
    adaptive = adaptives(cluster)
    adaptive.stop()
    check(adaptive)
    assert cluster.numbers == [] and adaptive.state == "stopped"


def test_stop_waits_for_a_running_cluster_call(adaptives: Callable[..., Adaptive]) -> None:
    entered, release = threading.Event(), threading.Event()
    cluster = FakeCluster(expected=1, scheduler=FakeScheduler(target=2))
    plain = cluster.set_worker_number

    def slow(n: int) -> None:
        entered.set()
        release.wait(10)
        plain(n)

    cluster.set_worker_number = slow  # type: ignore[method-assign,assignment]
    adaptive = adaptives(cluster)
    runner = threading.Thread(target=check, args=(adaptive,))
    runner.start()
    assert entered.wait(10)
    threading.Timer(0.3, release.set).start()
    started = time.monotonic()
    adaptive.stop(timeout=10)
    assert time.monotonic() - started >= 0.25 and [n for n, _ in cluster.numbers] == [2]
    runner.join(10)


class LoopNotRunning(FakeCluster):
    """A synchronous Dask cluster before it connects: its ``loop`` raises, as Dask's ``Cluster.loop`` does."""

    running_loop: FakeLoop | None = None

    @property  # type: ignore[override]
    def loop(self) -> FakeLoop:
        if self.running_loop is None:
            raise RuntimeError("Accessing the loop property while the loop is not running is not supported")
        return self.running_loop

    @loop.setter
    def loop(self, value: Any) -> None:
        pass


def test_made_before_the_event_loop_runs_it_waits_for_start(adaptives: Callable[..., Adaptive]) -> None:
    cluster = LoopNotRunning()
    adaptive = adaptives(cluster, interval="100ms")
    assert adaptive.state == "starting"
    cluster.running_loop = FakeLoop()
    adaptive.start()
    adaptive.start()  # idempotent
    assert len(cluster.running_loop.callbacks) == 1


def test_runs_periodically_on_the_clusters_event_loop(adaptives: Callable[..., Adaptive]) -> None:
    async def main() -> FakeCluster:
        from tornado.ioloop import IOLoop

        cluster = FakeCluster(expected=1, scheduler=FakeScheduler(target=2), loop=IOLoop.current())
        adaptive = adaptives(cluster, interval="50ms")
        await asyncio.sleep(0.5)
        assert adaptive.state == "running"
        adaptive.stop()  # on the event loop: does not wait, stops at once
        assert adaptive.state == "stopped"
        adaptive.start()  # the lifecycle starts it again
        await asyncio.sleep(0.3)
        assert adaptive.state == "running"
        adaptive.stop()
        return cluster

    cluster = asyncio.run(main())
    assert [n for n, _ in cluster.numbers] == [2]
    assert len(cluster.scheduler_comm.called("adaptive_target")) >= 4


# -- on real local processes ----------------------------------------------------------------------------------------


def test_adapt_grows_and_retires_whole_containers(local_cluster: DockerCluster,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    # two workers per container (the fixture's container): scale-down must retire containers whole
    caplog.set_level(logging.WARNING, logger="dockerparallel.lifecycle")
    local_cluster.start_cluster(timeout=60)
    adaptive = local_cluster.adapt(minimum=1, maximum=4, interval="300ms", wait_count=2, target_duration="1s")
    assert isinstance(adaptive, Adaptive) and adaptive.interval == 0.3
    with local_cluster.get_client(set_as_default=False) as client:
        wait_for(lambda: local_cluster.get_worker_numbers() == (0, 1, 1), timeout=60)
        kept = client.submit(lambda: "kept", pure=False)
        assert kept.result(timeout=60) == "kept"
        futures = client.map(lambda i: time.sleep(0.4) or i, range(60))  # type: ignore[func-returns-value]
        peak = 0
        while not all(f.done() for f in futures):
            peak = max(peak, len(client.scheduler_info(n_workers=-1)["workers"]))
            time.sleep(0.1)
        assert sorted(client.gather(futures)) == list(range(60))  # no task lost
        del futures
        assert peak > 1 and max(target for _, target in adaptive.history) > 1

        provider: Any = local_cluster.provider

        def one_container_left() -> bool:
            numbers, ledger = local_cluster.get_worker_numbers(), list(provider.worker_ledger)
            return len(ledger) == 1 and numbers == (0, ledger[0].count, ledger[0].count)

        wait_for(one_container_left, timeout=90, what="the cluster shrinking to one container")
        assert local_cluster.expected_workers <= 2 and adaptive.history[-1][1] == local_cluster.expected_workers
        assert kept.result(timeout=30) == "kept"  # results moved before the containers went away
        names = [w["name"] for w in client.scheduler_info(n_workers=-1)["workers"].values()]
        assert len(names) == local_cluster.expected_workers and len(Counter(map(container_token, names))) == 1
    assert not [r for r in caplog.records if "did not exit" in r.getMessage()]  # no container was split
