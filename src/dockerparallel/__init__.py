"""dockerparallel: parallel-computing clusters on container services, without Kubernetes.

The heavy names (:class:`DockerCluster`, which needs Dask distributed, and the
managed layer) are imported on first use (PEP 562), so that importing the
package, or running ``dockerparallel --help``, stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._errors import (
    ClusterExistsError,
    ClusterStateError,
    ConformanceError,
    DockerParallelError,
    PartialLaunchError,
    ProviderError,
    ProviderThrottled,
    ProviderTimeout,
    StateStoreError,
    StopError,
)
from .container import DockerContainer, DockerHardware
from .provider import (
    CloudProvider,
    ClusterView,
    ProviderOption,
    ProviderPlugin,
    ServerAddress,
    WorkerNumbers,
    WorkerStatus,
)

if TYPE_CHECKING:
    from .cluster import DockerCluster
    from .managed import ManagedCloudProvider, ProviderCapabilities, ScaleReport

    __version__: str

#: Name -> the module that defines it, imported on first access.
_LAZY = {
    "DockerCluster": ".cluster",
    "ManagedCloudProvider": ".managed",
    "ProviderCapabilities": ".managed",
    "ScaleReport": ".managed",
}

__all__ = [
    "CloudProvider",
    "ClusterExistsError",
    "ClusterStateError",
    "ClusterView",
    "ConformanceError",
    "DockerCluster",
    "DockerContainer",
    "DockerHardware",
    "DockerParallelError",
    "ManagedCloudProvider",
    "PartialLaunchError",
    "ProviderCapabilities",
    "ProviderError",
    "ProviderOption",
    "ProviderPlugin",
    "ProviderThrottled",
    "ProviderTimeout",
    "ScaleReport",
    "ServerAddress",
    "StateStoreError",
    "StopError",
    "WorkerNumbers",
    "WorkerStatus",
    "__version__",
]


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dockerparallel")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0"


def __getattr__(name: str) -> Any:
    """Import a heavy public name on first access (PEP 562) and keep it in the module."""
    if name == "__version__":
        value: Any = _package_version()
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's names, the ones not imported yet included."""
    return sorted(set(globals()) | set(__all__))
