"""The public API is exactly what is documented: a change to it is a deliberate change of this test."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import dockerparallel
from dockerparallel import DockerParallelError

PUBLIC = {
    "dockerparallel": [
        "CloudProvider", "ClusterExistsError", "ClusterStateError", "ClusterView", "ConformanceError",
        "DockerCluster", "DockerContainer", "DockerHardware", "DockerParallelError", "ManagedCloudProvider",
        "PartialLaunchError", "ProviderCapabilities", "ProviderError", "ProviderOption", "ProviderPlugin",
        "ProviderThrottled", "ProviderTimeout",
        "ScaleReport", "ServerAddress", "StateStoreError", "StopError", "WorkerNumbers", "WorkerStatus",
        "__version__",
    ],
    "dockerparallel.managed": [
        "KillPlan", "LedgerEntry", "ManagedCloudProvider", "ProviderCapabilities", "ScaleReport", "WorkerLedger",
        "WorkerManager", "bounded_subset_sum", "plan_kill",
    ],
    "dockerparallel.testing": [
        "ConformanceReport", "FakeCloud", "FakeCloudError", "FakeCloudProvider", "FakeContainer", "ProviderContract",
        "StepOutcome", "check_provider",
    ],
    "dockerparallel.providers": ["Registration", "make_provider", "plugin_of", "provider_class", "provider_label",
                                 "registered_providers"],
}


def test_each_public_package_exports_exactly_the_documented_names() -> None:
    for name, names in PUBLIC.items():
        module = importlib.import_module(name)
        assert sorted(module.__all__) == sorted(names), name
        for exported in names:
            assert getattr(module, exported) is not None, f"{name}.{exported}"


def _package_modules() -> list[str]:
    names = ["dockerparallel"]
    for info in pkgutil.walk_packages(dockerparallel.__path__, "dockerparallel."):
        if not info.name.endswith("__main__"):
            names.append(info.name)
    return names


def test_every_error_a_user_can_meet_is_exported() -> None:
    """Each exception class of the package can be caught by a public name."""
    public: set[type] = set()
    for name in PUBLIC:
        module = importlib.import_module(name)
        public |= {getattr(module, n) for n in module.__all__ if isinstance(getattr(module, n), type)}
    for provider in ("local", "docker", "ecs"):
        module = importlib.import_module(f"dockerparallel.providers.{provider}")
        public |= {getattr(module, n) for n in dir(module) if not n.startswith("_")
                   and isinstance(getattr(module, n), type)}
    hidden = []
    for module_name in _package_modules():
        module = importlib.import_module(module_name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, DockerParallelError) and cls.__module__.startswith("dockerparallel") \
                    and cls not in public:
                hidden.append(f"{cls.__module__}.{cls.__qualname__}")
    assert not sorted(set(hidden)), "errors a user can meet but not import from a public module"
