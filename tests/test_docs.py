"""The documentation site builds with ``mkdocs build --strict``, and what it generates is there.

The docs packages are in the ``test`` extra, so this runs wherever the suite
does: a broken cross-reference, a docstring the API reference cannot parse,
a snippet of the tutorial that no longer exists in the example, or a chart
the benchmarks page embeds but nobody drew fails here as in ``make docs``.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CHARTS = ("scale-down", "start", "docker-start")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once for this module with ``--strict`` into a temporary directory."""
    folder = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(folder)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    return folder


def page(site: Path, name: str) -> str:
    return (site / name / "index.html").read_text(encoding="utf-8")


@pytest.mark.slow
def test_every_page_of_the_nav_is_built(site: Path) -> None:
    for name in ("getting-started", "concepts", "write-a-provider", "providers/local", "providers/docker",
                 "providers/docker-hosts", "providers/ecs", "cli", "api", "reliability", "configuration",
                 "benchmarks"):
        assert (site / name / "index.html").is_file(), name
    assert (site / "index.html").is_file()


@pytest.mark.slow
def test_cli_reference_is_generated_from_the_app(site: Path) -> None:
    import typer.main

    from dockerparallel.cli import app

    command = typer.main.get_command(app)
    context = typer.Context(command, info_name="dockerparallel")
    names = command.list_commands(context)  # type: ignore[attr-defined]
    assert names, "the app has no command"
    html = page(site, "cli")
    for name in names:
        sub = command.get_command(context, name)  # type: ignore[attr-defined]
        assert f'id="dockerparallel-{name}"' in html, f"no section for 'dockerparallel {name}'"
        for param in sub.params:
            for option in getattr(param, "opts", []):
                if option.startswith("--"):
                    assert option in html, f"'dockerparallel {name}' option {option} is not in the reference"
    assert "cli-reference" not in html


@pytest.mark.slow
def test_tutorial_shows_the_code_of_the_example(site: Path) -> None:
    html = page(site, "write-a-provider")
    assert "<!-- source:" not in html
    tree = ast.parse((ROOT / "examples" / "subprocess_provider.py").read_text(encoding="utf-8"))
    provider = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "SubprocessProvider")
    for method in ("run_docker_worker_containers", "get_docker_worker_status", "kill_docker_worker_containers",
                   "reconnect_docker_cluster"):
        assert any(isinstance(n, ast.FunctionDef) and n.name == method for n in provider.body)
        assert method in html


@pytest.mark.slow
def test_api_reference_documents_the_public_names(site: Path) -> None:
    import dockerparallel

    html = page(site, "api")
    public = [name for name in dockerparallel.__all__ if not name.startswith("_")]
    missing = [name for name in public if f'id="dockerparallel.{name}"' not in html]
    assert not missing, f"not in the API reference: {missing}"
    for name in ("dockerparallel.testing.check_provider", "dockerparallel.testing.FakeCloudProvider",
                 "dockerparallel.testing.contract.ProviderContract",
                 "dockerparallel.providers.local.LocalProcessProvider",
                 "dockerparallel.providers.docker.DockerProvider",
                 "dockerparallel.providers.ecs.ECSFargateProvider"):
        assert f'id="{name}"' in html, name


@pytest.mark.slow
def test_benchmarks_page_embeds_the_charts_and_their_tables(site: Path) -> None:
    html = page(site, "benchmarks")
    for chart in CHARTS:
        for suffix in ("svg", "png", "table.md"):
            assert (DOCS / "assets" / "charts" / f"{chart}.{suffix}").is_file(), f"{chart}.{suffix} was not drawn"
        assert f"assets/charts/{chart}.svg" in html
        assert (site / "assets" / "charts" / f"{chart}.svg").is_file()
    assert html.count("<table>") >= len(CHARTS)
    assert "--8&lt;--" not in html and "--8<--" not in html


@pytest.mark.slow
def test_configuration_page_includes_the_shipped_defaults(site: Path) -> None:
    html = page(site, "configuration")
    shipped = (ROOT / "src" / "dockerparallel" / "dockerparallel.yaml").read_text(encoding="utf-8")
    keys = re.findall(r"^\s+([a-z][a-z-]+):", shipped, flags=re.MULTILINE)
    assert keys
    for key in keys:
        assert key in html, key


def hook(name: str) -> ModuleType:
    """A module of docs/_hooks, imported by its path."""
    spec = importlib.util.spec_from_file_location(f"docs_hook_{name}", DOCS / "_hooks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_source_snippets_extract_named_code_and_refuse_a_missing_name() -> None:
    snippets = hook("source_snippets")
    source = ("import os\n\nX = 1  # one\n\n"
              "class A:\n    def f(self):\n        return 1\n\n    def g(self):\n        return 2\n")
    assert snippets.extract(source, ["X"]) == "X = 1  # one"
    assert snippets.extract(source, ["imports"]) == "import os"
    assert snippets.extract(source, ["A.f", "A.g"]) == (
        "class A:\n    def f(self):\n        return 1\n\n    def g(self):\n        return 2")
    with pytest.raises(KeyError, match="A.h"):
        snippets.extract(source, ["A.h"])


def test_sphinx_roles_become_links_to_documented_objects_only() -> None:
    roles = hook("sphinx_roles")
    content = ('<h3 id="dockerparallel.A">A</h3><p>:meth:<code>run</code> :class:<code>~dockerparallel.B</code> '
               ':mod:<code>logging</code></p><h4 id="dockerparallel.A.run">run</h4>')
    out = roles.on_page_content(content, None, None, None)
    assert '<a href="#dockerparallel.A.run"><code>run</code></a>' in out
    assert '<autoref identifier="dockerparallel.B" optional><code>B</code></autoref>' in out
    assert "<code>logging</code>" in out and ":mod:" not in out
