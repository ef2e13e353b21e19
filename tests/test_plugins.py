"""Providers are plugins: the entry-point registry, the class declaration, and a plugin package
installed with pip and driven through the command line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import psutil
import pytest

from dockerparallel import ManagedCloudProvider, ProviderOption, ProviderPlugin
from dockerparallel._cli_providers import ProviderOptionError, parse_provider_options, provider_rows
from dockerparallel.providers import (
    make_provider,
    plugin_of,
    provider_class,
    provider_label,
    registered_providers,
)
from dockerparallel.providers.docker import DockerProvider
from tests.local_fixtures import run_cli, wait_for

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PLUGIN_DIST = "dockerparallel-subprocess-provider"
UP_FLAGS = {"--provider", "--workers", "-n", "--name", "--cpu", "--memory", "--workers-per-container", "-k",
            "--image", "--host", "--port", "--dashboard-port", "--timeout", "--wait", "--no-wait", "--scheduler"}


# -- the declaration -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, error, words", [
    ({"name": "not a keyword", "help": "x"}, ValueError, "keyword"),
    ({"name": "n", "help": "x", "type": list}, TypeError, "str, int, float or bool"),
    ({"name": "n", "help": "x", "type": bool, "multiple": True}, ValueError, "bool option"),
])
def test_a_bad_option_declaration_names_the_option(kwargs: dict[str, Any], error: type[Exception],
                                                   words: str) -> None:
    with pytest.raises(error, match=words):
        ProviderOption(**kwargs)


def test_a_bad_plugin_declaration_is_refused() -> None:
    with pytest.raises(ValueError, match="plain word"):
        ProviderPlugin(name="a:b")
    with pytest.raises(ValueError, match="--x is declared twice"):
        ProviderPlugin(name="p", options=(ProviderOption("x", "one"), ProviderOption("y", "two", flag="x")))


def test_every_built_in_registers_through_the_entry_points_with_its_declared_name() -> None:
    installed = registered_providers()
    assert {"local", "docker", "ecs"} <= set(installed)
    for name in ("local", "docker", "ecs"):
        assert installed[name].distribution == "dockerparallel"
        plugin = plugin_of(provider_class(name))
        assert plugin.name == name
        flags = {option.cli_flag for option in plugin.options}
        assert not flags & UP_FLAGS, f"{name}: a provider flag would be hidden by up's own"
    assert plugin_of(DockerProvider).host_network and not plugin_of(provider_class("ecs")).host_network
    assert plugin_of(provider_class("local")).store_option == "store"


def test_a_class_that_declares_nothing_gets_the_defaults_and_a_subclass_inherits() -> None:
    class Bare(ManagedCloudProvider):  # type: ignore[misc]
        pass

    class MyDocker(DockerProvider):
        pass

    assert plugin_of(Bare) == ProviderPlugin(name="Bare")
    assert plugin_of(MyDocker) is plugin_of(DockerProvider)
    assert provider_label("somewhere.module:Thing") == "Thing"
    assert provider_label("dockerparallel.providers.docker:DockerProvider") == "docker"


def test_two_packages_registering_one_name_is_an_error_naming_both(monkeypatch: pytest.MonkeyPatch) -> None:
    group = "dockerparallel.providers"
    points = metadata.EntryPoints([
        metadata.EntryPoint("docker", "dockerparallel.providers.docker:DockerProvider", group),
        metadata.EntryPoint("docker", "other.module:OtherDocker", group),
    ])
    monkeypatch.setattr(metadata, "entry_points", lambda group: points)
    with pytest.raises(ValueError, match="registered twice.*DockerProvider.*OtherDocker"):
        provider_class("docker")


def test_a_missing_sdk_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_sdk(self: Any, **options: Any) -> None:
        raise ImportError("No module named 'docker'")

    monkeypatch.setattr(DockerProvider, "__init__", no_sdk)
    with pytest.raises(ImportError, match=r"provider 'docker' needs: pip install 'dockerparallel\[docker\]'"):
        make_provider("docker")


# -- options on the command line -----------------------------------------------------------------------


def test_provider_options_are_typed_and_only_the_given_ones_are_passed() -> None:
    assert parse_provider_options("docker", []) == {}
    assert parse_provider_options("docker", ["--no-pull", "--network", "bridge"]) == {
        "pull": False, "network_mode": "bridge"}
    assert parse_provider_options("ecs", ["--subnet", "a", "--subnet=b", "--region", "eu-west-1"]) == {
        "subnets": ["a", "b"], "region": "eu-west-1"}
    assert parse_provider_options("local", ["--grace-period", "2.5"]) == {"grace_period": 2.5}


@pytest.mark.parametrize("provider, args, words", [
    ("docker", ["--network", "bogus"], ["'docker'", "--network", "'bogus'", "'host', 'bridge'"]),
    ("docker", ["--regio", "x"], ["'docker' does not take", "--regio x", "--network host|bridge"]),
    ("local", ["--grace-period", "soon"], ["'local'", "--grace-period", "'soon'"]),
    ("local", ["stray"], ["'local' does not take 'stray'"]),
    ("ecs", ["--subnet"], ["'ecs'", "--subnet", "expected one argument"]),
])
def test_a_bad_provider_option_names_provider_flag_and_choices(provider: str, args: list[str],
                                                               words: list[str]) -> None:
    with pytest.raises(ProviderOptionError) as caught:
        parse_provider_options(provider, args)
    for word in words:
        assert word in str(caught.value)


def test_up_help_with_a_provider_lists_its_options(tmp_path: Path) -> None:
    out = run_cli(tmp_path / "s.sqlite3", "up", "--provider", "ecs", "--help").stdout
    assert "Options of provider 'ecs'" in out and "--security-group <str>..." in out
    assert "Options of provider" not in run_cli(tmp_path / "s.sqlite3", "up", "--help").stdout


def test_providers_lists_the_built_ins_as_json(tmp_path: Path) -> None:
    rows = {row["name"]: row for row in json.loads(run_cli(tmp_path / "s.sqlite3", "providers", "-o", "json").stdout)}
    assert rows["docker"]["ready"] and rows["docker"]["install"] == "dockerparallel[docker]"
    assert "--pull/--no-pull" in rows["docker"]["options"] and rows["local"]["host_network"]
    assert rows["ecs"]["path"] == "dockerparallel.providers.ecs:ECSFargateProvider"


def test_a_broken_plugin_is_shown_with_its_error_and_the_others_still_listed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    group = "dockerparallel.providers"
    points = metadata.EntryPoints([
        metadata.EntryPoint("local", "dockerparallel.providers.local:LocalProcessProvider", group),
        metadata.EntryPoint("gone", "no_such_module_here:Provider", group),
        metadata.EntryPoint("liar", "dockerparallel.providers.docker:DockerProvider", group),
    ])
    monkeypatch.setattr(metadata, "entry_points", lambda group: points)
    rows = {row.name: row for row in provider_rows()}
    assert rows["local"].ready and rows["local"].error is None
    assert "cannot be imported" in (rows["gone"].error or "")
    assert "declares the name 'docker'" in (rows["liar"].error or "")


# -- a plugin package, installed with pip ----------------------------------------------------------------


def _pip(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """examples/ as a package, installed into this test venv offline (no index, no build isolation)."""
    source = tmp_path_factory.mktemp("plugin")
    for name in ("pyproject.toml", "subprocess_provider.py"):
        shutil.copy(EXAMPLES / name, source / name)
    _pip("install", "--quiet", "--no-deps", "--no-index", "--no-build-isolation", str(source))
    try:
        yield
    finally:
        _pip("uninstall", "--quiet", "--yes", PLUGIN_DIST)


def _labelled(name: str, leaders: bool = False) -> list[psutil.Process]:
    """The processes labelled with the cluster ``name`` (only the started ones, with ``leaders``)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("DOCKERPARALLEL_CLUSTER", "").startswith(f"{name} "):
                if not leaders or os.getsid(proc.pid) == proc.pid:
                    found.append(proc)
        except (psutil.Error, OSError):
            pass
    return found


def test_an_installed_plugin_runs_through_the_cli(installed_plugin: None, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = str(Path(sys.executable).parent)  # the example runs the container's `dask` command on its PATH
    monkeypatch.setenv("PATH", bin_dir + os.pathsep + os.environ.get("PATH", ""))
    state, name = tmp_path / "state.sqlite3", f"plugin-{uuid.uuid4().hex[:6]}"
    rows = {row["name"]: row for row in json.loads(run_cli(state, "providers", "-o", "json").stdout)}
    assert rows["subprocess"]["package"] == f"{PLUGIN_DIST} 0.1.0" and rows["subprocess"]["ready"]
    out = run_cli(state, "up", "--provider", "subprocess", "--name", name, "-n", "4", "-k", "2").stdout
    try:
        assert f"cluster {name} is up with 4 worker(s)" in out
        assert len(_labelled(name, leaders=True)) == 3  # the server and two containers of two workers
        run_cli(state, "scale", name, "6", "--wait")
        [row] = json.loads(run_cli(state, "status", name, "-o", "json").stdout)
        assert (row["provider"], row["expected"], row["running"], row["connected"]) == ("subprocess", 6, 6, 6)
        assert run_cli(state, "list").stdout.split()[:2] == [name, "subprocess"]
    finally:
        assert "is down" in run_cli(state, "down", name).stdout
    wait_for(lambda: not _labelled(name), timeout=15)


def test_a_provider_class_path_works_without_registration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--provider package.module:Class`` of a class that no package registers (the example, on PYTHONPATH)."""
    monkeypatch.setenv("PYTHONPATH", str(EXAMPLES) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    state, name = tmp_path / "state.sqlite3", f"path-{uuid.uuid4().hex[:6]}"
    run_cli(state, "up", "--provider", "subprocess_provider:SubprocessProvider", "--name", name, "-n", "2")
    try:
        [row] = json.loads(run_cli(state, "status", name, "-o", "json").stdout)
        assert (row["provider"], row["running"], row["connected"]) == ("subprocess", 2, 2)
    finally:
        run_cli(state, "down", name)
    wait_for(lambda: not _labelled(name), timeout=15)
