"""The provider contract (ProviderContract) on the fake provider: one FakeCloud shared by every provider it builds."""

from __future__ import annotations

import subprocess
import sys
from typing import Callable

import pytest

from dockerparallel import DockerContainer
from dockerparallel.testing import FakeCloud, FakeCloudProvider, ProviderContract

from .._helpers import worker_container

pytest_plugins = ["pytester"]


class TestFakeProviderContract(ProviderContract):
    poll = 0.01

    @pytest.fixture
    def cloud(self) -> FakeCloud:
        return FakeCloud()

    @pytest.fixture
    def provider_factory(self, cloud: FakeCloud) -> Callable[[], FakeCloudProvider]:
        return lambda: FakeCloudProvider(cloud)

    @pytest.fixture
    def worker_container(self) -> DockerContainer:
        return worker_container(2)

    @pytest.fixture
    def server_container(self, worker_container: DockerContainer) -> DockerContainer:
        return worker_container

    @pytest.fixture
    def timeout(self) -> float:
        return 5.0

    @pytest.fixture(autouse=True)
    def nothing_left(self, cloud: FakeCloud) -> object:
        yield
        assert cloud.live() == [], f"containers left running: {cloud.live()}"


def test_importing_the_testing_package_does_not_import_pytest() -> None:
    code = ("import sys, dockerparallel.testing as t; assert 'pytest' not in sys.modules; "
            "t.ProviderContract; assert 'pytest' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_contract_without_a_provider_factory_says_what_to_define(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        from dockerparallel.testing import ProviderContract

        class TestNothing(ProviderContract):
            pass
    """)
    result = pytester.runpytest("-k", "test_run_returns_exactly_n_handles", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*define a provider_factory fixture*"])


def test_without_reconnect_support_the_reconnect_rules_are_skipped_with_the_reason(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest
        from dockerparallel import DockerContainer
        from dockerparallel.testing import FakeCloudProvider, ProviderContract

        class TestOwnClouds(ProviderContract):  # each fresh provider has a cloud of its own: finds nothing
            poll = 0.01

            @pytest.fixture
            def provider_factory(self):
                return FakeCloudProvider

            @pytest.fixture
            def worker_container(self):
                return DockerContainer("img", command=["w"], max_workers_per_container=2)

            @pytest.fixture
            def server_container(self, worker_container):
                return worker_container
    """)
    result = pytester.runpytest("-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=10, skipped=3)
    result.stdout.fnmatch_lines([
        ("SKIPPED*rule 'reconnect from a fresh provider adopts the workers' not checked: the provider does not "
         "report existing clusters (docker_cluster_exists returned False)"),
    ])
