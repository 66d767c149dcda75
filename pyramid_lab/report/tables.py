"""Runs -> the study's tables: one row per swept value, seeds aggregated, the study's number beside,
and each row's difference from the table's baseline row with its interval and paired test.

Only completed runs enter the accuracy columns, each once (a duplicated run is counted once). A
failed, diverged, interrupted or still-running run stays in its row's status and error columns: it
is never dropped and never averaged in. A row whose runs ran a snapshot ensemble is followed by the
ensemble's own row, compared with the single model in a Holm family of its own.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from pyramid_lab.report.collect import STATUSES, UNTABLED, Run
from pyramid_lab.report.effects import (
    Distinct,
    PredictionsCache,
    baseline_row,
    class_counts,
    distinct_runs,
    effect_of,
    ensemble_pairs,
    seed_pairs,
)
from pyramid_lab.report.significance import Effect, holm
from pyramid_lab.report.study import STUDY_DATASET
from pyramid_lab.report.table_block import TableBlock, common_block

# The name of a snapshot ensemble's row: "<row> + snapshot ensemble".
ENSEMBLE_SUFFIX = " + snapshot ensemble"
# Rows that train on train + validation (data.merge_val): their "validation" images are training
# images, so their best validation accuracy is no held-out number.
MERGE_VAL_ROWS = {("table7_merge_val", "merge_val"), ("table8_final", "final")}


@dataclass(frozen=True)
class Row:
    """One swept value of a table. Accuracies in percent; ``diff`` = ours − study, in points.

    Attributes:
        table, row: the table sweep and its swept value.
        runs: every run of this row, whatever its status.
        test_acc, test_acc_std: mean and sample std of the completed runs' test accuracy (std
            None below three runs, where a std says little: see ``test_acc_range``; both None when
            no run completed). Duplicated runs are counted once.
        val_acc_best, val_acc_best_std: the same for the best validation accuracy; None where the
            row trained on its validation images (``val_is_train``).
        study: the study's test accuracy for this row, None where it has no such row.
        diff: test_acc − study in points, None where either is missing.
        params, epochs, wall_time_s: from the completed runs (from all runs if none completed).
        baseline: the row this one is compared with (None for the baseline and in tables without).
        effect: the difference from ``baseline`` (None where no runs could be paired).
        study_delta: the study's own difference from its baseline row, in points, where the study
            has the row (and the runs are on its data).
        ensemble_of: for a snapshot ensemble's row, the row of its single models.
        test_acc_range: (lowest, highest) test accuracy of the completed runs.
        duplicates: completed runs that repeat another run of the row (counted once).
        val_is_train: the row trained on train + validation (merge_val).
        class_counts: per class, (right, tested) pooled over the runs with test predictions.
        compared_runs: how many completed runs the effect's seed pairs used (None: no effect).
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
    test_acc_range: tuple[float, float] | None = None
    duplicates: tuple[Run, ...] = ()
    val_is_train: bool = False
    class_counts: dict[str, tuple[int, int]] | None = None

    @property
    def completed(self) -> tuple[Run, ...]:
        """The completed runs, each once (a duplicate of another run is left out)."""
        return tuple(
            run
            for run in self.runs
            if run.status == "completed" and all(run is not copy for copy in self.duplicates)
        )

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
        block: the table's block as its runs recorded it (the study's numbers, the readings);
            None for runs of no table and tables whose runs recorded none.
        notes: what the comparisons could not use and why (unpaired, duplicate, missing or
            unreadable predictions, other test sets, fewer images).
    """

    name: str
    rows: tuple[Row, ...]
    baseline: str | None = None
    notes: tuple[str, ...] = ()
    block: TableBlock | None = None

    @property
    def test_images(self) -> int | None:
        """Test images per compared run (the fewest), None when nothing was compared."""
        images = [row.effect.images for row in self.rows if row.effect is not None]
        return min(images) if images else None

    @property
    def main_rows(self) -> tuple[Row, ...]:
        """The rows of the table's own comparison (its Holm family): no snapshot-ensemble rows."""
        return tuple(row for row in self.rows if row.ensemble_of is None)

    @property
    def ensemble_rows(self) -> tuple[Row, ...]:
        """Snapshot ensembles against their single models: a family of their own."""
        return tuple(row for row in self.rows if row.ensemble_of is not None)

    @property
    def runs(self) -> list[Run]:
        # A snapshot ensemble's row holds the same runs as its single model's row: count them once.
        return [run for row in self.rows if row.ensemble_of is None for run in row.runs]


def build_tables(runs: Sequence[Run]) -> list[Table]:
    """Group runs by table and row; tables in name order with untabled runs ("runs") last.

    Every row is compared with its table's baseline row where both left test predictions
    (pyramid_lab.report.significance), with Holm's correction across the table's rows.

    Args:
        runs: e.g. ``load_runs(dir)``.
    """
    grouped: dict[str, dict[str, list[Run]]] = {}
    for run in runs:
        grouped.setdefault(run.table, {}).setdefault(run.row, []).append(run)
    names = sorted(grouped, key=lambda name: (name == UNTABLED, name))
    return [compare_rows(name, grouped[name]) for name in names]


def compare_rows(name: str, rows: dict[str, list[Run]]) -> Table:
    """One table: its rows summarised, each compared with the baseline row, ensembles added.

    The study's numbers and the baseline row come from the table block its runs recorded. The
    table's rows form one Holm family, the snapshot ensembles (each against its own single model,
    a different question) another.
    """
    cache = PredictionsCache()
    block, differs = common_block(name, [run.block for runs in rows.values() for run in runs])
    if differs:
        cache.notes.append(differs)
    baseline = baseline_row(rows, block)
    if block is not None and block.baseline is not None and baseline is None:
        cache.notes.append(f"{name}: its baseline row {block.baseline} has no runs here: no row is compared")
    distinct = {row_name: distinct_runs(row_name, runs, cache) for row_name, runs in rows.items()}
    built: list[Row] = []
    for row_name in _row_order(rows, block):
        row = summarize(name, row_name, rows[row_name], distinct[row_name], block)
        if baseline is not None and row_name != baseline:
            pairs = seed_pairs(row_name, distinct[row_name], baseline, distinct[baseline], cache)
            row = replace(row, baseline=baseline, effect=effect_of(pairs))
            _note_other_runs(row, cache)
        built.append(row)
        if any(run.test_acc_ensemble is not None for run in row.completed):
            built.append(ensemble_row(row, effect_of(ensemble_pairs(distinct[row_name]))))
    for ensembles in (False, True):
        family = [i for i, row in enumerate(built) if (row.ensemble_of is not None) == ensembles]
        for i, effect in zip(family, holm([built[i].effect for i in family])):
            built[i] = replace(built[i], effect=effect)
    return Table(name, tuple(built), baseline=baseline, notes=tuple(dict.fromkeys(cache.notes)), block=block)


def _note_other_runs(row: Row, cache: PredictionsCache) -> None:
    """Say so when the accuracy columns average other runs than the delta compares."""
    compared = 0 if row.effect is None else row.effect.pairs
    if row.effect is not None and compared != len(row.completed):
        seeds = ", ".join(str(s) for s in row.effect.seeds)
        cache.notes.append(
            f"{row.row}: test accuracy over {len(row.completed)} runs, Δ over the {compared} seed "
            f"pair(s) with {row.baseline} (seeds {seeds}): not the same runs"
        )


def ensemble_row(row: Row, effect: Effect | None) -> Row:
    """A snapshot ensemble's row: its test accuracy over the row's runs, against the single model."""
    values = [run.test_acc_ensemble for run in row.completed]
    test, test_std = _mean_std(values)
    tests = [100.0 * v for v in values if v is not None]
    return replace(
        row,
        row=row.row + ENSEMBLE_SUFFIX,
        test_acc=test,
        test_acc_std=test_std,
        test_acc_range=(min(tests), max(tests)) if tests else None,
        class_counts=None,
        val_acc_best=None,
        val_acc_best_std=None,
        study=None,
        diff=None,
        baseline=row.row,
        effect=effect,
        study_delta=None,
        ensemble_of=row.row,
    )


def summarize(
    table: str,
    row: str,
    runs: Sequence[Run],
    distinct: Distinct | None = None,
    block: TableBlock | None = None,
) -> Row:
    """Aggregate one row's runs: mean ± std over completed runs only, each counted once.

    Args:
        distinct: the row's completed runs with duplicates removed (effects.distinct_runs); every
            completed run when None.
        block: the table's block (the study's numbers); the row has none when None.
    """
    done = list(distinct.runs) if distinct is not None else [run for run in runs if run.status == "completed"]
    source = done or list(runs)
    test, test_std = _mean_std([run.test_acc for run in done])
    val_is_train = trains_on_validation(table, row, done or list(runs))
    val, val_std = (None, None) if val_is_train else _mean_std([run.val_acc_best for run in done])
    tests = [100.0 * run.test_acc for run in done if run.test_acc is not None]
    # The study's numbers are CINIC-10 numbers: beside a run on other data they would mislead.
    on_study_data = all(run.dataset in (None, STUDY_DATASET) for run in runs)
    study = block.study(row) if on_study_data and block is not None else None
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
        study_delta=block.study_difference(row) if on_study_data and block is not None else None,
        params=Counter(params).most_common(1)[0][0] if params else None,
        epochs=(min(epochs), max(epochs)) if epochs else None,
        wall_time_s=statistics.fmean(walls) if walls else None,
        test_acc_range=(min(tests), max(tests)) if tests else None,
        duplicates=() if distinct is None else distinct.duplicates,
        val_is_train=val_is_train,
        class_counts=None if distinct is None else class_counts(distinct),
    )


def trains_on_validation(table: str, row: str, runs: Sequence[Run]) -> bool:
    """Whether a row trained on train + validation (Table 7 merge_val, Table 8 final, or any run
    with ``tricks=...merge_val...``/``data.merge_val=true``, or its saved config saying so)."""
    if (table, row) in MERGE_VAL_ROWS:
        return True
    for run in runs:
        for override in run.overrides:
            key, _, value = override.lstrip("+~").partition("=")
            if key.endswith("merge_val") and value.strip().lower() in ("true", "1", "yes"):
                return True
            if key.startswith("tricks") and "merge_val" in value.replace("[", ",").replace("]", ",").split(
                ","
            ):
                return True
        if _config_merges_val(run.folder):
            return True
    return False


def _config_merges_val(folder: Path | None) -> bool:
    """``data.merge_val`` in the config a run saved beside its record (False when unreadable)."""
    if folder is None:
        return False
    for path in (folder / "config.yaml", folder / ".hydra" / "config.yaml"):
        try:
            config = yaml.safe_load(path.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        data = config.get("data") if isinstance(config, dict) else None
        if isinstance(data, dict):
            return data.get("merge_val") is True
    return False


def _mean_std(fractions: list[float | None]) -> tuple[float | None, float | None]:
    values = [100.0 * f for f in fractions if f is not None]
    if not values:
        return None, None
    # A std of two values is their distance / sqrt(2): shown as a range instead (Row.test_acc_range).
    return statistics.fmean(values), statistics.stdev(values) if len(values) >= 3 else None


def _row_order(rows: dict[str, list[Run]], block: TableBlock | None) -> list[str]:
    """The block's order (the experiment file's), then rows it does not name, by name."""
    study_order = [] if block is None else list(block.rows)
    return sorted(
        rows,
        key=lambda row: (
            study_order.index(row) if row in study_order else len(study_order),
            row,
        ),
    )
