"""Tables -> text: aligned Markdown (results.md and the terminal) and CSV (results.csv)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

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
    "params",
    "epochs_min",
    "epochs_max",
    "wall_time_s",
    "status",
    "error",
)
NOTE = (
    "Accuracies in %: mean ± sample std over a row's completed runs (n of them); Δ = ours − the "
    "study's test accuracy, in points; wall time per run (mean). Runs that did not complete are "
    "never averaged in: their status and reason are in the last columns."
)


def markdown_table(table: Table) -> str:
    """The table as aligned Markdown: readable as plain text in a terminal too."""
    cells = [COLUMNS, *(_cells(row) for row in table.rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |" for line in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def terminal_text(tables: Sequence[Table]) -> str:
    """What the report prints: each table under its name."""
    return "\n\n".join(f"{table.name} ({len(table.runs)} runs)\n{markdown_table(table)}" for table in tables)


def markdown_document(
    tables: Sequence[Table], source: Path, figures: dict[str, Path], problems: Sequence[str]
) -> str:
    """results.md: a section per table with its figure, and the records that could not be read."""
    parts = [f"# Results: {source}", "", NOTE, "", "Figures: all tables in [curves.png](curves.png)."]
    for table in tables:
        parts += ["", f"## {table.name}", "", markdown_table(table)]
        if table.name in figures:
            parts += ["", f"![{table.name}]({figures[table.name].name})"]
    if problems:
        parts += ["", "## Unreadable records", "", *(f"- {_md(p)}" for p in problems)]
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
                    _raw(row.params),
                    *(row.epochs or ("", "")),
                    _raw(row.wall_time_s),
                    row.status,
                    "; ".join(row.errors),
                ]
            )
    return buffer.getvalue()


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
        _pm(row.test_acc, row.test_acc_std),
        _pm(row.val_acc_best, row.val_acc_best_std),
        str(len(row.completed)),
        "—" if row.study is None else f"{row.study:.3f}",
        "—" if row.diff is None else f"{row.diff:+.2f}",
        "—" if row.params is None else f"{row.params:,}",
        epochs,
        format_duration(row.wall_time_s),
        row.status,
        _md("; ".join(row.errors)) or "",
    )


def _pm(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "—"
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def _raw(value: float | None) -> str:
    if value is None:
        return ""
    return str(value) if isinstance(value, int) else f"{value:.4f}"


def _md(text: str) -> str:
    # A pipe or a line break inside a cell would end the cell or the table.
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")
