"""Tables -> figures like the study's: train accuracy and loss per epoch, test accuracy per row.

Files are drawn on matplotlib's Agg canvas through ``Figure`` objects, not pyplot, so writing a
report neither needs a display nor changes the backend of a notebook that imports this module.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pyramid_lab.report.collect import Run
from pyramid_lab.report.pictures import save_png
from pyramid_lab.report.tables import Table

if TYPE_CHECKING:
    from matplotlib.axes import Axes

# Metrics recorded as fractions, drawn in percent like the study's figures.
_PERCENT = ("train/acc", "val/acc", "val/acc_best")
_NAMES = {
    "train/acc": "train accuracy",
    "train/loss": "train loss",
    "val/acc": "validation accuracy",
    "val/loss": "validation loss",
    "val/acc_best": "best validation accuracy",
    "train/lr": "learning rate",
}
_PANEL_SIZE = (5.0, 3.8)  # inches per panel


def plot_curves(runs: Sequence[Run], metric: str = "train/acc", ax: Axes | None = None) -> Axes:
    """One line per run of ``metric`` against epoch, labelled by its row.

    Runs of the same row (seeds) share a colour and one legend entry. Runs without history
    (failed before their first epoch) draw nothing.

    Args:
        runs: the runs to draw, e.g. ``load_runs(dir)`` or ``table.runs``.
        metric: a per-epoch key of the history: ``train/acc``, ``train/loss``, ``val/acc``, ...
        ax: where to draw; a new pyplot figure when None (for notebooks).
    """
    if ax is None:
        import matplotlib.pyplot as plt

        ax = plt.subplots(figsize=_PANEL_SIZE, layout="constrained")[1]
    scale = 100.0 if metric in _PERCENT else 1.0
    colours: dict[str, str] = {}
    epochs_seen: set[int] = set()
    for run in runs:
        points = [
            (h["epoch"], h[metric])
            for h in run.history
            if _is_number(h.get("epoch")) and _is_number(h.get(metric))
        ]
        if not points:
            continue
        first = run.row not in colours
        colours.setdefault(run.row, f"C{len(colours) % 10}")
        epochs, values = zip(*points)
        epochs_seen.update(epochs)
        ax.plot(
            epochs,
            [scale * v for v in values],
            color=colours[run.row],
            marker="." if len(points) < 20 else None,
            label=run.row if first else None,
            alpha=0.9 if first else 0.5,
        )
    name = _NAMES.get(metric, metric)
    ax.set_xlabel("epoch")
    if len(epochs_seen) < 4:
        ax.set_xticks(sorted(epochs_seen))  # the integer locator falls back to fractions here
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"{name} (%)" if scale != 1.0 else name)
    ax.set_title(name)
    ax.grid(alpha=0.3)
    if colours:
        ax.legend(fontsize="small")
    else:
        ax.text(
            0.5,
            0.5,
            "no per-epoch history",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    return ax


def plot_test_accuracy(table: Table, ax: Axes | None = None) -> Axes:
    """Test accuracy (%) per row as bars (mean ± std over completed runs), the study's as markers."""
    if ax is None:
        import matplotlib.pyplot as plt

        ax = plt.subplots(figsize=_PANEL_SIZE, layout="constrained")[1]
    xs = range(len(table.rows))
    ours = [row.test_acc for row in table.rows]
    done = [row for row in table.rows if row.test_acc is not None]
    stds = [row.test_acc_std for row in done]
    bars = ax.bar(
        [x for x, v in zip(xs, ours) if v is not None],
        [row.test_acc for row in done],
        yerr=[s or 0.0 for s in stds] if any(s is not None for s in stds) else None,
        color="C0",
        alpha=0.8,
        capsize=3,
        label="ours",
    )
    ax.bar_label(bars, fmt="%.1f", fontsize="small")
    study = [(x, row.study) for x, row in zip(xs, table.rows) if row.study is not None]
    if study:
        ax.plot(*zip(*study), "D", color="black", label="study")
    values = [v for v in ours if v is not None] + [v for _, v in study]
    if values:
        # Bars from 0 would hide the differences that matter here (a point or two).
        ax.set_ylim(max(0.0, min(values) - 5.0), min(100.0, max(values) + 3.0))
    ax.set_xlim(-0.6, len(table.rows) - 0.4)
    labels = [row.row if row.test_acc is not None else f"{row.row}\n({row.status})" for row in table.rows]
    ax.set_xticks(
        list(xs),
        labels,
        rotation=30 if len(table.rows) > 3 else 0,
        ha="right" if len(table.rows) > 3 else "center",
        fontsize="small",
    )
    ax.set_ylabel("test acc (%)")
    ax.set_title("test accuracy")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    return ax


_VERDICT_COLOURS = {"better": "C2", "worse": "C3"}


def plot_effects(table: Table, ax: Axes | None = None) -> Axes:
    """Each row's difference from the table's baseline (points) with its 95% interval, a line at
    zero, and the study's own difference (its row − its baseline) as a marker where it has one.

    Rows that could not be compared (no test predictions) are listed without a point.
    """
    if ax is None:
        import matplotlib.pyplot as plt

        ax = plt.subplots(figsize=_PANEL_SIZE, layout="constrained")[1]
    rows = [row for row in table.rows if row.baseline is not None]
    ys = list(range(len(rows)))[::-1]  # the table's order, top to bottom
    labels = []
    for y, row in zip(ys, rows):
        effect = row.effect
        labels.append(row.row if effect is not None else f"{row.row} (not compared)")
        if effect is not None:
            colour = _VERDICT_COLOURS.get(effect.verdict, "C0")
            ax.errorbar(
                effect.delta,
                y,
                xerr=[[effect.delta - effect.ci_low], [effect.ci_high - effect.delta]],
                fmt="o",
                color=colour,
                capsize=4,
                label=effect.verdict,
            )
        if row.study_delta is not None:
            ax.plot(
                row.study_delta,
                y,
                "D",
                color="black",
                markerfacecolor="none",
                label="study",
            )
    ax.axvline(0.0, color="grey", linewidth=1)
    ax.set_yticks(ys, labels, fontsize="small")
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel(f"test accuracy − {table.baseline} (points)")
    ax.set_title(f"{table.name}: difference from {table.baseline}, 95% interval")
    ax.grid(axis="x", alpha=0.3)
    handles = dict(zip(*ax.get_legend_handles_labels()[::-1]))  # one entry per label
    if handles:
        ax.legend(handles.values(), handles.keys(), fontsize="small")
    return ax


def effects_figure(table: Table) -> Figure:
    """``<table>_effects.png``: plot_effects on a figure sized to the table's rows."""
    rows = sum(row.baseline is not None for row in table.rows)
    figure = Figure(figsize=(_PANEL_SIZE[0] * 1.4, 1.2 + 0.45 * max(rows, 2)), layout="constrained")
    plot_effects(table, ax=figure.subplots())
    return figure


def draw_table(table: Table, axes: Sequence[Axes]) -> None:
    """The three panels of one table: train accuracy, train loss, test accuracy per row."""
    plot_curves(table.runs, "train/acc", ax=axes[0])
    plot_curves(table.runs, "train/loss", ax=axes[1])
    plot_test_accuracy(table, ax=axes[2])
    axes[0].set_title(f"{table.name}: {axes[0].get_title()}")


def table_figure(table: Table) -> Figure:
    """One table's figure (three panels side by side); displays in a notebook, saves anywhere."""
    figure = Figure(figsize=(3 * _PANEL_SIZE[0], _PANEL_SIZE[1]), layout="constrained")
    draw_table(table, figure.subplots(1, 3))
    return figure


def study_figure(tables: Sequence[Table]) -> Figure:
    """Every table's panels in one figure, a row of panels per table (curves.png)."""
    figure = Figure(figsize=(3 * _PANEL_SIZE[0], _PANEL_SIZE[1] * len(tables)), layout="constrained")
    grid = figure.subplots(len(tables), 3, squeeze=False)
    for table, axes in zip(tables, grid):
        draw_table(table, axes)
    return figure


def write_figures(tables: Sequence[Table], out_dir: Path) -> tuple[Path, dict[str, Path]]:
    """Write ``<table>.png`` per table into out_dir and, for two tables or more, ``curves.png``
    with all of them. Returns the figure of every table (the table's own when there is one: a
    ``curves.png`` would be the same picture again) and each table's."""
    paths = {}
    for table in tables:
        paths[table.name] = out_dir / f"{_file_name(table.name)}.png"
        save_png(table_figure(table), paths[table.name], dpi=110)
    if len(paths) == 1:
        return next(iter(paths.values())), paths
    curves = out_dir / "curves.png"
    save_png(study_figure(tables), curves, dpi=90)
    return curves, paths


def write_effect_figures(tables: Sequence[Table], out_dir: Path) -> dict[str, Path]:
    """Write ``<table>_effects.png`` for every table with a baseline row; returns their paths."""
    paths = {}
    for table in tables:
        if table.baseline is not None and any(row.baseline is not None for row in table.rows):
            paths[table.name] = out_dir / f"{_file_name(table.name)}_effects.png"
            save_png(effects_figure(table), paths[table.name], dpi=110)
    return paths


def _file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
