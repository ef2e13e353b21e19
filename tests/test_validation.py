"""Every bad input gets a TypeError/ValueError naming the argument, and changes nothing."""

from __future__ import annotations

import math
from typing import Any, Callable

import pytest

from dockerparallel import DockerCluster, DockerContainer, DockerHardware
from dockerparallel._validation import MAX_WORKERS, check_count, check_name, check_verbose
from dockerparallel.testing import FakeCloudProvider

from ._helpers import live_worker_counts, started_cluster

Case = tuple[str, Any, type[Exception]]

#: Bad worker numbers, as every public method taking one must reject them.
BAD_NUMBERS: list[tuple[Any, type[Exception]]] = [
    (-1, ValueError),
    (1.5, ValueError),
    (math.nan, ValueError),
    (math.inf, ValueError),
    (-math.inf, ValueError),
    (True, TypeError),
    (False, TypeError),
    ("3", TypeError),
    (None, TypeError),
    ([3], TypeError),
    (MAX_WORKERS + 1, ValueError),
    (2**64, ValueError),
]

CONTAINER_CASES: list[Case] = [
    ("image", "", ValueError),
    ("image", None, TypeError),
    ("image", 5, TypeError),
    ("name", 5, TypeError),
    ("command", "sleep 600", TypeError),
    ("command", [1], TypeError),
    ("command", None, TypeError),
    ("command", 5, TypeError),
    ("environment", {"A": 1}, TypeError),
    ("environment", {1: "a"}, TypeError),
    ("environment", None, TypeError),
    ("environment", "AB", TypeError),
    ("environment", 5, TypeError),
    ("max_workers_per_container", 0, ValueError),
    ("max_workers_per_container", -1, ValueError),
    ("max_workers_per_container", 1.5, ValueError),
    ("max_workers_per_container", math.nan, ValueError),
    ("max_workers_per_container", True, TypeError),
    ("max_workers_per_container", "2", TypeError),
    ("max_workers_per_container", None, TypeError),
    ("max_workers_per_container", 1025, ValueError),
]

HARDWARE_CASES: list[Case] = [
    *[("cpu", value, error) for value, error in [
        (0, ValueError), (-1, ValueError), (1.5, ValueError), (math.nan, ValueError), (math.inf, ValueError),
        (True, TypeError), ("1024", TypeError), (None, TypeError), (2**21, ValueError)]],
    *[("memory", value, error) for value, error in [
        (0, ValueError), (-5, ValueError), (0.5, ValueError), (True, TypeError), ("lots", TypeError)]],
    ("id", 5, TypeError),
    ("id", b"m5.large", TypeError),
]

CLUSTER_CASES: list[Case] = [
    ("provider", None, TypeError),
    ("provider", object(), TypeError),
    ("worker_container", "img", TypeError),
    ("worker_container", None, TypeError),
    ("server_container", "img", TypeError),
    *[("worker_number", value, error) for value, error in BAD_NUMBERS if value is not None],  # None: the config
    ("worker_hardware", "big", TypeError),
    ("worker_hardware", {"cpu": 1024}, TypeError),
    ("server_hardware", 5, TypeError),
    ("name", "", ValueError),
    ("name", "-starts-with-dash", ValueError),
    ("name", "a" * 64, ValueError),
    ("name", "has space", ValueError),
    ("name", "semi;colon", ValueError),
    ("name", 5, TypeError),
    ("verbose", -1, ValueError),
    ("verbose", 3, ValueError),
    ("verbose", True, TypeError),
    ("verbose", "1", TypeError),
    ("verbose", 1.5, ValueError),
]


def case_id(case: Case) -> str:
    argument, value, _ = case
    return f"{argument}={value!r}"[:40]


def assert_rejected(call: Callable[[], object], error: type[Exception], argument: str) -> None:
    with pytest.raises(error) as excinfo:
        call()
    assert type(excinfo.value) is error
    assert argument in str(excinfo.value), str(excinfo.value)


@pytest.mark.parametrize("case", CONTAINER_CASES, ids=case_id)
def test_docker_container_rejects(case: Case) -> None:
    argument, value, error = case
    arguments: dict[str, Any] = {"image": "img", "command": ["w"], argument: value}
    assert_rejected(lambda: DockerContainer(**arguments), error, argument)


@pytest.mark.parametrize("case", HARDWARE_CASES, ids=case_id)
def test_docker_hardware_rejects(case: Case) -> None:
    argument, value, error = case
    assert_rejected(lambda: DockerHardware(**{argument: value}), error, argument)


@pytest.mark.parametrize("case", CLUSTER_CASES, ids=case_id)
def test_docker_cluster_constructor_rejects(case: Case, provider: FakeCloudProvider,
                                            container: DockerContainer) -> None:
    argument, value, error = case
    arguments: dict[str, Any] = {"provider": provider, "worker_container": container,
                                 "server_container": container, argument: value}
    assert_rejected(lambda: DockerCluster(**arguments), error, argument)
    assert provider.calls == {} and provider.cloud.live() == []


@pytest.mark.parametrize(("value", "error"), BAD_NUMBERS, ids=repr)
def test_set_worker_number_rejects_and_changes_nothing(value: Any, error: type[Exception],
                                                       provider: FakeCloudProvider) -> None:
    cluster = started_cluster(provider, worker_number=3)
    live, calls = live_worker_counts(provider.cloud), dict(provider.calls)
    assert_rejected(lambda: cluster.set_worker_number(value), error, "worker_number")
    assert cluster.expected_workers == 3
    assert live_worker_counts(provider.cloud) == live and len(live) == 1
    assert provider.calls == calls


@pytest.mark.parametrize(("value", "error"), BAD_NUMBERS, ids=repr)
def test_set_worker_number_before_start_rejects(value: Any, error: type[Exception], cluster: DockerCluster) -> None:
    assert_rejected(lambda: cluster.set_worker_number(value), error, "worker_number")
    assert cluster.expected_workers == 0


@pytest.mark.parametrize(("value", "error"), [c for c in BAD_NUMBERS if c[0] is not None], ids=repr)
def test_wait_for_workers_rejects_number(value: Any, error: type[Exception], provider: FakeCloudProvider) -> None:
    cluster = started_cluster(provider, worker_number=2)
    calls = dict(provider.calls)
    assert_rejected(lambda: cluster.wait_for_workers(value, timeout=0), error, "n_workers")
    assert provider.calls == calls and cluster.expected_workers == 2


@pytest.mark.parametrize(("value", "error"), [(math.nan, ValueError), ("soon", TypeError), (-1, ValueError), ("-5s", ValueError)],
                         ids=repr)
def test_wait_for_workers_rejects_timeout(value: Any, error: type[Exception], started: DockerCluster) -> None:
    assert_rejected(lambda: started.wait_for_workers(0, timeout=value), error, "timeout")


@pytest.mark.parametrize(("value", "expected"), [(0, 0), (7, 7), (3.0, 3), (MAX_WORKERS, MAX_WORKERS)])
def test_check_count_accepts(value: Any, expected: int) -> None:
    result = check_count(value, "n")
    assert result == expected and type(result) is int


def test_check_count_bounds_name_the_argument() -> None:
    assert_rejected(lambda: check_count(1, "size", minimum=2), ValueError, "size")
    assert_rejected(lambda: check_count(3, "size", maximum=2), ValueError, "size")


@pytest.mark.parametrize("value", ["a", "A1", "my-cluster_1.0", "x" * 63])
def test_check_name_accepts(value: str) -> None:
    assert check_name(value) == value


def test_check_verbose_range() -> None:
    assert [check_verbose(v) for v in (0, 1, 2)] == [0, 1, 2]
    assert_rejected(lambda: check_verbose(3), ValueError, "verbose")
