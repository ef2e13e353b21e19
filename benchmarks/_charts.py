"""Charts of the benchmarks, for the documentation (matplotlib, Agg backend).

Each benchmark takes ``--charts DIR`` (default: ``docs/assets/charts`` of this
repository; ``--no-charts`` draws nothing) and, when matplotlib imports,
calls one function of this module with the figures it measured. Each
function writes ``DIR/<name>.svg``, ``DIR/<name>.png`` and
``DIR/<name>.table.md`` (the same figures as a Markdown table, which the
benchmarks page includes), and returns the paths written.

The SVG files carry no date and a fixed hash salt, so drawing the same
figures twice gives the same bytes. matplotlib is the ``bench`` extra:
``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

#: Where the charts go by default: the documentation's assets, whatever the working directory.
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "docs" / "assets" / "charts"

#: One colour per series, the same on every chart (matplotlib's default cycle, colour-blind safe enough).
OURS, THEIRS, OTHER = "#1f77b4", "#d62728", "#7f7f7f"


def add_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--charts DIR`` and ``--no-charts`` to a benchmark's command line."""
    parser.add_argument("--charts", metavar="DIR", type=Path, default=DEFAULT_DIR,
                        help=f"write the charts (SVG, PNG) and their tables here (default: {DEFAULT_DIR})")
    parser.add_argument("--no-charts", dest="charts", action="store_const", const=None,
                        help="draw no chart")


def available() -> bool:
    """Whether matplotlib imports (the charts are drawn only then)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def draw(name: str, folder: Path | None, function: Any, *args: Any, **kwargs: Any) -> list[Path]:
    """Call ``function(*args, folder=folder, **kwargs)`` if charts are asked for and matplotlib imports.

    Prints the paths written, or why nothing was drawn.
    """
    if folder is None:
        return []
    if not available():
        print(f"chart {name}: not drawn (matplotlib is not installed: pip install -e '.[bench]')")
        return []
    written: list[Path] = function(*args, folder=folder, **kwargs)
    print(f"chart {name}: wrote {', '.join(str(path) for path in written)}")
    return written


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "svg.hashsalt": "dockerparallel",  # stable ids: the same figures give the same file
        "svg.fonttype": "path",
        "font.size": 10,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "figure.facecolor": "white",
        "axes.facecolor": "white",
        "savefig.facecolor": "white",
    })
    return plt


def _save(figure: Any, folder: Path, name: str, table: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    svg, png, md = folder / f"{name}.svg", folder / f"{name}.png", folder / f"{name}.table.md"
    figure.tight_layout()
    figure.savefig(svg, format="svg", metadata={"Date": None})
    figure.savefig(png, format="png", dpi=144, metadata={"Software": None})
    md.write_text(table, encoding="utf-8")
    figure.clf()
    import matplotlib.pyplot as plt

    plt.close(figure)
    return [svg, png, md]


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    rule = "|" + "|".join(" ---: " if column else " --- " for column in range(len(header))) + "|"
    lines = ["| " + " | ".join(header) + " |", rule]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _seconds(value: float) -> str:
    """A time for a table: ms below one second, else seconds."""
    if value < 1:
        return f"{value * 1000:.2f} ms"
    return f"{value:.2f} s"


# -- scale-down selection ---------------------------------------------------------------------------


def scale_down_chart(rows: Sequence[tuple[str, int, float, str]], folder: Path = DEFAULT_DIR) -> list[Path]:
    """Time to choose the handles of a scale-down against the number of handles N, log-log.

    Parameters
    ----------
    rows : sequence of (method, n, seconds, kind)
        ``method`` is ``"ours"`` or ``"table"`` (the per-handle O(n·W) table
        DP, which is what the R original's ``adagio::knapsack`` call does);
        ``kind`` is ``"measured"`` or ``"extrapolated"``. Extrapolated points
        are drawn hollow on a dashed line.
    folder : Path
        Where ``scale-down.svg``, ``.png`` and ``.table.md`` go.
    """
    plt = _pyplot()
    labels = {"ours": ("dockerparallel (grouped bounded subset-sum)", OURS, "o"),
              "table": ("per-handle table DP, O(n·W), as the R original's knapsack", THEIRS, "s")}
    figure, axes = plt.subplots(figsize=(7.0, 4.2))
    for method, (label, colour, marker) in labels.items():
        points = sorted((n, s, kind) for m, n, s, kind in rows if m == method)
        if not points:
            continue
        measured = [(n, s) for n, s, kind in points if kind == "measured"]
        guessed = [(n, s) for n, s, kind in points if kind != "measured"]
        if measured:
            axes.plot(*zip(*measured), color=colour, marker=marker, label=f"{label}, measured")
        if guessed:
            start = measured[-1:] if measured else []
            axes.plot(*zip(*(start + guessed)), color=colour, linestyle="--", linewidth=1)
            axes.plot(*zip(*guessed), color=colour, marker=marker, linestyle="none", markerfacecolor="white",
                      label=f"{label}, extrapolated")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("handles N (1 to 8 workers each)")
    axes.set_ylabel("seconds to choose what to kill")
    axes.set_title("Scale-down by W = 4096 workers: choosing the handles (log-log)")
    axes.legend(fontsize=8, loc="center right")
    ours = {n: s for m, n, s, _ in rows if m == "ours"}
    table = {n: (s, kind) for m, n, s, kind in rows if m == "table"}
    text_rows = []
    for n in sorted(set(ours) | set(table)):
        mine, (theirs, kind) = ours.get(n), table.get(n, (None, ""))
        ratio = f"{theirs / mine:,.0f}x" if mine and theirs else "-"
        text_rows.append((f"{n:,}", _seconds(mine) if mine else "-",
                          (_seconds(theirs) + (" (extrapolated)" if kind != "measured" else "")) if theirs else "-",
                          ratio))
    return _save(figure, folder, "scale-down",
                 _table(("handles N", "dockerparallel", "table DP (R's knapsack)", "ratio"), text_rows))


# -- time to N workers on Docker ----------------------------------------------------------------------


def docker_start_chart(rows: Sequence[tuple[str, float, float]], workers: int = 16,
                       folder: Path = DEFAULT_DIR, note: str = "") -> list[Path]:
    """Seconds until ``workers`` Dask workers are connected, per way of starting the containers.

    Parameters
    ----------
    rows : sequence of (variant, containers started, workers connected)
        Seconds from the start of the launch until the launch command returned
        and until every worker was connected, one row per variant
        (``"DockerProvider"``, ``"docker run loop"``, ``"docker-compose --scale"``).
    workers : int
        How many workers each variant starts.
    folder : Path
        Where ``docker-start.svg``, ``.png`` and ``.table.md`` go.
    note : str
        Added to the axis label, e.g. where the figures come from.
    """
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7.0, 1.4 + 0.75 * max(1, len(rows))))
    names = [name for name, _, _ in rows]
    colours = [OURS if name == "DockerProvider" else THEIRS if "run" in name else OTHER for name in names]
    positions = list(range(len(rows)))[::-1]
    axes.barh(positions, [connected for _, _, connected in rows], color=colours, alpha=0.85,
              label=f"{workers} workers connected")
    axes.barh(positions, [started for _, started, _ in rows], color="none", edgecolor="black", hatch="//",
              linewidth=0.8, label="launch command returned")
    for y, (_, _, connected) in zip(positions, rows):
        axes.text(connected, y, f" {connected:.2f} s", va="center", fontsize=9)
    axes.set_yticks(positions, names)
    axes.set_xlabel("seconds from the launch (scheduler already running" + (f"; {note})" if note else ")"))
    axes.set_title(f"Time to {workers} Dask workers on one Docker Engine", fontsize=11)
    axes.set_xlim(0, max([connected for _, _, connected in rows] + [1]) * 1.2)
    axes.grid(axis="y", visible=False)
    axes.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.24), ncol=2, frameon=False)
    ours = {name: connected for name, _, connected in rows}.get("DockerProvider")
    table = [(name, f"{started:.2f} s", f"{connected:.2f} s", f"{ours / connected:.2f}" if ours else "-")
             for name, started, connected in rows]
    return _save(figure, folder, "docker-start",
                 _table(("variant", "launch returned", f"{workers} workers connected", "DockerProvider / this"),
                        table))


# -- sequential vs early start ------------------------------------------------------------------------


def start_chart(rows: Sequence[tuple[str, float, float]], boot: float = 1.0,
                local: tuple[float, float] | None = None, folder: Path = DEFAULT_DIR) -> list[Path]:
    """Time to a running cluster: the early start against the sequential start it replaced.

    Parameters
    ----------
    rows : sequence of (case, early seconds, sequential seconds)
        One row per cluster size on the fake cloud, e.g. ``("8 workers", 1.02, 2.03)``.
    boot : float
        Seconds every container takes to boot on the fake cloud (drawn as
        the lines at 1 x and 2 x boot).
    local : (float, float), optional
        Seconds to 4 connected workers on local processes: dockerparallel and
        ``distributed.LocalCluster``, drawn as a second panel.
    folder : Path
        Where ``start.svg``, ``.png`` and ``.table.md`` go.
    """
    plt = _pyplot()
    panels = 2 if local else 1
    figure, axes_list = plt.subplots(1, panels, figsize=(7.5 if panels == 2 else 5.0, 3.8),
                                     gridspec_kw={"width_ratios": [2, 1]} if panels == 2 else None,
                                     squeeze=False)
    axes = axes_list[0][0]
    width = 0.38
    xs = list(range(len(rows)))
    early = axes.bar([x - width / 2 for x in xs], [e for _, e, _ in rows], width, color=OURS, label="early start")
    seq = axes.bar([x + width / 2 for x in xs], [s for _, _, s in rows], width, color=THEIRS, alpha=0.8,
                   label="sequential start")
    axes.bar_label(early, fmt="%.2f s", fontsize=8)
    axes.bar_label(seq, fmt="%.2f s", fontsize=8)
    for multiple, style in ((1, ":"), (2, "--")):
        axes.axhline(multiple * boot, color=OTHER, linestyle=style, linewidth=1)
        axes.annotate(f"{multiple} x boot", (1.0, multiple * boot), xycoords=("axes fraction", "data"),
                      xytext=(3, 0), textcoords="offset points", va="center", ha="left", fontsize=8,
                      color="#555555", annotation_clip=False)
    axes.set_xticks(xs, [case for case, _, _ in rows])
    axes.set_ylabel("seconds until every worker runs")
    axes.set_title(f"Fake cloud, every container boots in {boot:g} s", fontsize=10)
    axes.set_ylim(0, max([s for _, _, s in rows] + [2 * boot]) * 1.25)
    axes.grid(axis="x", visible=False)
    axes.legend(fontsize=8, loc="upper left")
    table = [(case, f"{e:.3f} s ({e / boot:.2f} x boot)", f"{s:.3f} s ({s / boot:.2f} x boot)")
             for case, e, s in rows]
    text = _table(("fake cloud, boot " + f"{boot:g} s", "early start", "sequential start"), table)
    if local:
        ours, theirs = local
        right = axes_list[0][1]
        bars = right.bar([0, 1], [ours, theirs], 0.6, color=[OURS, OTHER])
        right.bar_label(bars, fmt="%.2f s", fontsize=8)
        right.set_xticks([0, 1], ["dockerparallel", "LocalCluster"], fontsize=8)
        right.set_ylabel("seconds until 4 workers connect")
        right.set_title("Local processes", fontsize=10)
        right.set_ylim(0, max(ours, theirs) * 1.3)
        right.grid(axis="x", visible=False)
        text += "\n" + _table(("local processes, 4 workers", "dockerparallel", "LocalCluster", "ratio"),
                              [("time to 4 workers connected", f"{ours:.3f} s", f"{theirs:.3f} s",
                                f"{ours / theirs:.2f}")])
    figure.suptitle("Starting a cluster: one boot, not two", fontsize=11)
    return _save(figure, folder, "start", text)
