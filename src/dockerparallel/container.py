"""Plain data describing what to run: :class:`DockerContainer` and :class:`DockerHardware`.

A provider reads ``image``, ``command``, ``environment``, ``name`` and
``max_workers_per_container`` and nothing else. A backend (for example
:class:`dockerparallel.backends.dask.DaskWorkerContainer`) subclasses
:class:`DockerContainer` to say how its server container is derived and how
the command changes with the server address and the number of workers packed
into one container.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence


from ._validation import check_count

#: Environment variables a generic container receives; backends may add more.
ENV_SERVER_IP = "DOCKERPARALLEL_SERVER_IP"
ENV_SERVER_PORT = "DOCKERPARALLEL_SERVER_PORT"
ENV_WORKER_NUMBER = "DOCKERPARALLEL_WORKER_NUMBER"


#: Bytes in the MB that :class:`DockerHardware` counts memory in (a MiB, as Docker and ECS count it).
MB = 2**20

#: The largest memory a :class:`DockerHardware` accepts, in MB (1 PiB).
MAX_MEMORY_MB = 1024 * 1024 * 1024


def check_megabytes(value: Any, name: str = "memory") -> int:
    """Return a memory size as a whole number of MB (1 MB = 2**20 bytes, a MiB).

    Parameters
    ----------
    value : int, float or str
        A whole number of MB (integral floats such as ``4096.0`` too), or a
        Dask size string with a unit (``"4 GiB"`` is 4096, ``"512MiB"`` is
        512), read with :func:`dask.utils.parse_bytes`. Decimal units are
        converted and rounded down to whole MB (``"2GB"`` is 1907). A string
        without a unit (``"1024"``) is refused: bytes or MB would be a guess.
    name : str
        The argument's name, used in error messages.

    Raises
    ------
    TypeError
        If ``value`` is not a number nor a size string with a unit (``bool`` included).
    ValueError
        If the size is below 1 MB, above 1 PiB, or not a whole number of MB.
    """
    if not isinstance(value, str):
        return check_count(value, name, minimum=1, maximum=MAX_MEMORY_MB)
    text = value.strip()
    try:
        float(text)
        size: int | None = None  # a bare number: no unit
    except ValueError:
        size = _parse_size(text) if text else None
    if size is None:
        raise TypeError(
            f"{name} must be a whole number of MB or a size string with a unit ('4 GiB', '512 MiB'), "
            f"got {value!r}"
        )
    if not MB <= size <= MAX_MEMORY_MB * MB:
        raise ValueError(f"{name} must be between 1 MB (2**20 bytes) and 1 PiB, got {value!r}")
    return size // MB


def _parse_size(text: str) -> int | None:
    """Bytes of a Dask size string (a leading ``-`` kept), or ``None`` if it is not one."""
    sign = -1 if text.startswith("-") else 1
    try:
        from dask.utils import parse_bytes  # here: the command line starts without importing dask

        return sign * int(parse_bytes(text[1:] if sign < 0 else text))
    except (ValueError, TypeError, KeyError, IndexError, OverflowError):
        return None


def split(total: int, most: int) -> list[int]:
    """``total`` in parts of at most ``most``, full parts first: ``split(25, 10) == [10, 10, 5]``."""
    return [min(most, total - start) for start in range(0, total, most)] if total > 0 else []


@dataclass(frozen=True, init=False)
class DockerHardware:
    """Hardware asked for one container.

    Parameters
    ----------
    cpu : int
        CPU in units of 1/1024 core (1024 is one core), as ECS counts it.
    memory : int or str
        Memory in MB, where 1 MB is 2**20 bytes (a MiB, as Docker and ECS
        count it): a whole number (``2048``) or a Dask size string with a
        unit (``"4 GiB"`` is 4096; decimal units are rounded down to whole
        MB). Always stored as an ``int`` of MB.
    id : str, optional
        A provider-specific hardware id (an instance type, say).

    Raises
    ------
    TypeError, ValueError
        Naming the argument (``cpu``, ``memory`` or ``id``) that is wrong.
    """

    cpu: int = 1024
    memory: int = 2048
    id: str | None = None

    def __init__(self, cpu: int = 1024, memory: int | str = 2048, id: str | None = None) -> None:
        object.__setattr__(self, "cpu", check_count(cpu, "cpu", minimum=1, maximum=1024 * 1024))
        object.__setattr__(self, "memory", check_megabytes(memory, "memory"))
        if id is not None and not isinstance(id, str):
            raise TypeError(f"id must be a string or None, got {type(id).__name__}")
        object.__setattr__(self, "id", id)

    @property
    def cores(self) -> float:
        """CPU as a number of cores."""
        return self.cpu / 1024


def _check_command(command: Any) -> tuple[str, ...]:
    """Return ``command`` as a tuple of strings, or raise ``TypeError`` naming it."""
    if isinstance(command, (str, bytes)) or not isinstance(command, Iterable):
        raise TypeError("command must be a sequence of strings (an argument list)")
    arguments = tuple(command)
    if not all(isinstance(a, str) for a in arguments):
        raise TypeError("command must be a sequence of strings (an argument list)")
    return arguments


@dataclass(frozen=True)
class DockerContainer:
    """A container to run: image, command and environment.

    Parameters
    ----------
    image : str
        The container image.
    name : str, optional
        A human-readable name of the role (``"server"``, ``"worker"``).
    command : sequence of str
        The command, as an argument list.
    environment : mapping of str to str
        Environment variables. Values are never shown in ``repr``.
    max_workers_per_container : int
        How many workers a provider may pack into one container.
    secret_variables : sequence of str
        The names of the environment variables that hold secrets (TLS keys,
        passwords): a provider must not pass them where others can read them
        (on ECS they go through Secrets Manager). Set by :meth:`with_secrets`.
    """

    image: str
    name: str | None = None
    command: Sequence[str] = ()
    environment: Mapping[str, str] = field(default_factory=dict, repr=False)
    max_workers_per_container: int = 1
    secret_variables: Sequence[str] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.image, str):
            raise TypeError(f"image must be a non-empty string, got {type(self.image).__name__}")
        if not self.image:
            raise ValueError(f"image must be a non-empty string, got {self.image!r}")
        if self.name is not None and not isinstance(self.name, str):
            raise TypeError(f"name must be a string or None, got {type(self.name).__name__}")
        object.__setattr__(self, "command", _check_command(self.command))
        if not isinstance(self.environment, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.environment.items()
        ):
            raise TypeError("environment must map strings to strings")
        object.__setattr__(self, "environment", dict(self.environment))
        if isinstance(self.secret_variables, str) or not all(isinstance(k, str) for k in self.secret_variables):
            raise TypeError("secret_variables must be a sequence of variable names")
        object.__setattr__(self, "secret_variables", tuple(sorted(set(self.secret_variables))))
        object.__setattr__(
            self,
            "max_workers_per_container",
            check_count(self.max_workers_per_container, "max_workers_per_container", minimum=1, maximum=1024),
        )

    def __repr__(self) -> str:
        keys = ", ".join(sorted(self.environment))
        return (
            f"{type(self).__name__}(image={self.image!r}, name={self.name!r}, "
            f"command={list(self.command)!r}, environment=<{keys}>, "
            f"max_workers_per_container={self.max_workers_per_container})"
        )

    def replace(self, **changes: Any) -> DockerContainer:
        """Return a copy with ``changes`` applied (as :func:`dataclasses.replace`)."""
        return dataclasses.replace(self, **changes)

    def with_environment(self, **variables: str) -> DockerContainer:
        """Return a copy whose environment also holds ``variables``."""
        return self.replace(environment={**self.environment, **variables})

    def with_secrets(self, **variables: str) -> DockerContainer:
        """Return a copy whose environment also holds ``variables``, marked secret (:attr:`secret_variables`)."""
        return self.replace(environment={**self.environment, **variables},
                            secret_variables=(*self.secret_variables, *variables))

    def secrets(self) -> dict[str, str]:
        """The secret variables of the environment, by name."""
        return {k: self.environment[k] for k in self.secret_variables if k in self.environment}

    def server_container(self) -> DockerContainer:
        """Return the server container that goes with this worker container.

        The generic container has none: pass ``server_container=`` to the
        cluster, or use a backend's container.
        """
        raise NotImplementedError(
            f"{type(self).__name__} cannot derive a server container; "
            "pass server_container= to DockerCluster"
        )

    def for_server(self, address: ServerAddress) -> DockerContainer:
        """Return a copy configured to reach the server at ``address``."""
        return self.with_environment(
            **{ENV_SERVER_IP: address.private_ip, ENV_SERVER_PORT: str(address.private_port)}
        )

    def container_sizes(self, workers: int) -> list[int]:
        """How many workers each container of a launch of ``workers`` holds: full containers first.

        ``container_sizes(10) == [4, 4, 2]`` with ``max_workers_per_container=4``.
        """
        return split(workers, self.max_workers_per_container)

    def for_workers(self, workers: int, hardware: DockerHardware | None = None) -> DockerContainer:
        """Return a copy that runs ``workers`` workers in one container.

        Providers call this after choosing how many workers to pack; the
        generic container only passes the number through the environment.
        """
        workers = check_count(workers, "workers", minimum=1, maximum=self.max_workers_per_container)
        return self.with_environment(**{ENV_WORKER_NUMBER: str(workers)})


@dataclass(frozen=True)
class ServerAddress:
    """Where the server listens.

    Workers connect to the private address; the user's client connects to the
    public one when it exists, else to the private one.
    """

    public_ip: str | None
    public_port: int | None
    private_ip: str
    private_port: int

    @classmethod
    def coerce(cls, value: ServerAddress | Mapping[str, Any]) -> ServerAddress:
        """Accept a :class:`ServerAddress` or a mapping with the same keys."""
        if isinstance(value, ServerAddress):
            return value
        if isinstance(value, Mapping):
            return cls(
                public_ip=value.get("public_ip"),
                public_port=value.get("public_port"),
                private_ip=value["private_ip"],
                private_port=int(value["private_port"]),
            )
        raise TypeError(f"expected a ServerAddress or a mapping, got {type(value).__name__}")

    @classmethod
    def parse(cls, text: str) -> tuple[str, ServerAddress]:
        """``"tls://10.0.0.5:8786"`` -> ``("tls", ServerAddress(None, None, "10.0.0.5", 8786))``.

        Raises
        ------
        ValueError
            When ``text`` is not ``protocol://host:port``.
        """
        if not isinstance(text, str):
            raise TypeError(f"server must be a ServerAddress, a mapping or an address string, got {type(text).__name__}")
        protocol, sep, rest = text.partition("://")
        host, colon, port = rest.rpartition(":")
        if not (sep and colon and host and port.isdigit() and protocol in ("tcp", "tls")):
            raise ValueError(f"server: {text!r} is not a scheduler address such as 'tls://10.0.0.5:8786'")
        return protocol, cls(None, None, host.strip("[]"), int(port))

    def for_client(self, mode: str) -> ServerAddress:
        """The address as a client in ``mode`` sees it.

        ``"auto"``: the public address when there is one (the client is
        elsewhere); ``"private"``: the private one (the client shares the
        server's network, the R original's ``serverClientSameLAN``);
        ``"public"``: the public one, which must exist.
        """
        if mode == "private":
            return ServerAddress(None, None, self.private_ip, self.private_port)
        if mode == "public" and self.public_ip is None:
            raise ValueError("client_address='public': the server has no public address; use 'private' or 'auto'")
        if mode not in ("auto", "public", "private"):
            raise ValueError(f"client_address must be 'auto', 'public' or 'private', got {mode!r}")
        return self

    @property
    def client_ip(self) -> str:
        """The address a client should use."""
        return self.public_ip or self.private_ip

    @property
    def client_port(self) -> int:
        """The port a client should use."""
        return self.public_port or self.private_port
