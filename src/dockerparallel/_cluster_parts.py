"""Checks and small helpers of :class:`~dockerparallel.DockerCluster`'s constructor."""

from __future__ import annotations

import functools
from typing import Any

from ._validation import check_seconds
from .backends.dask import new_security
from .container import DockerContainer, DockerHardware, ServerAddress
from .provider import CloudProvider
from .state import StateStore


def check_hardware(value: DockerHardware | None, name: str) -> DockerHardware:
    if value is None:
        return DockerHardware()
    if not isinstance(value, DockerHardware):
        raise TypeError(f"{name} must be a DockerHardware, got {type(value).__name__}")
    return value


def check_state(state: StateStore | bool | None) -> StateStore | None:
    if state is None or state is True:
        return StateStore()
    if state is False:
        return None
    if not isinstance(state, StateStore):
        raise TypeError(f"state must be a StateStore or a bool, got {type(state).__name__}")
    return state


def check_parts(provider: object, worker_container: object, server_container: object) -> None:
    if not isinstance(provider, CloudProvider):
        raise TypeError(f"provider must be a CloudProvider, got {type(provider).__name__}")
    if not isinstance(worker_container, DockerContainer):
        raise TypeError(f"worker_container must be a DockerContainer, got {type(worker_container).__name__}")
    if server_container is not None and not isinstance(server_container, DockerContainer):
        raise TypeError(f"server_container must be a DockerContainer, got {type(server_container).__name__}")


def secure(provider: CloudProvider, container: DockerContainer, security: Any) -> tuple[Any, DockerContainer]:
    """The cluster's TLS settings and the worker container that uses them."""
    can_tls = hasattr(container, "with_security")
    if security is None:
        security = bool(provider.tls_by_default and can_tls)
    if security is False:
        return None, container
    if not can_tls:
        raise TypeError(f"security: {type(container).__name__} cannot use TLS; pass security=False")
    if security is True:
        security = new_security()
    return security, container.with_security(security)  # type: ignore[attr-defined]


class HybridMethod:
    """``Class.method(...)`` calls one function, ``instance.method(...)`` another."""

    def __init__(self, on_class: Any, on_instance: Any) -> None:
        self.on_class = on_class.__func__ if isinstance(on_class, classmethod) else on_class
        self.on_instance = on_instance
        self.__doc__ = on_instance.__doc__

    def __get__(self, obj: object, owner: type) -> Any:
        if obj is None:
            return functools.partial(self.on_class, owner)
        return functools.partial(self.on_instance, obj)


def with_idle_timeout(container: DockerContainer, idle_timeout: float | str | None,
                      provider: CloudProvider) -> DockerContainer:
    """``container`` with its idle timeout: the argument, else its own, else the one configured for ``provider``."""
    if not hasattr(container, "idle_timeout"):
        return container
    if idle_timeout is None:
        if container.idle_timeout is not None:  # type: ignore[attr-defined]
            return container
        idle_timeout = _configured_idle_timeout(provider)
        if idle_timeout is None:
            return container
    seconds = check_seconds(idle_timeout, "idle_timeout")
    return container.replace(idle_timeout=seconds or None)


def _configured_idle_timeout(provider: CloudProvider) -> Any:
    from ._config import get
    from .providers import provider_label

    table = get("idle-timeout")
    if not isinstance(table, dict):
        return table
    return table.get(provider_label(provider), table.get("other"))


def check_client_address(value: Any) -> str:
    """``"auto"``, ``"public"`` or ``"private"``, else a ``ValueError`` naming ``client_address``."""
    if value not in ("auto", "public", "private"):
        raise ValueError(f"client_address must be 'auto', 'public' or 'private', got {value!r}")
    return str(value)


def external_server(server: Any, container: DockerContainer,
                    security: Any) -> tuple[ServerAddress | None, DockerContainer, Any]:
    """The given server's address, the worker container speaking its protocol, and the security to use.

    A ``tcp://`` server means no TLS unless asked; a ``tls://`` one needs the
    certificates, as a ``distributed.Security``.
    """
    if server is None:
        return None, container, security
    protocol = None
    if isinstance(server, str):
        protocol, address = ServerAddress.parse(server)
    else:
        try:
            address = ServerAddress.coerce(server)
        except (KeyError, ValueError) as exc:
            raise ValueError(f"server: not a server address ({exc})") from None
        except TypeError:
            raise TypeError(f"server must be a ServerAddress, a mapping or an address string such as "
                            f"'tls://10.0.0.5:8786', got {type(server).__name__}") from None
    if protocol == "tls" and (security is None or isinstance(security, bool)):
        raise TypeError("security: a tls:// server needs its certificates: pass security=distributed.Security(...)")
    if protocol == "tcp" and security not in (None, False):
        raise ValueError("security: a tcp:// server speaks no TLS; pass security=False or a tls:// address")
    return address, container, False if security is None else security


def seconds_or_config(value: float | str | None, name: str, key: str) -> float:
    """``value`` in seconds, or the configured ``dockerparallel.<key>`` when it is ``None``."""
    if value is None:
        from ._config import seconds

        return seconds(key) or 300.0
    return check_seconds(value, name)
