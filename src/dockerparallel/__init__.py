"""dockerparallel: parallel-computing clusters on container services, without Kubernetes."""

from importlib.metadata import PackageNotFoundError, version

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
from .cluster import DockerCluster
from .container import DockerContainer, DockerHardware
from .managed import ManagedCloudProvider, ProviderCapabilities, ScaleReport
from .provider import CloudProvider, ClusterView, ServerAddress, WorkerNumbers, WorkerStatus

try:
    __version__ = version("dockerparallel")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

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
