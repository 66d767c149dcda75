"""Runs -> effects: which row is each table's baseline, and each row's runs paired with its runs.

Only completed runs that left their test predictions (test_predictions.npz) are compared; older
runs, and runs that did not complete, leave the comparison columns blank.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from pyramid_lab.report.collect import UNTABLED, Run, describes_row
from pyramid_lab.report.significance import (
    RESAMPLES,
    Effect,
    Pair,
    Predictions,
    PredictionsError,
    compare,
    load_predictions,
    pair,
)
from pyramid_lab.report.study import BASELINE_ROWS


def baseline_row(table: str, rows: Mapping[str, Sequence[Run]]) -> str | None:
    """The row every other row of ``table`` is compared with, or None.

    The study's tables: the row of ``BASELINE_ROWS`` (when the sweep ran it). Runs of no table
    ("runs"): the one row whose runs set nothing apart from what every run of the table sets
    (``python -m pyramid_lab -m optimizer=sgd,adam`` has none: every row overrides something).
    """
    if table in BASELINE_ROWS:
        return BASELINE_ROWS[table] if BASELINE_ROWS[table] in rows else None
    if table != UNTABLED:
        return None
    kept = {
        name: [{o for o in run.overrides if describes_row(o)} for run in runs] for name, runs in rows.items()
    }
    everyone = [overrides for runs in kept.values() for overrides in runs]
    shared = set.intersection(*everyone) if everyone else set()
    plain = [name for name, runs in kept.items() if all(overrides <= shared for overrides in runs)]
    return plain[0] if len(plain) == 1 and len(rows) > 1 else None


class PredictionsCache:
    """Loads each run's predictions once; unusable files become notes instead of errors."""

    def __init__(self) -> None:
        self._loaded: dict[Path, Predictions | None] = {}
        self.notes: list[str] = []

    def get(self, run: Run) -> Predictions | None:
        if run.predictions is None or run.status != "completed":
            return None
        if run.predictions not in self._loaded:
            try:
                self._loaded[run.predictions] = load_predictions(run.predictions)
            except PredictionsError as error:
                self.notes.append(f"{error}; that run is not compared")
                self._loaded[run.predictions] = None
        return self._loaded[run.predictions]


def seed_pairs(
    runs: Sequence[Run], baseline_runs: Sequence[Run], cache: PredictionsCache
) -> tuple[list[Pair], int]:
    """The row's runs paired with the baseline's: same seed first, then the rest in order.

    Returns:
        The pairs on one test set, and how many candidate pairs were on different test sets (the
        digits split, for instance, is drawn by the seed).
    """
    mine = [(run, p) for run in runs if (p := cache.get(run)) is not None]
    theirs = [(run, p) for run in baseline_runs if (p := cache.get(run)) is not None]
    matched, rest = [], []
    for run, predictions in mine:
        partner = next(
            (item for item in theirs if item[0].seed == run.seed and run.seed is not None),
            None,
        )
        if partner is None:
            rest.append(predictions)
        else:
            theirs.remove(partner)
            matched.append((predictions, partner[1]))
    matched += zip(rest, [p for _, p in theirs])
    pairs = [pair(row, base) for row, base in matched]
    return [p for p in pairs if p is not None], sum(p is None for p in pairs)


def ensemble_pairs(runs: Sequence[Run], cache: PredictionsCache) -> list[Pair]:
    """Each run's snapshot ensemble paired with the run's own single model, on the same images."""
    pairs = []
    for run in runs:
        predictions = cache.get(run)
        if predictions is not None and predictions.ensemble is not None:
            pairs.append(pair(predictions, predictions, row_pred=predictions.ensemble))
    return [p for p in pairs if p is not None]


def effect_of(pairs: Sequence[Pair], resamples: int = RESAMPLES) -> Effect | None:
    """The row's effect over its pairs; None when nothing could be paired."""
    return compare(pairs, resamples) if pairs else None
