"""Concrete providers, each a :class:`~dockerparallel.ManagedCloudProvider`, and the registry of providers.

Every provider is a plugin: a class registered under the entry-point group
``dockerparallel.providers`` (the built-ins ``local``, ``docker`` and ``ecs``
register there through this package's metadata, like anyone else's), with a
:class:`~dockerparallel.ProviderPlugin` on the class. A provider is found by
its registered name or by its ``package.module:Class`` path; its module is
imported only when asked for, so optional SDKs (docker, boto3) are needed only
by the provider that uses them.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from .._plugin import ENTRY_POINT_GROUP, plugin_of
from ..provider import CloudProvider


@dataclass(frozen=True)
class Registration:
    """A provider class registered under :data:`ENTRY_POINT_GROUP` (found without importing it)."""

    name: str
    path: str  # "package.module:Class"
    distribution: str  # the installed package that registers it
    version: str


def registered_providers() -> dict[str, Registration]:
    """The installed providers by name, from the entry points (no provider module is imported).

    Raises
    ------
    ValueError
        When two installed packages register different classes under one name.
    """
    found: dict[str, Registration] = {}
    for point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = point.dist
        entry = Registration(point.name, point.value, dist.name if dist else "?", dist.version if dist else "?")
        other = found.setdefault(point.name, entry)
        if other.path != entry.path:
            raise ValueError(f"provider {point.name!r} is registered twice: {other.path} ({other.distribution}) "
                             f"and {entry.path} ({entry.distribution}); uninstall one of them")
    return found


def provider_class(provider: str) -> type[CloudProvider]:
    """The provider class registered as ``provider``, or the class at ``package.module:Class``.

    Raises
    ------
    ValueError
        When no provider of that name is installed.
    TypeError
        When the class found is not a :class:`~dockerparallel.CloudProvider`.
    """
    if ":" in provider:
        path = provider
    else:
        installed = registered_providers()
        if provider not in installed:
            raise ValueError(f"provider must be one of {', '.join(sorted(installed))} or a "
                             f"package.module:Class path; got {provider!r} (see 'dockerparallel providers')")
        path = installed[provider].path
    cls = _load(path)
    if not (isinstance(cls, type) and issubclass(cls, CloudProvider)):
        raise TypeError(f"provider {provider!r}: {path} is not a CloudProvider subclass")
    return cls


def _load(path: str) -> Any:
    module, _, name = path.partition(":")
    try:
        target: Any = importlib.import_module(module)
        for part in name.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"provider {path!r} cannot be imported: {exc}") from exc
    return target


def provider_label(provider: object) -> str:
    """The name of a provider (an object, a class or a ``module:Class`` path) as ``status`` shows it.

    A path is named without importing it, from the entry points; a class
    that declares no plugin is named by its class name.
    """
    if isinstance(provider, str):
        for entry in registered_providers().values():
            if entry.path == provider:
                return entry.name
        return provider.rpartition(":")[2].rpartition(".")[2]
    return plugin_of(provider if isinstance(provider, type) else type(provider)).name


def make_provider(provider: str, **options: Any) -> CloudProvider:
    """Create the provider registered as ``provider`` (or at ``module:Class``) with ``options``.

    Raises
    ------
    ValueError
        Naming the options the class does not take.
    ImportError
        Saying what to install, when a module the provider needs is missing.
    """
    cls = provider_class(provider)
    accepted = _parameters(cls)
    unknown = sorted(set(options) - accepted)
    if unknown and "*" not in accepted:
        raise ValueError(f"unknown option for provider {provider!r}: {', '.join(unknown)}")
    try:
        return cls(**options)
    except ImportError as exc:
        hint = plugin_of(cls).install
        if not hint or hint in str(exc):
            raise
        raise ImportError(f"provider {provider!r} needs: pip install '{hint}' ({exc})") from exc


def _parameters(cls: type) -> set[str]:
    params = inspect.signature(cls).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return {p.name for p in params} | {"*"}
    return {p.name for p in params}


__all__ = ["Registration", "make_provider", "plugin_of", "provider_class", "provider_label", "registered_providers"]
