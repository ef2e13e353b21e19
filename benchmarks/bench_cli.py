"""Benchmark of the command line's start-up: ``--help``, ``status --help`` and ``status`` of an empty state file.

Run: ``python benchmarks/bench_cli.py``. Exits 1 if a goal line says FAIL.

Each command runs 10 times as a new process (the console script next to
this Python, else ``python -m dockerparallel``), on a state file in a
temporary directory that holds no cluster; the wall time of each run is
measured from the parent, and the median is printed next to the median of
``python -c pass`` measured in the same run (what any Python command costs
on this machine, now), and of importing the libraries the CLI needs
(typer, which imports pydantic to coerce option values, and rich): the
part of a command's time that is dockerparallel's own is what it adds to
that. Goal: every median < 0.3 s.

What makes a command slow is what it imports: ``python -X importtime -m
dockerparallel --help`` shows it. None of these commands may import Dask
(``dockerparallel.cluster``, ``distributed``, the providers): the CLI
imports them inside the commands that need them.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _goals import exit_status, verdict  # benchmarks/ is on sys.path when a benchmark runs as a script

RUNS = 10
GOAL_SECONDS = 0.3
COMMANDS = (["--help"], ["status", "--help"], ["status"])
#: What the CLI cannot start without (typer coerces option values with pydantic): shown, not a goal.
LIBRARIES = "import typer, typer._adapters, rich.console, rich.table, sqlite3, platformdirs"


def cli_command() -> list[str]:
    """The ``dockerparallel`` console script beside this interpreter, else ``python -m dockerparallel``."""
    script = Path(sys.executable).with_name("dockerparallel")
    return [str(script)] if script.exists() else [sys.executable, "-m", "dockerparallel"]


def median_seconds(argv: list[str], env: dict[str, str], runs: int = RUNS) -> float:
    """The median wall time of ``runs`` runs of ``argv``, each checked to exit 0."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        times.append(time.perf_counter() - start)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return statistics.median(times)


def main() -> int:
    """Time the commands, print the medians and the goal line; return the exit status."""
    cli = cli_command()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "DOCKERPARALLEL_STATE": str(Path(tmp) / "state.sqlite3"), "COLUMNS": "100"}
        baseline = median_seconds([sys.executable, "-c", "pass"], env)
        libraries = median_seconds([sys.executable, "-c", LIBRARIES], env)
        medians = {" ".join(args): median_seconds([*cli, *args], env) for args in COMMANDS}
    print(f"CLI start-up, median of {RUNS} runs each ({' '.join(cli)}; empty state file)")
    print(f"  {'python -c pass':<28} {baseline:6.3f} s")
    print(f"  {'typer+pydantic+rich alone':<28} {libraries:6.3f} s   (python -c '{LIBRARIES}')")
    for command, seconds in medians.items():
        print(f"  {'dockerparallel ' + command:<28} {seconds:6.3f} s   ({seconds - baseline:+.3f} s over python -c pass)")
    slowest = max(medians, key=medians.__getitem__)
    ok = medians[slowest] < GOAL_SECONDS
    print(f"goal: every median < {GOAL_SECONDS} s (slowest: {slowest}, {medians[slowest]:.3f} s): "
          f"{verdict(ok, 'CLI start-up < 0.3 s')}")
    return exit_status()


if __name__ == "__main__":
    raise SystemExit(main())
