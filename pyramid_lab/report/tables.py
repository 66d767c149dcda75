"""Runs -> the study's tables: one row per swept value, seeds aggregated, the study's number beside.

Only completed runs enter the accuracy columns. A failed, diverged, interrupted or still-running
run stays in its row's status and error columns: it is never dropped and never averaged in.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from pyramid_lab.report.study import PAPER_TABLES, STUDY_DATASET, paper_accuracy
from pyramid_lab.report.collect import STATUSES, UNTABLED, Run


@dataclass(frozen=True)
class Row:
    """One swept value of a table. Accuracies in percent; ``diff`` = ours − study, in points.

    Attributes:
        table, row: the table sweep and its swept value.
        runs: every run of this row, whatever its status.
        test_acc, test_acc_std: mean and sample std of the completed runs' test accuracy
            (std None below two runs; both None when no run completed).
        val_acc_best, val_acc_best_std: the same for the best validation accuracy.
        study: the study's test accuracy for this row, None where it has no such row.
        diff: test_acc − study in points, None where either is missing.
        params, epochs, wall_time_s: from the completed runs (from all runs if none completed).
    """

    table: str
    row: str
    runs: tuple[Run, ...]
    test_acc: float | None
    test_acc_std: float | None
    val_acc_best: float | None
    val_acc_best_std: float | None
    study: float | None
    diff: float | None
    params: int | None
    epochs: tuple[int, int] | None
    wall_time_s: float | None

    @property
    def completed(self) -> tuple[Run, ...]:
        return tuple(run for run in self.runs if run.status == "completed")

    @property
    def not_completed(self) -> tuple[Run, ...]:
        return tuple(run for run in self.runs if run.status != "completed")

    @property
    def status(self) -> str:
        """The status of a lone run ("failed"), else counts: "2 completed, 1 diverged"."""
        counts = Counter(run.status for run in self.runs)
        if len(self.runs) == 1:
            return self.runs[0].status
        return ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts[s])

    @property
    def errors(self) -> list[str]:
        """Why each run that did not complete stopped, one entry per run."""
        several = len(self.runs) > 1
        lines = []
        for run in self.not_completed:
            reason = run.error or (
                "no final status: still running, or killed"
                if run.status == "running"
                else "no reason recorded"
            )
            who = f"seed {run.seed}: " if several and run.seed is not None else ""
            lines.append(f"{who}{run.status}: {reason}")
        return lines


@dataclass(frozen=True)
class Table:
    """One table sweep: its rows in the study's order, then any rows the study does not have."""

    name: str
    rows: tuple[Row, ...]

    @property
    def runs(self) -> list[Run]:
        return [run for row in self.rows for run in row.runs]


def build_tables(runs: Sequence[Run]) -> list[Table]:
    """Group runs by table and row; tables in name order with untabled runs ("runs") last."""
    grouped: dict[str, dict[str, list[Run]]] = {}
    for run in runs:
        grouped.setdefault(run.table, {}).setdefault(run.row, []).append(run)
    names = sorted(grouped, key=lambda name: (name == UNTABLED, name))
    return [
        Table(
            name, tuple(summarize(name, row, grouped[name][row]) for row in _row_order(name, grouped[name]))
        )
        for name in names
    ]


def summarize(table: str, row: str, runs: Sequence[Run]) -> Row:
    """Aggregate one row's runs: mean ± std over completed runs only."""
    done = [run for run in runs if run.status == "completed"]
    source = done or list(runs)
    test, test_std = _mean_std([run.test_acc for run in done])
    val, val_std = _mean_std([run.val_acc_best for run in done])
    # The study's numbers are CINIC-10 numbers: beside a run on other data they would mislead.
    on_study_data = all(run.dataset in (None, STUDY_DATASET) for run in runs)
    study = paper_accuracy(table, row) if on_study_data else None
    epochs = [run.epochs for run in source if run.epochs is not None]
    walls = [run.wall_time_s for run in source if run.wall_time_s is not None]
    params = [run.params for run in source if run.params is not None]
    return Row(
        table=table,
        row=row,
        runs=tuple(runs),
        test_acc=test,
        test_acc_std=test_std,
        val_acc_best=val,
        val_acc_best_std=val_std,
        study=study,
        diff=None if test is None or study is None else test - study,
        params=Counter(params).most_common(1)[0][0] if params else None,
        epochs=(min(epochs), max(epochs)) if epochs else None,
        wall_time_s=statistics.fmean(walls) if walls else None,
    )


def _mean_std(fractions: list[float | None]) -> tuple[float | None, float | None]:
    values = [100.0 * f for f in fractions if f is not None]
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def _row_order(table: str, rows: dict[str, list[Run]]) -> list[str]:
    study_order = list(PAPER_TABLES.get(table, {}))
    return sorted(
        rows, key=lambda row: (study_order.index(row) if row in study_order else len(study_order), row)
    )
