"""Strict runs: in CI a test that did not run and pass fails the session.

Loaded by ``tests/conftest.py``. It is active when the environment asks for
every part of the suite to run: ``CI`` set to a true value,
``DOCKERPARALLEL_REQUIRE_DOCKER=1`` or ``DOCKERPARALLEL_STRICT=1``. Then a
test that was skipped (at collection, in a fixture, in its body),
xfailed, xpassed or deselected (``-m``, ``-k``, ``--deselect``) makes the
session exit with status 1, and the tests are named with the reason.

It counts pytest's reports, not the text of the output, so colours
(``--color=yes``, ``PY_COLORS=1``), ``-r`` flags, ``-q`` or a disabled
terminal reporter (``-p no:terminal``) change nothing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pytest

#: Environment variables that turn strict runs on (``CI`` with any true value).
STRICT_VARIABLES = ("DOCKERPARALLEL_STRICT", "DOCKERPARALLEL_REQUIRE_DOCKER")
_FALSE = ("", "0", "false", "no", "off")
PLUGIN_NAME = "dockerparallel-strict"


def strict_requested(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for a strict run (CI, or every part required)."""
    if environ.get("CI", "").strip().lower() not in _FALSE:
        return True
    return any(environ.get(name) == "1" for name in STRICT_VARIABLES)


def _reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    wasxfail = getattr(report, "wasxfail", None)
    if wasxfail is not None:
        return str(wasxfail) or "marked xfail"
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: reason")
        return str(longrepr[2])
    return str(longrepr) if longrepr else "no reason given"


@dataclass(eq=False)
class StrictRun:
    """Collects every test that did not run and pass; fails the session if there is one."""

    #: (kind, node id, reason), in the order met.
    problems: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, kind: str, nodeid: str, reason: str) -> None:
        self.problems.append((kind, nodeid, reason))

    def lines(self) -> list[str]:
        counts: dict[str, int] = {}
        for kind, _, _ in self.problems:
            counts[kind] = counts.get(kind, 0) + 1
        summary = ", ".join(f"{n} {kind}" for kind, n in counts.items())
        head = (f"strict run (CI, DOCKERPARALLEL_REQUIRE_DOCKER=1 or DOCKERPARALLEL_STRICT=1): "
                f"every test must run and pass; {summary}")
        return [head] + [f"  {kind.upper()} {nodeid}: {reason}" for kind, nodeid, reason in self.problems]

    # -- hooks ----------------------------------------------------------------------------

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.skipped:  # pytest.skip / importorskip at module level
            self.add("skipped", report.nodeid, _reason(report))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if hasattr(report, "wasxfail"):
            if report.skipped:
                self.add("xfailed", report.nodeid, _reason(report))
            elif report.passed and report.when == "call":
                self.add("xpassed", report.nodeid, _reason(report))
        elif report.skipped:  # in any phase: a skip mark, a fixture or the test body
            self.add("skipped", report.nodeid, f"({report.when}) {_reason(report)}")

    def pytest_deselected(self, items: Sequence[pytest.Item]) -> None:
        for item in items:
            self.add("deselected", item.nodeid, "not selected (-m, -k, --deselect or similar)")

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.problems:
            return
        if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        config = session.config
        if config.pluginmanager.get_plugin("terminalreporter") is None:  # -p no:terminal
            capture = config.pluginmanager.get_plugin("capturemanager")
            if capture is not None:
                with capture.global_and_fixture_disabled():
                    self._write_stderr()
            else:
                self._write_stderr()

    def _write_stderr(self) -> None:
        sys.stderr.write("\n".join(self.lines()) + "\n")
        sys.stderr.flush()

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.problems:
            return
        lines = self.lines()
        terminalreporter.write_sep("=", "strict run failed", red=True, bold=True)
        for line in lines:
            terminalreporter.write_line(line, red=True)


def pytest_configure(config: pytest.Config) -> None:
    if strict_requested() and not config.pluginmanager.has_plugin(PLUGIN_NAME):
        config.pluginmanager.register(StrictRun(), PLUGIN_NAME)
