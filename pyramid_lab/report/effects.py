"""Runs -> effects: which row is each table's baseline, and each row's runs paired by seed with the
baseline's runs, with a note for every run the comparison leaves out and why.

Only completed runs that left their test predictions (test_predictions.npz) are compared. Nothing
is left out silently: a completed run without predictions, an unreadable file, a run whose seed the
baseline did not run ("unpaired"), a copy of another run ("duplicate", counted once) and a pair
compared on fewer images than it predicted each become a note that names them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pyramid_lab.report.collect import Run, describes_row
from pyramid_lab.report.significance import (
    PREDICTIONS_NAME,
    Effect,
    Pair,
    Predictions,
    PredictionsError,
    compare,
    load_predictions,
    pair,
)
from pyramid_lab.report.table_block import TableBlock


def baseline_row(rows: Mapping[str, Sequence[Run]], block: TableBlock | None = None) -> str | None:
    """The row every other row of a table is compared with, or None.

    A table whose runs recorded its block (conf/experiment/table*.yaml): the block's ``baseline``
    (when the sweep ran it). Runs of no table, or of a table without a block: the one row whose
    runs set nothing apart from what every run of the table sets (``python -m pyramid_lab -m
    optimizer=sgd,adam`` has none: every row overrides something).
    """
    if block is not None and block.baseline is not None:
        return block.baseline if block.baseline in rows else None
    kept = {
        name: [{o for o in run.overrides if describes_row(o)} for run in runs] for name, runs in rows.items()
    }
    everyone = [overrides for runs in kept.values() for overrides in runs]
    shared = set.intersection(*everyone) if everyone else set()
    plain = [name for name, runs in kept.items() if all(overrides <= shared for overrides in runs)]
    return plain[0] if len(plain) == 1 and len(rows) > 1 else None


class PredictionsCache:
    """Each run's predictions, read once (by collect_runs, or here for a run built in memory);
    unusable files become notes instead of errors."""

    def __init__(self) -> None:
        self._loaded: dict[Path, Predictions | None] = {}
        self._problems: set[str] = set()
        self.notes: list[str] = []

    def get(self, run: Run) -> Predictions | None:
        if run.predictions_problem is not None and run.predictions_problem not in self._problems:
            self._problems.add(run.predictions_problem)  # found unusable by load_runs
            self.notes.append(f"{run.predictions_problem}; that run is not compared")
        if run.predictions is None or run.status != "completed":
            return None
        if run.loaded_predictions is not None:
            return run.loaded_predictions
        if run.predictions not in self._loaded:
            try:
                self._loaded[run.predictions] = load_predictions(run.predictions)
            except PredictionsError as error:
                self.notes.append(f"{error}; that run is not compared")
                self._loaded[run.predictions] = None
        return self._loaded[run.predictions]


@dataclass(frozen=True)
class Distinct:
    """A row's completed runs with copies removed.

    Attributes:
        runs: the completed runs counted (the first of each set of copies).
        duplicates: completed runs that repeat an earlier one (same seed, identical predictions).
        compared: of ``runs``, those whose predictions can be compared, with them.
    """

    runs: tuple[Run, ...]
    duplicates: tuple[Run, ...]
    compared: tuple[tuple[Run, Predictions], ...]


def distinct_runs(name: str, runs: Sequence[Run], cache: PredictionsCache) -> Distinct:
    """One row's completed runs, each counted once; notes for copies and missing predictions.

    A copy (the same run folder listed twice, or copied) must not count as another seed: it would
    shrink the p value without any new evidence.
    """
    kept: list[Run] = []
    duplicates: list[Run] = []
    compared: list[tuple[Run, Predictions]] = []
    missing: list[Run] = []
    for run in runs:
        if run.status != "completed":
            continue
        predictions = cache.get(run)
        if predictions is None:
            kept.append(run)
            missing.extend([run] if run.predictions is None and run.predictions_problem is None else [])
            continue
        original = next((r for r, p in compared if r.seed == run.seed and _same(p, predictions)), None)
        if original is not None:
            duplicates.append(run)
            cache.notes.append(
                f"{name}: {_where(run)} is a duplicate of {_where(original)} (seed {run.seed}, "
                "identical predictions): counted once"
            )
            continue
        repeated = next((r for r, _ in compared if r.seed is not None and r.seed == run.seed), None)
        if repeated is not None:
            cache.notes.append(
                f"{name}: seed {run.seed} ran twice with different predictions ({_where(repeated)}, "
                f"{_where(run)}): only the first is compared, both are in the accuracy columns"
            )
        kept.append(run)
        compared.append((run, predictions))
    if missing:
        cache.notes.append(
            f"{name}: no {PREDICTIONS_NAME} beside "
            + ", ".join(_where(run) for run in missing)
            + " (older runs?): not compared"
        )
    return Distinct(tuple(kept), tuple(duplicates), tuple(compared))


def seed_pairs(
    name: str, mine: Distinct, baseline: str, theirs: Distinct, cache: PredictionsCache
) -> list[Pair]:
    """The row's runs paired with the baseline's runs of the same seed, on the images both predicted.

    Runs whose seed the other row did not run are "unpaired" and named in a note (pairing them with
    another seed would mix two seeds' variation into one delta); runs without a seed are paired in
    order with the baseline's runs without one.
    """
    partners: dict[int | None, list[tuple[Run, Predictions]]] = {}
    for run, predictions in theirs.compared:
        partners.setdefault(run.seed, []).append((run, predictions))
    pairs, unpaired, elsewhere, fewer = [], [], [], []
    for run, predictions in mine.compared:
        candidates = partners.get(run.seed, [])
        if not candidates:
            unpaired.append(f"{name} {_seed(run)}")
            continue
        partner = candidates.pop(0)
        matched = pair(predictions, partner[1], seed=run.seed)
        if matched is None:
            elsewhere.append(_seed(run))
        else:
            pairs.append(matched)
            if matched.predicted > len(matched.correct):
                fewer.append(f"{_seed(run)} on {len(matched.correct):,} of {matched.predicted:,}")
    unpaired += [f"{baseline} {_seed(run)}" for left in partners.values() for run, _ in left]
    if unpaired:
        cache.notes.append(
            f"{name}: unpaired, not compared (the other row has no run of that seed): " + ", ".join(unpaired)
        )
    if elsewhere:
        cache.notes.append(
            f"{name}: {', '.join(elsewhere)} tested on different test images from {baseline} "
            "(e.g. a split drawn by the seed): not compared"
        )
    if fewer:
        cache.notes.append(
            f"{name}: compared on fewer test images than the runs predicted: " + "; ".join(fewer)
        )
    return pairs


def ensemble_pairs(distinct: Distinct) -> list[Pair]:
    """Each run's snapshot ensemble paired with the run's own single model, on the same images."""
    pairs = []
    for run, predictions in distinct.compared:
        if predictions.ensemble is not None:
            pairs.append(pair(predictions, predictions, row_pred=predictions.ensemble, seed=run.seed))
    return [p for p in pairs if p is not None]


def class_counts(distinct: Distinct) -> dict[str, tuple[int, int]] | None:
    """Per class: (right, tested) pooled over the row's compared runs; None without predictions."""
    counts: dict[str, list[int]] = {}
    for _, predictions in distinct.compared:
        names = predictions.classes or tuple(str(c) for c in range(int(predictions.target.max()) + 1))
        for c, class_name in enumerate(names):
            of_class = predictions.target == c
            tally = counts.setdefault(class_name, [0, 0])
            tally[0] += int(np.sum(predictions.correct & of_class))
            tally[1] += int(np.sum(of_class))
    return {name: (right, total) for name, (right, total) in counts.items() if total} or None


def effect_of(pairs: Sequence[Pair]) -> Effect | None:
    """The row's effect over its pairs; None when nothing could be paired."""
    return compare(pairs) if pairs else None


def _same(a: Predictions, b: Predictions) -> bool:
    return np.array_equal(a.pred, b.pred) and np.array_equal(a.index, b.index) and a.test_set == b.test_set


def _seed(run: Run) -> str:
    return "seed ?" if run.seed is None else f"seed {run.seed}"


def _where(run: Run) -> str:
    return str(run.folder) if run.folder is not None else _seed(run)
