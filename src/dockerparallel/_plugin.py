"""What a provider class declares for the command line and the state store (plain data).

A provider is a plugin: it registers a ``module:Class`` under the entry-point
group ``dockerparallel.providers`` and puts one :class:`ProviderPlugin` on the
class, as ``plugin``. The built-in providers do exactly the same.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The entry-point group under which provider classes are registered.
ENTRY_POINT_GROUP = "dockerparallel.providers"

#: The value types a command-line option of a provider may have.
OPTION_TYPES = (str, int, float, bool)


@dataclass(frozen=True)
class ProviderOption:
    """One option of a provider on ``dockerparallel up``: ``--flag VALUE`` becomes the keyword ``name``.

    Parameters
    ----------
    name : str
        The keyword of the provider's constructor that receives the value.
    help : str
        One line for ``dockerparallel up --help`` and ``dockerparallel providers``.
    type : type
        ``str``, ``int``, ``float`` or ``bool`` (a bool is a ``--flag/--no-flag`` pair).
    multiple : bool
        Whether the flag may repeat; the keyword then receives a list.
    flag : str, optional
        The flag without its dashes (default: ``name`` with ``_`` as ``-``).
    choices : tuple of str
        The only values accepted, if not empty.

    Notes
    -----
    An option not given on the command line is not passed: the provider's
    default (or the configuration, ``dockerparallel.providers.<name>``) holds.
    """

    name: str
    help: str
    type: type = str
    multiple: bool = False
    flag: str = ""
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"ProviderOption name must be a Python keyword name, got {self.name!r}")
        if self.type not in OPTION_TYPES:
            raise TypeError(f"ProviderOption {self.name!r}: type must be str, int, float or bool, got {self.type!r}")
        if self.type is bool and (self.multiple or self.choices):
            raise ValueError(f"ProviderOption {self.name!r}: a bool option takes neither multiple nor choices")

    @property
    def cli_flag(self) -> str:
        """The flag as typed, e.g. ``--security-group``."""
        return "--" + (self.flag or self.name.replace("_", "-"))


@dataclass(frozen=True)
class ProviderPlugin:
    """What the command line and the state store need to know of a provider class.

    Put one on the class as ``plugin = ProviderPlugin(...)``, and register the
    class under the entry-point group ``dockerparallel.providers`` with the
    same ``name``.

    Parameters
    ----------
    name : str
        The name after ``--provider`` and in ``dockerparallel.providers.<name>`` of the configuration.
    install : str
        What to ``pip install`` for the modules it needs, e.g. ``"dockerparallel[aws]"``.
    modules : tuple of str
        The modules it imports when it runs (checked by ``dockerparallel providers``).
    host_network : bool
        Whether its containers share this machine's network: the command line
        then picks free local ports and waits until the scheduler sees the workers.
    options : tuple of ProviderOption
        Its options on ``dockerparallel up``.
    store_option : str, optional
        The constructor keyword through which it receives the command line's
        :class:`~dockerparallel.state.StateStore`, if it keeps anything there.
    """

    name: str
    install: str = ""
    modules: tuple[str, ...] = ()
    host_network: bool = False
    options: tuple[ProviderOption, ...] = ()
    store_option: str | None = None

    def __post_init__(self) -> None:
        if not self.name or ":" in self.name or self.name != self.name.strip():
            raise ValueError(f"ProviderPlugin name must be a plain word, got {self.name!r}")
        flags = [option.cli_flag for option in self.options]
        repeated = sorted({flag for flag in flags if flags.count(flag) > 1})
        if repeated:
            raise ValueError(f"ProviderPlugin {self.name!r}: the flag {', '.join(repeated)} is declared twice")


def plugin_of(cls: type) -> ProviderPlugin:
    """What the provider class ``cls`` declares (its ``plugin``), or the defaults for one that declares nothing.

    The declaration is inherited: a subclass is the same kind of provider.
    """
    declared = getattr(cls, "plugin", None)
    return declared if isinstance(declared, ProviderPlugin) else ProviderPlugin(name=cls.__name__)
