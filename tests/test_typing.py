"""The package type-checks: it ships py.typed, so its hints are part of its API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "dockerparallel"


def test_py_typed_is_shipped() -> None:
    assert (SRC / "py.typed").exists()


def test_mypy_finds_no_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", str(SRC), "--ignore-missing-imports", "--no-error-summary"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
