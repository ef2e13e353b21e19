"""The ``dockerparallel`` namespace of :mod:`dask.config`, and typed getters of it.

The defaults ship as ``dockerparallel.yaml`` beside this module and are added
to Dask's defaults when this module is imported (as dask-jobqueue and
dask-cloudprovider do), so a user overrides them like any Dask setting: a
YAML file in ``~/.config/dask/`` or ``$DASK_CONFIG``, a
``DASK_DOCKERPARALLEL__...`` environment variable, or :func:`dask.config.set`.
Nothing is written to the user's home unless :func:`write_user_file` is called.

Keys may be given with or without the ``dockerparallel.`` prefix, in
kebab-case or snake_case. Every getter raises ``ValueError`` naming the
configuration key when its value is bad.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from importlib import resources
from typing import Any

import dask.config
import yaml

from ._validation import MAX_WORKERS, check_count, check_flag, check_name, check_seconds
from .container import DockerHardware, check_megabytes

logger = logging.getLogger("dockerparallel.config")

#: The namespace of every key.
NAMESPACE = "dockerparallel"

#: The shipped YAML file of defaults (package data).
DEFAULTS_FILE = "dockerparallel.yaml"

#: Provider options whose name ends so are times (parsed with :func:`seconds`).
TIME_SUFFIXES = ("timeout", "period", "delay", "interval")

_MISSING = object()
_defaults: dict[str, Any] | None = None


def load_defaults() -> dict[str, Any]:
    """Add the shipped defaults to Dask's configuration, once; return them.

    Idempotent: calling it again changes nothing. Values the user set (YAML,
    environment, :func:`dask.config.set`) keep precedence over the defaults.
    """
    global _defaults
    if _defaults is None:
        text = resources.files(NAMESPACE).joinpath(DEFAULTS_FILE).read_text(encoding="utf-8")
        _defaults = yaml.safe_load(text)
    if not any(known is _defaults for known in dask.config.defaults):
        dask.config.update_defaults(_defaults)
    return _defaults


def write_user_file(destination: str | None = None) -> None:
    """Copy the defaults, commented out, to Dask's user configuration folder.

    Optional (never called on import): :func:`dask.config.ensure_file`
    writes ``dockerparallel.yaml`` into ``destination`` (default
    ``~/.config/dask`` or ``$DASK_CONFIG``) only if no such file exists there.
    """
    source = resources.files(NAMESPACE).joinpath(DEFAULTS_FILE)
    with resources.as_file(source) as path:
        dask.config.ensure_file(source=str(path), destination=destination, comment=True)


def key_of(key: str) -> str:
    """The full key of ``key``: ``"heal-interval"`` -> ``"dockerparallel.heal-interval"``."""
    return key if key == NAMESPACE or key.startswith(NAMESPACE + ".") else f"{NAMESPACE}.{key}"


def get(key: str, default: Any = None) -> Any:
    """The value of ``key`` (prefix optional), or ``default`` when it is not set.

    Examples
    --------
    >>> get("workers-per-container")  # doctest: +SKIP
    1
    """
    return dask.config.get(key_of(key), default=default)


def _lookup(key_or_value: Any) -> tuple[str | None, Any]:
    """``(full key, its value)`` when ``key_or_value`` is a set key, else ``(None, key_or_value)``."""
    if isinstance(key_or_value, str) and key_or_value.strip():
        value = dask.config.get(key_of(key_or_value.strip()), default=_MISSING)
        if value is not _MISSING:
            return key_of(key_or_value.strip()), value
    return None, key_or_value


def seconds(key_or_value: Any, *, positive: bool = False, name: str = "value") -> float | None:
    """A duration in seconds, from a key or a value; ``None`` stays ``None``.

    Parameters
    ----------
    key_or_value : str, int, float or None
        A configuration key (``"heal-interval"``) or a value: a number of
        seconds or a Dask time string (``"30s"``, ``"500ms"``, ``"5 minutes"``).
    positive : bool
        Refuse zero.
    name : str
        How errors name a value that is not a key.

    Raises
    ------
    ValueError
        Naming the key, if its value is not a non-negative time.
    TypeError, ValueError
        Naming ``name``, if a value given directly is not one.
    """
    key, value = _lookup(key_or_value)
    if value is None:
        return None
    if key is None:
        return check_seconds(value, name, allow_zero=not positive)
    try:
        return check_seconds(value, key, allow_zero=not positive)
    except TypeError:
        raise ValueError(f"{key}: {value!r} is not a time ('30s', '5 minutes')") from None


def megabytes(key_or_value: Any, *, name: str = "memory") -> int:
    """A memory size in MB (1 MB = 2**20 bytes), from a key or a value.

    Parameters
    ----------
    key_or_value : str or int
        A configuration key (``"worker-hardware.memory"``) or a value: a
        whole number of MB or a Dask size string (``"4 GiB"`` -> 4096).
    name : str
        How errors name a value that is not a key.

    Raises
    ------
    ValueError
        Naming the key, if its value is not a size.
    TypeError, ValueError
        Naming ``name``, if a value given directly is not one.
    """
    key, value = _lookup(key_or_value)
    if key is None:
        return check_megabytes(value, name)
    try:
        return check_megabytes(value, key)
    except TypeError:
        raise ValueError(f"{key}: {value!r} is not a size ('4 GiB', '512 MiB', or a number of MB)") from None


def _checked(key: str, check: Any, *args: Any, **kwargs: Any) -> Any:
    """``check(value of key, key, ...)``, any ``TypeError`` turned into ``ValueError`` naming the key."""
    value = get(key)
    try:
        return check(value, key_of(key), *args, **kwargs)
    except TypeError as exc:  # the message names the key already
        raise ValueError(str(exc)) from None


def count(key: str, *, minimum: int = 0, maximum: int = MAX_WORKERS) -> int:
    """The whole number at ``key``, in ``[minimum, maximum]``; ``ValueError`` naming the key."""
    return int(_checked(key, check_count, minimum=minimum, maximum=maximum))


def flag(key: str) -> bool:
    """The ``true``/``false`` at ``key``; ``ValueError`` naming the key."""
    return bool(_checked(key, check_flag))


def hardware(prefix: str) -> DockerHardware:
    """The :class:`DockerHardware` at ``prefix`` (``"worker-hardware"``, ``"server-hardware"``).

    The mapping holds ``cpu`` (1/1024 cores), ``memory`` (MB or a Dask size
    string) and optionally ``id``; a missing entry takes the class default.

    Raises
    ------
    ValueError
        Naming the key, if the mapping or one of its values is bad.
    """
    key = key_of(prefix)
    spec = get(key, {})
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        raise ValueError(f"{key}: must be a mapping of cpu, memory and id, got {spec!r}")
    unknown = sorted(set(spec) - {"cpu", "memory", "id"})
    if unknown:
        raise ValueError(f"{key}: unknown entries {', '.join(map(str, unknown))} (known: cpu, memory, id)")
    fields = {field: spec[field] for field in ("cpu", "id") if spec.get(field) is not None}
    if spec.get("memory") is not None:
        fields["memory"] = megabytes(f"{key}.memory")
    try:
        return DockerHardware(**fields)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{key}: {exc}") from None


def provider_options(name: str, cls: type | None = None) -> dict[str, Any]:
    """The constructor keywords of provider ``name`` from ``dockerparallel.providers.<name>``.

    Keys become snake_case; ``null`` entries are left out (the constructor's
    default applies); options whose name ends in ``timeout``, ``period``,
    ``delay`` or ``interval`` are parsed as times (float seconds). Only
    options the constructor accepts (:func:`inspect.signature`) are
    returned; others are logged and ignored.

    Parameters
    ----------
    name : str
        The provider's name (``"local"``, ``"docker"``, ``"ecs"``, or any
        section a third-party provider reads).
    cls : type, optional
        The provider class (default: the one registered as ``name``).

    Raises
    ------
    ValueError
        Naming the key, if the section is not a mapping or a time is bad.
    """
    key = key_of(f"providers.{name}")
    section = get(key, {}) or {}
    if not isinstance(section, Mapping):
        raise ValueError(f"{key}: must be a mapping of the provider's options, got {section!r}")
    if cls is None:
        from .providers import provider_class

        cls = provider_class(name)
    accepted, any_keyword = _parameters(cls)
    options: dict[str, Any] = {}
    for entry, value in section.items():
        option = str(entry).replace("-", "_")
        if option not in accepted and not any_keyword:
            logger.warning("%s.%s is not an option of %s; ignored", key, entry, cls.__name__)
        elif value is not None:
            timed = option.endswith(TIME_SUFFIXES)
            options[option] = seconds(f"{key}.{entry}") if timed else value
    return options


def _parameters(cls: type) -> tuple[set[str], bool]:
    """The keyword names ``cls`` accepts, and whether it takes ``**kwargs``."""
    params = list(inspect.signature(cls).parameters.values())
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names, any(p.kind is p.VAR_KEYWORD for p in params)


def _security(value: Any, key: str) -> Any:
    """``None``, ``True``/``False``, or a security object set in code; ``TypeError`` otherwise."""
    if isinstance(value, (str, int, float, Mapping, list)) and not isinstance(value, bool):
        raise TypeError(f"{key} must be true, false or null, got {value!r}")
    return value


def cluster_defaults() -> dict[str, Any]:
    """The keyword defaults of :class:`~dockerparallel.DockerCluster` from the configuration.

    Returns
    -------
    dict
        ``worker_number``, ``worker_hardware``, ``server_hardware``, ``name``,
        ``verbose``, ``security``, ``auto_heal``, ``heal_interval``,
        ``init_timeout`` and ``call_timeout`` (times as float seconds or ``None``).

    Raises
    ------
    ValueError
        Naming the first key whose value is bad.
    """
    name = get("name")
    return {
        "worker_number": count("workers"),
        "worker_hardware": hardware("worker-hardware"),
        "server_hardware": hardware("server-hardware"),
        "name": None if name is None else _checked("name", check_name),
        "verbose": count("verbose", maximum=2),
        "security": _checked("security", _security),
        "auto_heal": flag("auto-heal"),
        "heal_interval": seconds("heal-interval", positive=True),
        "init_timeout": seconds("init-timeout", positive=True),
        "call_timeout": seconds("call-timeout", positive=True),
    }


load_defaults()

__all__ = [
    "DEFAULTS_FILE", "NAMESPACE", "cluster_defaults", "count", "flag", "get", "hardware", "key_of",
    "load_defaults", "megabytes", "provider_options", "seconds", "write_user_file",
]
