"""Provider plugins on the command line: each provider's own options on ``up``, and ``dockerparallel providers``.

A provider declares its options on its class (:class:`~dockerparallel.ProviderPlugin`);
``up`` hands what it does not know itself to the chosen provider's parser,
built here from that declaration with :mod:`argparse`.
"""

from __future__ import annotations

import argparse
import importlib.util
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.table import Table
from typer.core import TyperCommand

from ._plugin import ProviderOption, ProviderPlugin
from .providers import plugin_of, provider_class, registered_providers


class ProviderOptionsCommand(TyperCommand):
    """``up``: the words it does not know go to the chosen provider's own options; with
    ``--provider NAME --help`` the help ends with that provider's options."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        ctx.meta["dockerparallel.provider"] = _provider_word(args)
        return super().parse_args(ctx, args)

    def format_epilog(self, ctx: Any, formatter: Any) -> None:
        super().format_epilog(ctx, formatter)
        provider = ctx.meta.get("dockerparallel.provider")
        if provider:
            try:
                text = options_help(provider)
            except (ValueError, TypeError) as exc:
                text = f"({exc})"
            formatter.write("\n" + text + "\n")


def _provider_word(args: list[str]) -> str | None:
    """The value of ``--provider`` among the command-line words, if given."""
    for index, word in enumerate(args):
        if word.startswith("--provider="):
            return word.partition("=")[2]
        if word == "--provider" and index + 1 < len(args):
            return args[index + 1]
    return None


class ProviderOptionError(ValueError):
    """A provider option on the command line that its provider does not take (or a bad value)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would print and exit; the command says it on one line
        raise ProviderOptionError(message)


def _parser(plugin: ProviderPlugin) -> argparse.ArgumentParser:
    parser = _Parser(prog=f"--provider {plugin.name}", add_help=False, allow_abbrev=False, exit_on_error=False)
    for option in plugin.options:
        if option.type is bool:
            parser.add_argument(option.cli_flag, dest=option.name, action=argparse.BooleanOptionalAction,
                                default=None)
        else:
            parser.add_argument(option.cli_flag, dest=option.name, type=option.type, default=None,
                                choices=option.choices or None, action="append" if option.multiple else "store")
    return parser


def parse_provider_options(provider: str, args: list[str]) -> dict[str, Any]:
    """The keywords for ``provider`` from the command-line words ``args`` (only the options given).

    Raises
    ------
    ProviderOptionError
        Naming the provider, the word it does not take and the options it does.
    """
    plugin = plugin_of(provider_class(provider))
    try:
        parsed, unknown = _parser(plugin).parse_known_args(list(args))
    except (argparse.ArgumentError, ProviderOptionError) as exc:
        raise ProviderOptionError(f"provider {plugin.name!r}: {exc}") from None
    if unknown:
        flags = ", ".join(option_flags(plugin)) or "none"
        raise ProviderOptionError(f"provider {plugin.name!r} does not take {' '.join(unknown)!r} "
                                  f"(its options: {flags})")
    return {name: value for name, value in vars(parsed).items() if value is not None}


def option_flags(plugin: ProviderPlugin) -> list[str]:
    """How each option of ``plugin`` is typed, e.g. ``--pull/--no-pull`` or ``--subnet TEXT...``."""
    return [_flag_text(option) for option in plugin.options]


def _flag_text(option: ProviderOption) -> str:
    if option.type is bool:
        return f"{option.cli_flag}/--no-{option.cli_flag[2:]}"
    value = "|".join(option.choices) if option.choices else f"<{option.type.__name__}>"
    return f"{option.cli_flag} {value}" + ("..." if option.multiple else "")


def options_help(provider: str) -> str:
    """The options of ``provider``, one per line, for ``up --provider NAME --help``."""
    plugin = plugin_of(provider_class(provider))
    lines = [f"Options of provider {plugin.name!r} (after the options above):"]
    lines += [f"  {_flag_text(option):<34} {option.help}" for option in plugin.options] or ["  (none)"]
    return "\n".join(lines)


@dataclass
class ProviderRow:
    """One installed provider as ``dockerparallel providers`` shows it."""

    name: str
    path: str
    package: str
    ready: bool = False
    missing: list[str] = field(default_factory=list)
    install: str = ""
    host_network: bool = False
    options: list[str] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The row as a JSON object."""
        return asdict(self)


def provider_rows() -> list[ProviderRow]:
    """Every registered provider: where it comes from, whether what it needs is installed, its options."""
    rows = []
    for name, entry in sorted(registered_providers().items()):
        row = ProviderRow(name=name, path=entry.path, package=f"{entry.distribution} {entry.version}")
        try:
            plugin = plugin_of(provider_class(name))
        except (ValueError, TypeError) as exc:
            row.error = str(exc)
            rows.append(row)
            continue
        row.missing = [module for module in plugin.modules if importlib.util.find_spec(module) is None]
        row.ready, row.install, row.host_network = not row.missing, plugin.install, plugin.host_network
        row.options = option_flags(plugin)
        if plugin.name != name:
            row.error = f"registered as {name!r} but its class declares the name {plugin.name!r}"
        rows.append(row)
    return rows


def providers_table(rows: list[ProviderRow]) -> Table:
    """The rows as a Rich table (the options in a grid below each provider's row)."""
    result = Table("name", "ready", "host network")
    result.add_column("class (package)", overflow="fold")
    for row in rows:
        ready = "yes" if row.ready else (f"no: pip install '{row.install}'" if row.install else "no")
        result.add_row(row.name, ready if row.error is None else "error", "yes" if row.host_network else "no",
                       f"{row.path}\n({row.package})")
    return result


def providers_options_text(rows: list[ProviderRow]) -> str:
    """Each provider's options on ``up``, a block per provider."""
    blocks = [f"--provider {row.name}: " + (" ".join(row.options) or "(no options of its own)")
              for row in rows if row.error is None]
    return "\n".join(blocks)
