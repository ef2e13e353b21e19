"""MkDocs hook: show named functions and classes of a Python file, read from the file at build time.

A page writes ``<!-- source: examples/subprocess_provider.py#SubprocessProvider.run_docker_server -->``
(several names separated by commas; ``#`` alone, or no ``#``, for the whole
file) and gets a Python code block with exactly that code, taken from the
file as it is now: the tutorial cannot drift from the example it explains. A
name that is not in the file fails the build. A class name followed by
``:head`` gives the class line, its docstring and the assignments before its
first method; ``imports`` gives the file's top-level imports, and the name of
a module-level variable gives its assignment (with the comment on its line).
"""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path
from typing import Any

MARKER = re.compile(r"<!-- source: (?P<path>[^#\s]+)(?:#(?P<names>[\w.:, ]*))? -->")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace every source marker of the page with a code block."""
    root = Path(config["config_file_path"]).parent

    def replace(match: re.Match[str]) -> str:
        path = root / match.group("path")
        names = [name.strip() for name in (match.group("names") or "").split(",") if name.strip()]
        try:
            code = extract(path.read_text(encoding="utf-8"), names)
        except (OSError, KeyError) as exc:
            raise ValueError(f"{page.file.src_uri}: {match.group(0)}: {exc}") from exc
        return f"```python\n{code.rstrip()}\n```"

    return MARKER.sub(replace, markdown)


def extract(source: str, names: list[str]) -> str:
    """The code of ``names`` (dotted, for methods) in ``source``; the whole source without names.

    Methods of one class, asked for together, are shown under that class's
    ``class`` line, with their own indentation.
    """
    if not names:
        return source
    tree = ast.parse(source)
    lines = source.splitlines()
    owners = {name.rpartition(".")[0] for name in names}
    if len(owners) == 1 and "" not in owners:
        cls = _find(tree, owners.pop())
        header = lines[cls.lineno - 1]
        return header + "\n" + "\n\n".join(_code(tree, lines, name, dedent=False) for name in names)
    return "\n\n".join(_code(tree, lines, name, dedent=True) for name in names)


def _code(tree: ast.Module, lines: list[str], name: str, dedent: bool) -> str:
    if name == "imports":
        imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        if not imports:
            raise KeyError("no import in the file")
        return "\n".join(lines[imports[0].lineno - 1:imports[-1].end_lineno]).rstrip()
    head = name.endswith(":head")
    node = _find(tree, name[: -len(":head")] if head else name)
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    end = node.end_lineno or node.lineno
    body = []
    if head:
        body = [n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        end = (body[0].lineno - 1) if body else end
    text = "\n".join(lines[start - 1:end]).rstrip()
    if head and body:
        text += "\n    ..."
    return textwrap.dedent(text) if dedent else text


def _find(tree: ast.AST, dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        for child in getattr(node, "body", []):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and child.name == part:
                node = child
                break
            targets = child.targets if isinstance(child, ast.Assign) else [getattr(child, "target", None)]
            if isinstance(child, (ast.Assign, ast.AnnAssign)) and any(
                    isinstance(t, ast.Name) and t.id == part for t in targets):
                node = child
                break
        else:
            raise KeyError(f"no {dotted!r} in the file")
    return node
