"""MkDocs hook: the command-line reference, generated from the Typer app at build time.

``docs/cli.md`` holds the marker ``<!-- cli-reference -->``; this hook
replaces it with one section per command of ``dockerparallel.cli:app``
(usage, help text, arguments, options and their defaults), read from the
same objects that ``dockerparallel COMMAND --help`` prints. A command added,
renamed or changed in the app shows up on the next build; nothing is copied
by hand. A page without the marker, or an app that cannot be imported, fails
the build.
"""

from __future__ import annotations

import html
import re
from typing import Any

MARKER = "<!-- cli-reference -->"
OPTIONS_MARKER = "<!-- provider-options -->"
PAGE = "cli.md"
PROGRAM = "dockerparallel"
_DEFAULT = re.compile(r"\s*\[(default: [^\]]*|required)\]\s*$")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace the marker of the CLI page with the reference of every command."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"{PAGE} lost its marker {MARKER!r}: the CLI reference has nowhere to go")
    if OPTIONS_MARKER not in markdown:
        raise ValueError(f"{PAGE} lost its marker {OPTIONS_MARKER!r}: the providers' options have nowhere to go")
    return markdown.replace(MARKER, render_app()).replace(OPTIONS_MARKER, render_provider_options())


def render_provider_options() -> str:
    """Markdown: one table per installed provider of its own options on ``up``, from its class's declaration."""
    from dockerparallel._cli_providers import option_flags
    from dockerparallel.providers import plugin_of, provider_class, registered_providers

    lines: list[str] = []
    for name in sorted(registered_providers()):
        plugin = plugin_of(provider_class(name))
        lines += [f"`--provider {name}`", "", "| Option | Description |", "| --- | --- |"]
        for flag, option in zip(option_flags(plugin), plugin.options):
            lines.append(f"| `{flag}` | {_cell(option.help)} |")
        lines.append("")
    return "\n".join(lines)


def render_app() -> str:
    """Markdown for the whole ``dockerparallel`` app."""
    import typer
    import typer.main

    from dockerparallel.cli import app

    command = typer.main.get_command(app)
    context = typer.Context(command, info_name=PROGRAM)
    return "\n".join(_render(command, context, PROGRAM, level=2))


def _render(command: Any, context: Any, path: str, level: int) -> list[str]:
    lines = [f"{'#' * level} `{path}`", ""]
    lines += _paragraphs(command.help or "")
    lines += ["```text", command.get_usage(context).strip(), "```", ""]
    arguments: list[tuple[str, str]] = []
    options: list[tuple[str, str]] = []
    for param in command.get_params(context):
        record = param.get_help_record(context)
        if record is None:
            continue
        (arguments if param.param_type_name == "argument" else options).append(record)
    if arguments:
        lines += _table("Argument", arguments)
    if options:
        lines += _table("Option", options)
    if command.epilog:
        lines += _paragraphs(command.epilog)
    subcommands = _subcommands(command, context)
    if subcommands:
        lines += ["| Command | What it does |", "| --- | --- |"]
        for name, sub in subcommands:
            lines.append(f"| [`{name}`](#{_anchor(path + ' ' + name)}) | {_cell(sub.get_short_help_str(limit=200))} |")
        lines.append("")
        for name, sub in subcommands:
            sub_context = type(context)(sub, info_name=name, parent=context)
            lines += _render(sub, sub_context, f"{path} {name}", level + (1 if level < 3 else 0))
    return lines


def _subcommands(command: Any, context: Any) -> list[tuple[str, Any]]:
    if not hasattr(command, "list_commands"):
        return []
    found = []
    for name in command.list_commands(context):
        sub = command.get_command(context, name)
        if sub is not None and not getattr(sub, "hidden", False):
            found.append((name, sub))
    return found


def _table(kind: str, records: list[tuple[str, str]]) -> list[str]:
    lines = [f"| {kind} | Default | Description |", "| --- | --- | --- |"]
    for names, text in records:
        text = text or ""
        match = _DEFAULT.search(text)
        default = ""
        if match:
            default = "required" if match.group(1) == "required" else f"`{match.group(1)[len('default: '):]}`"
            text = text[:match.start()]
        lines.append(f"| `{names}` | {_cell(default, escape=False)} | {_cell(text)} |")
    return lines + [""]


def _paragraphs(text: str) -> list[str]:
    lines = []
    for paragraph in re.split(r"\n\s*\n", text.replace("\b", "").strip()):
        if paragraph.strip():
            lines += [_escape(" ".join(paragraph.split())), ""]
    return lines


def _escape(text: str) -> str:
    """Plain help text as Markdown text: no HTML, no emphasis, no link syntax."""
    text = html.escape(text, quote=False)
    return re.sub(r"([\\`*_\[\]#|])", r"\\\1", text)


def _cell(text: str, escape: bool = True) -> str:
    text = " ".join(text.split())
    return _escape(text) if escape else text  # unescaped: a code span, where a pipe is no column


def _anchor(title: str) -> str:
    """The id that the ``toc`` extension gives a heading ``title`` (in backticks)."""
    return re.sub(r"[^\w\- ]", "", title).strip().lower().replace(" ", "-")
