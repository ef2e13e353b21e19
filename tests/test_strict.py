"""Strict runs (tests/_strict.py): in CI a skipped, xfailed, xpassed or deselected test fails the session.

Each case runs a small inner suite in a fresh pytest process with the plugin
loaded as ``tests/conftest.py`` loads it, and checks the exit status and the
message, with and without colours, ``-r`` flags and the terminal reporter.
Also: the Hypothesis profile follows the environment.
"""

from __future__ import annotations

from pathlib import Path

import hypothesis
import pytest

from . import _strict
from .conftest import hypothesis_profile

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
_ENVIRONMENT = ("CI", "DOCKERPARALLEL_STRICT", "DOCKERPARALLEL_REQUIRE_DOCKER", "PY_COLORS", "FORCE_COLOR",
                "NO_COLOR", "PYTEST_ADDOPTS", "PYTEST_PLUGINS", "HYPOTHESIS_PROFILE")

CLEAN = """
    def test_one():
        assert True

    def test_two():
        assert 1 + 1 == 2
"""

#: One inner test per way of not running and passing; "test_fine" always passes.
INNER = {
    "skip": """
        import pytest

        def test_fine():
            pass

        @pytest.mark.skip(reason="deliberately skipped")
        def test_skipped():
            pass
    """,
    "skip in a fixture": """
        import pytest

        @pytest.fixture
        def engine():
            pytest.skip("no engine here")

        def test_fine():
            pass

        def test_needs_engine(engine):
            pass
    """,
    "skip in the body": """
        import pytest

        def test_fine():
            pass

        def test_skips_itself():
            pytest.skip("changed its mind")
    """,
    "importorskip": """
        import pytest

        pytest.importorskip("dockerparallel_no_such_module")

        def test_never_collected():
            pass
    """,
    "xfail": """
        import pytest

        def test_fine():
            pass

        @pytest.mark.xfail(reason="deliberately broken")
        def test_xfailed():
            assert False
    """,
    "xpass": """
        import pytest

        def test_fine():
            pass

        @pytest.mark.xfail(reason="thought broken")
        def test_xpassed():
            pass
    """,
}

DESELECTABLE = """
    import pytest

    def test_fine():
        pass

    @pytest.mark.docker
    def test_needs_docker():
        pass
"""

KIND = {"skip": "SKIPPED", "skip in a fixture": "SKIPPED", "skip in the body": "SKIPPED",
        "importorskip": "SKIPPED", "xfail": "XFAILED", "xpass": "XPASSED"}
#: Output options that defeated the old grep of "^SKIPPED" lines.
VARIANTS = {
    "plain": [],
    "--color=yes": ["--color=yes"],
    "-rN": ["-rN"],
    "-ra then -rN": ["-ra", "-rN"],
    "-q": ["-q"],
}


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester whose runs load the plugin from this checkout, in a neutral environment."""
    for name in _ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # the inner suite needs no installed plugin
    pytester.makeini("[pytest]\nmarkers =\n    docker: needs a Docker Engine\n")
    pytester.makeconftest('pytest_plugins = ["tests._strict"]\n')
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=120)


def assert_refused(result: pytest.RunResult, kind: str, test: str) -> None:
    output = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, output
    assert "strict run" in output, output
    assert any(kind in line and test in line for line in output.splitlines()), output


STRICT_SETTINGS = ["CI=true", "DOCKERPARALLEL_REQUIRE_DOCKER=1", "DOCKERPARALLEL_STRICT=1"]


@pytest.mark.parametrize(("case", "variable"),
                         [(case, STRICT_SETTINGS[i % 3]) for i, case in enumerate(sorted(INNER))])
def test_a_test_that_did_not_run_and_pass_fails_a_strict_run(inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                               case: str, variable: str) -> None:
    name, value = variable.split("=")
    monkeypatch.setenv(name, value)
    inner.makepyfile(test_inner=INNER[case])
    test = "test_inner.py" if case == "importorskip" else "test_inner.py::test_"
    assert_refused(run(inner), KIND[case], test)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_output_options_and_colours_change_nothing(inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                   variant: str) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("PY_COLORS", "1")
    monkeypatch.setenv("FORCE_COLOR", "1")
    inner.makepyfile(test_inner=INNER["skip"])
    assert_refused(run(inner, *VARIANTS[variant]), "SKIPPED", "test_inner.py::test_skipped")


def test_without_the_terminal_reporter_the_status_and_a_line_on_stderr_remain(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "1")
    inner.makepyfile(test_inner=INNER["xfail"])
    result = run(inner, "-p", "no:terminal")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "XFAILED test_inner.py::test_xfailed: deliberately broken" in result.stderr.str()


@pytest.mark.parametrize("selection", [["-m", "not docker"], ["-k", "fine"],
                                       ["--deselect", "test_inner.py::test_needs_docker"]])
def test_deselected_tests_fail_a_strict_run(inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                            selection: list[str]) -> None:
    monkeypatch.setenv("DOCKERPARALLEL_REQUIRE_DOCKER", "1")
    inner.makepyfile(test_inner=DESELECTABLE)
    assert_refused(run(inner, *selection), "DESELECTED", "test_inner.py::test_needs_docker")


def test_deselecting_every_test_fails_a_strict_run(inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    inner.makepyfile(test_inner=DESELECTABLE)
    result = run(inner, "-m", "not docker and not fine", "--color=yes")
    assert result.ret != pytest.ExitCode.OK
    assert "DESELECTED" in result.stdout.str()


@pytest.mark.parametrize("variable", ["CI=true", "DOCKERPARALLEL_REQUIRE_DOCKER=1"])
def test_a_clean_suite_passes_a_strict_run(inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                           variable: str) -> None:
    name, value = variable.split("=")
    monkeypatch.setenv(name, value)
    inner.makepyfile(test_inner=CLEAN)
    result = run(inner, "--color=yes", "-ra")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert "strict run" not in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize("case", ["skip", "xfail"])
def test_outside_ci_skips_and_xfails_are_allowed(inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                 case: str) -> None:
    monkeypatch.setenv("CI", "false")
    monkeypatch.setenv("DOCKERPARALLEL_REQUIRE_DOCKER", "0")
    inner.makepyfile(test_inner=INNER[case])
    result = run(inner)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()


@pytest.mark.parametrize(("environ", "strict"), [
    ({}, False), ({"CI": "true"}, True), ({"CI": "1"}, True), ({"CI": "yes"}, True), ({"CI": "false"}, False),
    ({"CI": "0"}, False), ({"CI": ""}, False), ({"DOCKERPARALLEL_REQUIRE_DOCKER": "1"}, True),
    ({"DOCKERPARALLEL_REQUIRE_DOCKER": "0"}, False), ({"DOCKERPARALLEL_STRICT": "1"}, True),
])
def test_which_environments_are_strict(environ: dict[str, str], strict: bool) -> None:
    assert _strict.strict_requested(environ) is strict


def test_the_suite_itself_loads_the_plugin(request: pytest.FixtureRequest) -> None:
    manager = request.config.pluginmanager
    assert manager.has_plugin("tests._strict")
    assert manager.has_plugin(_strict.PLUGIN_NAME) is _strict.strict_requested()


# -- Hypothesis profiles -------------------------------------------------------------------------


@pytest.mark.parametrize(("environ", "profile"), [
    ({}, "dev"), ({"CI": "true"}, "ci"), ({"DOCKERPARALLEL_REQUIRE_DOCKER": "1"}, "ci"),
    ({"CI": "true", "HYPOTHESIS_PROFILE": "dev"}, "dev"), ({"HYPOTHESIS_PROFILE": "ci"}, "ci"),
])
def test_the_hypothesis_profile_follows_the_environment(environ: dict[str, str], profile: str) -> None:
    assert hypothesis_profile(environ) == profile


def test_the_ci_profile_is_derandomized_and_the_dev_profile_random() -> None:
    ci, dev = hypothesis.settings.get_profile("ci"), hypothesis.settings.get_profile("dev")
    assert ci.derandomize and ci.max_examples == 100 and ci.deadline is None and ci.print_blob
    assert not dev.derandomize


def test_the_loaded_profile_is_the_environment_s() -> None:
    loaded = hypothesis.settings.default
    assert loaded is not None
    expected = hypothesis.settings.get_profile(hypothesis_profile())
    assert (loaded.derandomize, loaded.max_examples, loaded.deadline) == \
        (expected.derandomize, expected.max_examples, expected.deadline)
