"""Runs -> the study's tables: one row per swept value, seeds aggregated, the study's number beside,
and each row's difference from the table's baseline row with its interval and paired test.

Only completed runs enter the accuracy columns. A failed, diverged, interrupted or still-running
run stays in its row's status and error columns: it is never dropped and never averaged in.
A row whose runs ran a snapshot ensemble is followed by the ensemble's own row, compared with
the single model.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

from pyramid_lab.report.collect import STATUSES, UNTABLED, Run
from pyramid_lab.report.effects import (
    PredictionsCache,
    baseline_row,
    effect_of,
    ensemble_pairs,
    seed_pairs,
)
from pyramid_lab.report.significance import RESAMPLES, Effect, holm
from pyramid_lab.report.study import (
    PAPER_TABLES,
    STUDY_DATASET,
    paper_accuracy,
    study_difference,
)

# The name of a snapshot ensemble's row: "<row> + snapshot ensemble".
ENSEMBLE_SUFFIX = " + snapshot ensemble"


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
        baseline: the row this one is compared with (None for the baseline and in tables without).
        effect: the difference from ``baseline`` (None where no runs could be paired).
        study_delta: the study's own difference from its baseline row, in points, where the study
            has the row (and the runs are on its data).
        ensemble_of: for a snapshot ensemble's row, the row of its single models.
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
    baseline: str | None = None
    effect: Effect | None = None
    study_delta: float | None = None
    ensemble_of: str | None = None

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

    @property
    def acc_per_class(self) -> dict[str, float] | None:
        """Test accuracy (%) per class, mean over the completed runs that recorded it."""
        recorded = [run.acc_per_class for run in self.completed if run.acc_per_class]
        if not recorded or self.ensemble_of is not None:
            return None
        names = list(dict.fromkeys(name for per_class in recorded for name in per_class))
        return {name: statistics.fmean(100.0 * r[name] for r in recorded if name in r) for name in names}


@dataclass(frozen=True)
class Table:
    """One table sweep: its rows in the study's order, then any rows the study does not have.

    Attributes:
        baseline: the row the others are compared with; None when the table has none.
        notes: what the comparisons could not use (unreadable predictions, other test sets).
    """

    name: str
    rows: tuple[Row, ...]
    baseline: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def test_images(self) -> int | None:
        """Test images per compared run (the fewest), None when nothing was compared."""
        images = [row.effect.images for row in self.rows if row.effect is not None]
        return min(images) if images else None

    @property
    def runs(self) -> list[Run]:
        # A snapshot ensemble's row holds the same runs as its single model's row: count them once.
        return [run for row in self.rows if row.ensemble_of is None for run in row.runs]


def build_tables(runs: Sequence[Run], resamples: int = RESAMPLES) -> list[Table]:
    """Group runs by table and row; tables in name order with untabled runs ("runs") last.

    Every row is compared with its table's baseline row where both left test predictions
    (pyramid_lab.report.significance), with Holm's correction across the table's rows.

    Args:
        runs: e.g. ``load_runs(dir)``.
        resamples: bootstrap resamples per comparison.
    """
    grouped: dict[str, dict[str, list[Run]]] = {}
    for run in runs:
        grouped.setdefault(run.table, {}).setdefault(run.row, []).append(run)
    names = sorted(grouped, key=lambda name: (name == UNTABLED, name))
    return [compare_rows(name, grouped[name], resamples) for name in names]


def compare_rows(name: str, rows: dict[str, list[Run]], resamples: int = RESAMPLES) -> Table:
    """One table: its rows summarised, each compared with the baseline row, ensembles added."""
    baseline = baseline_row(name, rows)
    cache = PredictionsCache()
    built: list[Row] = []
    for row_name in _row_order(name, rows):
        row = summarize(name, row_name, rows[row_name])
        if baseline is not None and row_name != baseline:
            pairs, elsewhere = seed_pairs(row.completed, rows[baseline], cache)
            if elsewhere:
                cache.notes.append(
                    f"{row_name}: {elsewhere} run pair(s) were tested on different test images "
                    "(e.g. a split drawn by the seed) and are not compared"
                )
            row = replace(row, baseline=baseline, effect=effect_of(pairs, resamples))
        built.append(row)
        if any(run.test_acc_ensemble is not None for run in row.completed):
            built.append(ensemble_row(row, effect_of(ensemble_pairs(row.completed, cache), resamples)))
    corrected = holm([row.effect for row in built])
    built = [replace(row, effect=effect) for row, effect in zip(built, corrected)]
    return Table(name, tuple(built), baseline=baseline, notes=tuple(dict.fromkeys(cache.notes)))


def ensemble_row(row: Row, effect: Effect | None) -> Row:
    """A snapshot ensemble's row: its test accuracy over the row's runs, against the single model."""
    test, test_std = _mean_std([run.test_acc_ensemble for run in row.completed])
    return replace(
        row,
        row=row.row + ENSEMBLE_SUFFIX,
        test_acc=test,
        test_acc_std=test_std,
        val_acc_best=None,
        val_acc_best_std=None,
        study=None,
        diff=None,
        baseline=row.row,
        effect=effect,
        study_delta=None,
        ensemble_of=row.row,
    )


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
        study_delta=study_difference(table, row) if on_study_data else None,
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
        rows,
        key=lambda row: (
            study_order.index(row) if row in study_order else len(study_order),
            row,
        ),
    )
