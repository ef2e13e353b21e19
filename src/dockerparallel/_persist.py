"""A cluster as plain data in the state store, and the cluster rebuilt from it.

The record names the provider and container classes (``module:Class``) and
holds what their constructors need, so any process can rebuild the cluster:
``DockerCluster.reconnect(name)``.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import TYPE_CHECKING, Any

from .container import DockerContainer, DockerHardware
from .provider import CloudProvider

if TYPE_CHECKING:
    from .cluster import DockerCluster
    from .state import StateStore


def class_path(obj: object) -> str:
    """``module:QualifiedName`` of ``obj``'s class."""
    cls = type(obj)
    return f"{cls.__module__}:{cls.__qualname__}"


def load_class(path: str) -> type:
    """The class named by :func:`class_path`."""
    module, _, name = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, type):
        raise TypeError(f"{path} is not a class")
    return obj


def container_to_dict(container: DockerContainer) -> dict[str, Any]:
    """The container's class and fields."""
    fields = {f.name: getattr(container, f.name) for f in dataclasses.fields(container)}
    fields["command"] = list(fields["command"])
    return {"class": class_path(container), "fields": fields}


def container_from_dict(data: dict[str, Any]) -> DockerContainer:
    """The inverse of :func:`container_to_dict`."""
    cls = load_class(data["class"])
    if not issubclass(cls, DockerContainer):
        raise TypeError(f"{data['class']} is not a DockerContainer")
    return cls(**data["fields"])


def cluster_to_dict(cluster: DockerCluster) -> dict[str, Any]:
    """Everything needed to rebuild ``cluster`` in another process."""
    from .backends.dask import security_to_dict

    return {
        "provider": class_path(cluster.provider),
        "provider_options": cluster.provider.spec_options(),
        "worker_container": container_to_dict(cluster.worker_container),
        "server_container": container_to_dict(cluster.server_container),
        "worker_hardware": dataclasses.asdict(cluster.worker_hardware),
        "server_hardware": dataclasses.asdict(cluster.server_hardware),
        "expected": cluster.expected_workers,
        "security": security_to_dict(cluster.security) if cluster.security is not None else None,
    }


def cluster_from_dict(name: str, data: dict[str, Any], store: StateStore) -> DockerCluster:
    """A new :class:`DockerCluster` object (on a new provider object) for the recorded cluster.

    Raises
    ------
    StateStoreError
        When the record is incomplete or names what cannot be rebuilt; the
        message names the state file and the cluster.
    """
    from .state import StateStoreError

    try:
        return _cluster_from_dict(name, data, store)
    except (KeyError, TypeError, ValueError, AttributeError, ModuleNotFoundError) as exc:
        detail = f"missing field {exc.args[0]!r}" if isinstance(exc, KeyError) and exc.args else str(exc)
        raise StateStoreError(
            f"state file {store.path}: the record of cluster {name!r} cannot be rebuilt: {detail}"
        ) from exc


def _cluster_from_dict(name: str, data: dict[str, Any], store: StateStore) -> DockerCluster:
    from .backends.dask import security_from_dict
    from .cluster import DockerCluster

    cls = load_class(data["provider"])
    if not issubclass(cls, CloudProvider):
        raise TypeError(f"{data['provider']} is not a CloudProvider")
    provider = cls.from_spec_options(data["provider_options"], store)
    security = data.get("security")
    return DockerCluster(
        provider, container_from_dict(data["worker_container"]),
        server_container=container_from_dict(data["server_container"]),
        worker_number=data["expected"], name=name, state=store,
        worker_hardware=DockerHardware(**data["worker_hardware"]),
        server_hardware=DockerHardware(**data["server_hardware"]),
        security=security_from_dict(security) if security else False,
    )
