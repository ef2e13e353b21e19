"""Concrete providers, each a :class:`~dockerparallel.ManagedCloudProvider`.

Providers are looked up by name (``local``, ``docker``, ``ecs``); each is
imported only when asked for, so optional SDKs (docker, boto3) are needed
only by the provider that uses them.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from ..provider import CloudProvider

#: Provider name -> "module:class".
PROVIDERS: dict[str, str] = {
    "local": "dockerparallel.providers.local:LocalProcessProvider",
    "docker": "dockerparallel.providers.docker:DockerProvider",
    "ecs": "dockerparallel.providers.ecs:ECSFargateProvider",
}


def provider_class(name: str) -> type[CloudProvider]:
    """The provider class registered as ``name``."""
    if name not in PROVIDERS:
        raise ValueError(f"provider must be one of {', '.join(sorted(PROVIDERS))}; got {name!r}")
    module, _, cls = PROVIDERS[name].partition(":")
    try:
        return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]
    except ImportError as exc:
        extra = {"docker": "docker", "ecs": "aws"}.get(name, "")
        raise ImportError(f"provider {name!r} needs: pip install 'dockerparallel[{extra}]' ({exc})") from exc


def provider_label(provider: object) -> str:
    """The registry name of a provider (object or ``module:Class`` path), else its class name."""
    path = provider if isinstance(provider, str) else f"{type(provider).__module__}:{type(provider).__qualname__}"
    for name, registered in PROVIDERS.items():
        if registered == path:
            return name
    return path.rpartition(":")[2]


def make_provider(name: str, **options: Any) -> CloudProvider:
    """Create the provider registered as ``name`` with ``options``."""
    cls = provider_class(name)
    unknown = sorted(set(options) - _parameters(cls))
    if unknown:
        raise ValueError(f"unknown option for provider {name!r}: {', '.join(unknown)}")
    return cls(**options)


def _parameters(cls: type) -> set[str]:
    params = inspect.signature(cls).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return {p.name for p in params} | {"*"}
    return {p.name for p in params}


__all__ = ["PROVIDERS", "make_provider", "provider_class", "provider_label"]
