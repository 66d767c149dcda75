"""Tables -> text: aligned Markdown (results.md and the terminal) and CSV (results.csv)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from pyramid_lab.report.figures import MAX_STUDY_TABLES
from pyramid_lab.report.render_effects import (
    EFFECT_NOTE,
    detectable_text,
    effects_table,
    per_class_table,
    pictures_list,
    study_claims_text,
)
from pyramid_lab.report.tables import Row, Table

COLUMNS = (
    "row",
    "test acc (%)",
    "best val acc (%)",
    "n",
    "study (%)",
    "Δ vs study (pts)",
    "params",
    "epochs",
    "wall time",
    "status",
    "error",
)
CSV_COLUMNS = (
    "table",
    "row",
    "n_completed",
    "n_not_completed",
    "test_acc_pct",
    "test_acc_pct_std",
    "val_acc_best_pct",
    "val_acc_best_pct_std",
    "study_test_acc_pct",
    "diff_pts",
    "baseline",
    "delta",
    "delta_ci_low",
    "delta_ci_high",
    "p_value",
    "p_value_raw",
    "verdict",
    "n_pairs",
    "ci_level",
    "delta_per_seed",
    "mcnemar_p_per_seed",
    "study_delta_pts",
    "params",
    "epochs_min",
    "epochs_max",
    "wall_time_s",
    "status",
    "error",
)
NOTE = (
    "Accuracies in %: mean over a row's completed runs (n of them, a duplicated run counted once), "
    "± sample std from 3 runs on, (lowest–highest) with 2; Δ = ours − the study's test accuracy, in "
    "points; wall time per run (mean). Runs that did not complete are never averaged in: their "
    "status and reason are in the last columns. Best val acc is blank (merge_val) where the row "
    "trained on its validation images: it is no held-out number there."
)

SKIPPED_NOTE = (
    "Files that could not be used, each with the reason: a run whose metrics.json is skipped is "
    "missing from the tables above; a run whose test_predictions.npz is skipped is in them but "
    "not compared with its baseline."
)


def markdown_table(table: Table) -> str:
    """The table as aligned Markdown: readable as plain text in a terminal too."""
    cells = [COLUMNS, *(_cells(row) for row in table.rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |" for line in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def terminal_text(tables: Sequence[Table]) -> str:
    """What the report prints: each table under its name, then its rows against its baseline."""
    parts = []
    for table in tables:
        text = f"{table.name} ({len(table.runs)} runs)\n{markdown_table(table)}"
        effects = effects_table(table, _md)
        if effects:
            text += f"\nagainst {table.baseline}:\n{effects}"
        parts.append(text)
    return "\n\n".join(parts)


def readings_text(table: Table) -> str:
    """What each row runs, as the table's block says (conf/experiment/table*.yaml); empty without."""
    facts = {} if table.block is None else table.block.rows
    said = [(row.row, facts[row.row].reading) for row in table.main_rows if row.row in facts]
    lines = [f"{_md(row)}: {_md(reading)}" for row, reading in said if reading]
    return "What each row runs: " + "; ".join(lines) + "." if lines else ""


def markdown_document(
    tables: Sequence[Table],
    source: Path,
    figures: dict[str, Path],
    problems: Sequence[str],
    effect_figures: dict[str, Path] | None = None,
    out_dir: Path | None = None,
) -> str:
    """results.md: a section per table (its rows, each row against the baseline, per-class
    accuracy, figures, links to each run's pictures), and the files that were skipped and why."""
    effect_figures = effect_figures or {}
    out_dir = out_dir or source
    parts = [f"# Results: {source}", "", NOTE, "", EFFECT_NOTE, "", study_claims_text(tables)]
    if len(tables) > 1:  # with one table, its own figure is the only one (report/figures.py)
        shown = "all tables" if len(tables) <= MAX_STUDY_TABLES else f"the first {MAX_STUDY_TABLES} tables"
        parts += ["", f"Figures: {shown} in [curves.png](curves.png)."]
    for table in tables:
        parts += ["", f"## {table.name}", "", markdown_table(table)]
        readings = readings_text(table)
        if readings:
            parts += ["", readings]
        effects = effects_table(table, _md)
        if effects:
            parts += [
                "",
                f"Against the baseline row, {_md(table.baseline or '')}:",
                "",
                effects,
            ]
        detectable = detectable_text(table)
        if detectable:
            parts += ["", detectable]
        if table.notes:
            parts += ["", *(f"- {_md(note)}" for note in table.notes)]
        if table.name in effect_figures:
            name = effect_figures[table.name].name
            parts += ["", f"![{table.name}: differences from the baseline]({name})"]
        if table.name in figures:
            parts += ["", f"![{table.name}]({figures[table.name].name})"]
        per_class = per_class_table(table, _md)
        if per_class:
            parts += [
                "",
                "Test accuracy per class (%, right/tested over the row's runs; 95% Wilson interval, "
                "images as the unit):",
                "",
                per_class,
            ]
        pictures = pictures_list(table, out_dir, _md)
        if pictures:
            parts += ["", "Each run's pictures:", "", *pictures]
    if problems:
        parts += ["", "## Skipped files", "", SKIPPED_NOTE, "", *(f"- {_md(p)}" for p in problems)]
    return "\n".join(parts) + "\n"


def csv_text(tables: Sequence[Table]) -> str:
    """results.csv: one line per table row, numbers unformatted (accuracies in %)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for table in tables:
        for row in table.rows:
            writer.writerow(
                [
                    row.table,
                    row.row,
                    len(row.completed),
                    len(row.not_completed),
                    _raw(row.test_acc),
                    _raw(row.test_acc_std),
                    _raw(row.val_acc_best),
                    _raw(row.val_acc_best_std),
                    _raw(row.study),
                    _raw(row.diff),
                    *_effect_raw(row, table.baseline),
                    _raw(row.params),
                    *(row.epochs or ("", "")),
                    _raw(row.wall_time_s),
                    row.status,
                    "; ".join(row.errors),
                ]
            )
    return buffer.getvalue()


def _effect_raw(row: Row, baseline: str | None) -> list[str]:
    # baseline, delta, delta_ci_low, delta_ci_high, p_value, p_value_raw, verdict, n_pairs,
    # ci_level, delta_per_seed, mcnemar_p_per_seed, study_delta
    study = _raw(row.study_delta)
    if row.baseline is None:
        return ["", "", "", "", "", "", "baseline" if row.row == baseline else "", "", "", "", "", study]
    effect = row.effect
    if effect is None:
        return [row.baseline, "", "", "", "", "", "", "0", "", "", "", study]
    return [
        row.baseline,
        _raw(effect.delta),
        _raw(effect.ci_low),
        _raw(effect.ci_high),
        "" if effect.p_value is None else f"{effect.p_value:.6g}",
        "" if effect.p_raw is None else f"{effect.p_raw:.6g}",
        effect.verdict,
        str(effect.pairs),
        "" if effect.level is None else f"{effect.level:.6g}",
        " ".join(f"{d:.4f}" for d in effect.deltas),
        " ".join(f"{p:.6g}" for p in effect.mcnemar),
        study,
    ]


def format_duration(seconds: float | None) -> str:
    """12s, 3m 20s, 5h 33m: wall time at the precision that matters."""
    if seconds is None:
        return "—"
    total = round(seconds)
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m {total % 60:02d}s"
    return f"{total // 3600}h {total % 3600 // 60:02d}m"


def _cells(row: Row) -> tuple[str, ...]:
    epochs = (
        "—"
        if row.epochs is None
        else str(row.epochs[0])
        if row.epochs[0] == row.epochs[1]
        else f"{row.epochs[0]}–{row.epochs[1]}"
    )
    return (
        _md(row.row),
        _pm(row.test_acc, row.test_acc_std, row.test_acc_range),
        "— (merge_val)" if row.val_is_train else _pm(row.val_acc_best, row.val_acc_best_std),
        str(len(row.completed)),
        "—" if row.study is None else f"{row.study:.3f}",
        "—" if row.diff is None else f"{row.diff:+.2f}",
        "—" if row.params is None else f"{row.params:,}",
        epochs,
        format_duration(row.wall_time_s),
        row.status,
        _md("; ".join(row.errors)) or "",
    )


def _pm(mean: float | None, std: float | None, spread: tuple[float, float] | None = None) -> str:
    if mean is None:
        return "—"
    if std is not None:
        return f"{mean:.2f} ± {std:.2f}"
    if spread is not None and spread[0] != spread[1]:
        return f"{mean:.2f} ({spread[0]:.2f}–{spread[1]:.2f})"
    return f"{mean:.2f}"


def _raw(value: float | None) -> str:
    if value is None:
        return ""
    return str(value) if isinstance(value, int) else f"{value:.4f}"


def _md(text: str) -> str:
    # A pipe or a line break inside a cell would end the cell or the table.
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")
