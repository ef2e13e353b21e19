"""The provider contract (ProviderContract) on LocalProcessProvider with a real Dask container."""

from __future__ import annotations

from typing import Callable, Iterator

import pytest

from dockerparallel.backends.dask import DaskWorkerContainer
from dockerparallel.providers.local import LocalProcessProvider
from dockerparallel.state import StateStore
from dockerparallel.testing import ProviderContract
from tests.local_fixtures import dask_container, live_children, store, wait_for  # noqa: F401


class TestLocalProviderContract(ProviderContract):
    poll = 0.05

    @pytest.fixture
    def provider_factory(self, store: StateStore) -> Callable[[], LocalProcessProvider]:  # noqa: F811
        return lambda: LocalProcessProvider(store, grace_period=3.0)

    @pytest.fixture
    def worker_container(self, dask_container: DaskWorkerContainer) -> DaskWorkerContainer:  # noqa: F811
        return dask_container

    @pytest.fixture
    def state_store(self, store: StateStore) -> StateStore:  # noqa: F811
        return store

    @pytest.fixture
    def timeout(self) -> float:
        return 60.0

    @pytest.fixture(autouse=True)
    def no_process_left(self) -> Iterator[None]:
        yield
        wait_for(lambda: live_children() == [], 10, "every process of the cluster to end")
