"""Tables -> figures like the study's: train accuracy and loss per epoch, test accuracy per row.

Files are drawn on matplotlib's Agg canvas through ``Figure`` objects, not pyplot, so writing a
report neither needs a display nor changes the backend of a notebook that imports this module.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

from pyramid_lab.errors import is_finite_number
from pyramid_lab.report.collect import Run
from pyramid_lab.report.significance import t_interval
from pyramid_lab.report.tables import Row, Table
from pyramid_lab.runs.atomic import atomic_path
from pyramid_lab.runs.pictures import save_png

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
_LEGEND_INSIDE = 6  # rows whose legend fits inside a panel without hiding its curves


def plot_curves(runs: Sequence[Run], metric: str = "train/acc", ax: Axes | None = None) -> Axes:
    """``metric`` against epoch: a line per run, or per row (mean and range) when there are many.

    Up to ``MAX_CURVE_LINES`` runs with history: one line per run, runs of the same row (seeds)
    sharing a colour and one legend entry. More runs (a sweep of thousands): each row's mean over
    its runs as a line and its min-max range as a band, for the first ``MAX_CURVE_ROWS`` rows (the
    figure says how many more there are), so that drawing costs the same for 100 runs or 100,000.
    Runs without history (failed before their first epoch) draw nothing; non-finite values (a
    diverged run's NaN loss) leave a gap.

    Args:
        runs: the runs to draw, e.g. ``load_runs(dir)`` or ``table.runs``.
        metric: a per-epoch key of the history: ``train/acc``, ``train/loss``, ``val/acc``, ...
        ax: where to draw; a new pyplot figure when None (for notebooks).
    """
    if ax is None:
        import matplotlib.pyplot as plt

        ax = plt.subplots(figsize=_PANEL_SIZE, layout="constrained")[1]
    scale = 100.0 if metric in _PERCENT else 1.0
    curves = _curves_by_row(runs, metric, scale)
    drawn = sum(len(row_curves) for row_curves in curves.values())
    if drawn <= MAX_CURVE_LINES:
        _draw_each_run(curves, ax)
    else:
        _draw_row_ranges(curves, ax)
    epochs_seen = {e for row_curves in curves.values() for epochs, _ in row_curves for e in epochs}
    name = _NAMES.get(metric, metric)
    ax.set_xlabel("epoch")
    if len(epochs_seen) < 4:
        ax.set_xticks(sorted(epochs_seen))  # the integer locator falls back to fractions here
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"{name} (%)" if scale != 1.0 else name)
    ax.set_title(name)
    ax.grid(alpha=0.3)
    rows_shown = len(curves) if drawn <= MAX_CURVE_LINES else min(len(curves), MAX_CURVE_ROWS)
    if rows_shown > _LEGEND_INSIDE:
        # Many rows (a search's trials): beside the panel, in columns, rather than over the curves.
        ax.legend(
            fontsize="x-small",
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            borderaxespad=0.0,
            ncols=-(-rows_shown // 12),
        )
    elif curves:
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


# Curves drawn per run up to this many runs in a panel; beyond, a mean line and band per row.
MAX_CURVE_LINES = 40
# Rows drawn (mean and range) in a panel of many runs; ten colours repeat beyond ten anyway.
MAX_CURVE_ROWS = 20
# Tables drawn in curves.png (every table still gets its own <table>.png).
MAX_STUDY_TABLES = 20


def _curves_by_row(runs: Sequence[Run], metric: str, scale: float) -> dict[str, list[tuple[list, list]]]:
    """Per row, in the runs' order: each run's (epochs, values) with finite numbers only."""
    curves: dict[str, list[tuple[list, list]]] = {}
    for run in runs:
        points = [
            (h["epoch"], scale * h[metric])
            for h in run.history
            if is_finite_number(h.get("epoch")) and is_finite_number(h.get(metric))
        ]
        if points:
            epochs, values = zip(*points)
            curves.setdefault(run.row, []).append((list(epochs), list(values)))
    return curves


def _draw_each_run(curves: dict[str, list[tuple[list, list]]], ax: Axes) -> None:
    for number, (row, row_curves) in enumerate(curves.items()):
        for index, (epochs, values) in enumerate(row_curves):
            ax.plot(
                epochs,
                values,
                color=f"C{number % 10}",
                marker="." if len(epochs) < 20 else None,
                label=row if index == 0 else None,
                alpha=0.9 if index == 0 else 0.5,
            )


def _draw_row_ranges(curves: dict[str, list[tuple[list, list]]], ax: Axes) -> None:
    """Each row's mean over its runs per epoch (a line) and its min-max range (a band)."""
    for number, (row, row_curves) in enumerate(list(curves.items())[:MAX_CURVE_ROWS]):
        epochs = np.concatenate([np.asarray(e, dtype=float) for e, _ in row_curves])
        values = np.concatenate([np.asarray(v, dtype=float) for _, v in row_curves])
        unique, which = np.unique(epochs, return_inverse=True)
        mean = np.bincount(which, weights=values) / np.bincount(which)
        low, high = np.full(len(unique), np.inf), np.full(len(unique), -np.inf)
        np.minimum.at(low, which, values)
        np.maximum.at(high, which, values)
        colour = f"C{number % 10}"
        label = f"{row} (mean of {len(row_curves)}, range)" if len(row_curves) > 1 else row
        ax.plot(unique, mean, color=colour, label=label)
        if len(row_curves) > 1:
            ax.fill_between(unique, low, high, color=colour, alpha=0.2, linewidth=0)
    if len(curves) > MAX_CURVE_ROWS:
        ax.text(
            0.99,
            0.01,
            f"first {MAX_CURVE_ROWS} of {len(curves)} rows (all in results.md)",
            ha="right",
            va="bottom",
            fontsize="small",
            transform=ax.transAxes,
        )


def plot_test_accuracy(table: Table, ax: Axes | None = None) -> Axes:
    """Test accuracy (%) per row as a dot plot: every completed run a dot, the row's mean a bar,
    and from three runs on the 95% t-interval of the mean over the runs (with two, the dots show
    the range; no ± std of two numbers); the study's number as a diamond. The axis always holds
    every dot and interval whole."""
    if ax is None:
        import matplotlib.pyplot as plt

        ax = plt.subplots(figsize=_PANEL_SIZE, layout="constrained")[1]
    seen: set[str] = set()

    def once(label: str) -> str | None:
        first = label not in seen
        seen.add(label)
        return label if first else None

    extent: list[float] = []
    for x, row in enumerate(table.rows):
        values = _run_accuracies(row)
        if not values:
            continue
        spread = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
        ax.plot(x + spread, values, "o", color="C0", alpha=0.6, markersize=4, label=once("each run"))
        mean = float(np.mean(values))
        if len(values) >= 3:
            low, high = t_interval(values, 0.95)
            ax.errorbar(
                x,
                mean,
                yerr=[[mean - low], [high - mean]],
                fmt="_",
                color="black",
                markersize=16,
                capsize=4,
                label=once("mean, 95% t-interval over runs"),
            )
            extent += [low, high]
        else:
            ax.plot(
                x, mean, "_", color="black", markersize=16, label=once("mean (under 3 runs: no interval)")
            )
        ax.annotate(f"{mean:.1f}", (x, mean), xytext=(10, 0), textcoords="offset points", fontsize="small")
        extent += values
    study = [(x, row.study) for x, row in enumerate(table.rows) if row.study is not None]
    if study:
        ax.plot(*zip(*study), "D", color="black", markerfacecolor="none", label="study")
        extent += [v for _, v in study]
    if extent:
        pad = max(0.5, 0.08 * (max(extent) - min(extent)))
        ax.set_ylim(min(extent) - pad, max(extent) + pad)
    ax.set_xlim(-0.6, len(table.rows) - 0.4)
    labels = [row.row if row.test_acc is not None else f"{row.row}\n({row.status})" for row in table.rows]
    # Upright labels for a few rows, slanted for more, vertical for many (a search's trials).
    rotation = 0 if len(table.rows) <= 3 else 30 if len(table.rows) <= 8 else 90
    ax.set_xticks(
        list(range(len(table.rows))),
        labels,
        rotation=rotation,
        ha="right" if rotation == 30 else "center",
        fontsize="small",
    )
    ax.set_ylabel("test acc (%)")
    ax.set_title("test accuracy (each run; axis not from 0)")
    ax.grid(axis="y", alpha=0.3)
    if (seen or study) and len(table.rows) > _LEGEND_INSIDE:
        # Many rows (a search's trials) leave no free corner: the legend goes beside the panel.
        ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    elif seen or study:
        ax.legend(fontsize="small")
    return ax


def _run_accuracies(row: Row) -> list[float]:
    """The row's completed runs' test accuracies in % (a snapshot ensemble's row: the ensembles')."""
    values = [run.test_acc_ensemble if row.ensemble_of is not None else run.test_acc for run in row.completed]
    return [100.0 * v for v in values if v is not None]


_VERDICT_COLOURS = {"better": "C2", "worse": "C3"}


def plot_effects(table: Table, ax: Axes | None = None, rows: Sequence[Row] | None = None) -> Axes:
    """Each row's difference from the table's baseline (points): every seed pair's delta as a dot,
    the mean with its Holm-adjusted t-interval (coloured by the verdict), a line at zero, and the
    study's own difference as an open diamond where it has one.

    A row with one seed pair has no recipe interval: its delta is drawn hollow. Rows that could not
    be compared (no test predictions) are listed without a point.

    Args:
        rows: the rows to draw; default the table's own rows (snapshot ensembles are another
            comparison: ``effects_figure`` draws them in a panel of their own).
    """
    if ax is None:
        import matplotlib.pyplot as plt

        ax = plt.subplots(figsize=_PANEL_SIZE, layout="constrained")[1]
    rows = [row for row in (table.main_rows if rows is None else rows) if row.baseline is not None]
    ys = list(range(len(rows)))[::-1]  # the table's order, top to bottom
    labels = []
    for y, row in zip(ys, rows):
        effect = row.effect
        name = f"{row.ensemble_of} ensemble" if row.ensemble_of is not None else row.row
        labels.append(name if effect is not None else f"{name} (not compared)")
        if effect is None:
            continue
        ax.plot(effect.deltas, [y + 0.18] * effect.pairs, ".", color="grey", alpha=0.7, label="each seed")
        if effect.ci_low is None or effect.ci_high is None:
            ax.plot(effect.delta, y, "o", color="C0", markerfacecolor="none", label="one seed: no interval")
        else:
            ax.errorbar(
                effect.delta,
                y,
                xerr=[[effect.delta - effect.ci_low], [effect.ci_high - effect.delta]],
                fmt="o",
                color=_VERDICT_COLOURS.get(effect.verdict, "C0"),
                capsize=4,
                label=effect.verdict,
            )
        if row.study_delta is not None:
            ax.plot(row.study_delta, y, "D", color="black", markerfacecolor="none", label="study")
    ax.axvline(0.0, color="grey", linewidth=1)
    ax.set_yticks(ys, labels, fontsize="small")
    ax.set_ylim(-0.7, max(len(rows), 1) - 0.3)
    ensembles = bool(rows) and rows[0].ensemble_of is not None
    ax.set_xlabel(
        f"test acc − {'its single model' if ensembles else table.baseline} (points), "
        "Holm-adjusted t-interval over seeds"
    )
    ax.set_title(
        f"{table.name}: snapshot ensemble vs single model (own Holm family)"
        if ensembles
        else f"{table.name}: difference from {table.baseline}"
    )
    ax.grid(axis="x", alpha=0.3)
    handles = dict(zip(*ax.get_legend_handles_labels()[::-1]))  # one entry per label
    if handles:
        ax.legend(handles.values(), handles.keys(), fontsize="small")
    return ax


def effects_figure(table: Table) -> Figure:
    """``<table>_effects.png``: plot_effects on a figure sized to the table's rows; snapshot
    ensembles (against their single models, a Holm family of their own) in a panel below."""
    main = [row for row in table.main_rows if row.baseline is not None]
    panels = [rows for rows in (main, list(table.ensemble_rows)) if rows]
    heights = [1.0 + 0.45 * max(len(rows), 2) for rows in panels]
    figure = Figure(figsize=(_PANEL_SIZE[0] * 1.7, 0.4 + sum(heights)), layout="constrained")
    axes = figure.subplots(len(panels), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, rows in zip(axes, panels):
        plot_effects(table, ax=ax, rows=rows)
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
    """Every table's panels in one figure, a row of panels per table (curves.png); the first
    ``MAX_STUDY_TABLES`` tables when there are more (the figure's title says so)."""
    shown = list(tables)[:MAX_STUDY_TABLES]
    figure = Figure(figsize=(3 * _PANEL_SIZE[0], _PANEL_SIZE[1] * len(shown)), layout="constrained")
    grid = figure.subplots(len(shown), 3, squeeze=False)
    for table, axes in zip(shown, grid):
        draw_table(table, axes)
    if len(tables) > len(shown):
        figure.suptitle(f"the first {len(shown)} of {len(tables)} tables; each has its own <table>.png")
    return figure


def write_figures(tables: Sequence[Table], out_dir: Path) -> tuple[Path, dict[str, Path]]:
    """Write ``<table>.png`` per table into out_dir and, for two tables or more, ``curves.png``.
    Returns the figure of every table (the table's own when there is one: a ``curves.png`` would
    be the same picture again) and each table's.

    Each table is drawn once: curves.png is the first ``MAX_STUDY_TABLES`` tables' images stacked
    (the picture :func:`study_figure` draws, without drawing every table a second time).
    """
    paths: dict[str, Path] = {}
    stacked: np.ndarray | None = None  # RGBA rows of curves.png, filled table by table
    shown = min(len(tables), MAX_STUDY_TABLES)
    for number, table in enumerate(tables):
        paths[table.name] = out_dir / f"{_file_name(table.name)}.png"
        figure = table_figure(table)
        figure.set_dpi(110)
        canvas = FigureCanvasAgg(figure)
        canvas.draw()
        image = np.asarray(canvas.buffer_rgba())
        _save_image(image, paths[table.name])
        if number < shown:
            if stacked is None:
                stacked = np.empty((shown * image.shape[0], *image.shape[1:]), dtype=np.uint8)
            height = image.shape[0]
            stacked[number * height : (number + 1) * height] = image
    if len(paths) == 1:
        return next(iter(paths.values())), paths
    curves = out_dir / "curves.png"
    if stacked is not None:
        _save_image(stacked, curves)
    return curves, paths


def _save_image(image: np.ndarray, path: Path) -> None:
    # Image.frombuffer shares an RGBA array's memory: no copy of a tall curves.png.
    height, width = image.shape[:2]
    picture = Image.frombuffer("RGBA", (width, height), np.ascontiguousarray(image), "raw", "RGBA", 0, 1)
    with atomic_path(path) as tmp:
        picture.save(tmp, format="png")


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
