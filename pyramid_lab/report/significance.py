"""Is a recipe's difference real? The seed is the unit; the test images speak for trained models.

A row (a recipe) is compared with its table's baseline recipe through their runs: the row's run
with seed s against the baseline's run with seed s, on the test images both predicted.

- The recipe effect: the mean of the k per-seed deltas (points), a paired t-interval on them
  (df = k - 1) and the paired t-test's p value (``scipy.stats.ttest_rel`` on the seed pairs'
  accuracies): one model gives the estimate, the interval and p. The seeds are the k observations,
  whatever the number of test images, so the seed-to-seed variation (usually larger than the
  test-set noise) is in both; under a null recipe the per-seed deltas are independent draws around 0,
  which is what makes the test calibrated (tests/test_significance.py simulates it).
- Holm's correction across a table's rows adjusts p; each row's interval is then
  taken at the level ``1 - alpha * p_raw / p_holm`` (its Holm multiplier), so it excludes 0 exactly
  when the adjusted p is below ``alpha``: the verdict, read from that interval, and p agree.
- One seed per row measures no seed-to-seed variation: no recipe verdict. What one seed can say is
  about the two trained models, and so is ``mcnemar``: McNemar's exact test per seed pair on the
  images where the two models disagree (one right, the other wrong).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

# The predictions file and its reader live below the report and training (both use them); the
# names stay importable from here, as pyramid_lab.report has always offered them.
from pyramid_lab.runs.predictions_file import PREDICTIONS_NAME as PREDICTIONS_NAME
from pyramid_lab.runs.predictions_file import Predictions as Predictions
from pyramid_lab.runs.predictions_file import PredictionsError as PredictionsError
from pyramid_lab.runs.predictions_file import load_predictions as load_predictions

ALPHA = 0.05
VERDICTS = ("better", "worse", "no detectable difference")
# A row with one seed pair: its runs say nothing about the recipe (no seed variance is measured).
ONE_SEED = "one seed: no recipe verdict"


@dataclass(frozen=True)
class Pair:
    """Two runs' correctness on the same images (aligned ``[N]`` booleans) and their test set.

    Attributes:
        seed: the seed both runs share (None when unknown).
        predicted: test images the run that predicted more of them predicted (``>= len(correct)``;
            0 when unknown): larger means the pair is compared on fewer images than it has.
    """

    correct: np.ndarray
    baseline_correct: np.ndarray
    test_set: str
    seed: int | None = None
    predicted: int = 0

    @property
    def delta(self) -> float:
        """Row − baseline test accuracy on the shared images, in points."""
        return 100.0 * float(self.correct.mean() - self.baseline_correct.mean())


def pair(
    row: Predictions,
    baseline: Predictions,
    row_pred: np.ndarray | None = None,
    seed: int | None = None,
) -> Pair | None:
    """Align two runs on the test images both predicted; None when they are not on one test set.

    Args:
        row, baseline: the two runs' predictions.
        row_pred: predictions to use for ``row`` instead of ``row.pred`` (its snapshot ensemble).
        seed: the seed of the two runs, kept on the pair.
    """
    if row.test_set is not None and baseline.test_set is not None and row.test_set != baseline.test_set:
        return None
    common, i, j = np.intersect1d(row.index, baseline.index, assume_unique=True, return_indices=True)
    if len(common) == 0 or not np.array_equal(row.target[i], baseline.target[j]):
        return None
    pred = row.pred if row_pred is None else row_pred
    key = row.test_set or baseline.test_set or f"targets:{hash(row.target[i].tobytes())}"
    return Pair(
        pred[i] == row.target[i],
        baseline.correct[j],
        f"{key}:{hash(common.tobytes())}",
        seed=seed,
        predicted=max(len(row.index), len(baseline.index)),
    )


@dataclass(frozen=True)
class Effect:
    """A row's difference from its baseline recipe. Points are percentage points of test accuracy.

    Attributes:
        deltas: row − baseline test accuracy per seed pair, in points.
        seeds: the seed of each pair (None where a run recorded none).
        ci_low, ci_high: the paired t-interval of the mean delta at ``level`` (None with one seed).
        level: the interval's confidence: 0.95, raised by Holm's correction to match ``p_value``.
        p_raw: the paired t-test's p on the per-seed deltas (None with one seed).
        p_value: ``p_raw`` after Holm's correction across the table (equal until then).
        verdict: better / worse / no detectable difference, read from the interval; ``ONE_SEED``.
        images: test images per pair (the fewest).
        mcnemar: per seed pair, McNemar's exact p: do these two trained models differ on these images.
        only_row, only_baseline: per seed pair, images right only in the row / only in the baseline.
    """

    deltas: tuple[float, ...]
    seeds: tuple[int | None, ...]
    ci_low: float | None
    ci_high: float | None
    level: float | None
    p_raw: float | None
    p_value: float | None
    verdict: str
    images: int
    mcnemar: tuple[float, ...]
    only_row: tuple[int, ...]
    only_baseline: tuple[int, ...]

    @property
    def delta(self) -> float:
        """The recipe effect: the mean per-seed delta, in points."""
        return float(np.mean(self.deltas))

    @property
    def pairs(self) -> int:
        return len(self.deltas)


def compare(pairs: Sequence[Pair], alpha: float = ALPHA) -> Effect:
    """The effect of one row against its baseline over its seed pairs (not yet Holm-corrected).

    Args:
        pairs: one per seed, each on the images both runs predicted.
        alpha: the level of the (unadjusted) interval, 1 - alpha.
    """
    if not pairs:
        raise ValueError("compare() needs at least one pair of runs")
    only_row = tuple(int(np.sum(p.correct & ~p.baseline_correct)) for p in pairs)
    only_base = tuple(int(np.sum(~p.correct & p.baseline_correct)) for p in pairs)
    mcnemar_p = tuple(mcnemar_exact(r, b) for r, b in zip(only_row, only_base))
    deltas = tuple(p.delta for p in pairs)
    p_raw = paired_t_p(deltas)
    low, high = (None, None) if p_raw is None else t_interval(deltas, 1.0 - alpha)
    effect = Effect(
        deltas=deltas,
        seeds=tuple(p.seed for p in pairs),
        ci_low=low,
        ci_high=high,
        level=None if p_raw is None else 1.0 - alpha,
        p_raw=p_raw,
        p_value=p_raw,
        verdict=ONE_SEED,
        images=min(len(p.correct) for p in pairs),
        mcnemar=mcnemar_p,
        only_row=only_row,
        only_baseline=only_base,
    )
    return replace(effect, verdict=verdict(effect))


def mcnemar_exact(only_row: int, only_baseline: int) -> float:
    """McNemar's exact two-sided p from the disagreeing images alone: which of two models is right
    where they disagree is, under the null, a fair coin (statsmodels' ``mcnemar(exact=True)``, which
    the tests check it against, at a tenth of its cost: the simulations call it thousands of times).
    """
    n = only_row + only_baseline
    return 1.0 if n == 0 else min(1.0, 2.0 * float(stats.binom.cdf(min(only_row, only_baseline), n, 0.5)))


def paired_t_p(deltas: Sequence[float]) -> float | None:
    """Two-sided p of the paired t-test that the mean per-seed delta is 0; None below two seeds.

    Identical deltas (no spread to estimate) give 1 when they are 0, else 0.
    """
    if len(deltas) < 2:
        return None
    d = np.asarray(deltas, dtype=float)
    if np.ptp(d) == 0.0:
        return 1.0 if d[0] == 0.0 else 0.0
    # ttest_rel(row, baseline) on the pairs' accuracies, written out (the tests compare it with
    # scipy's): scipy's wrapper costs milliseconds a call, and the simulations make thousands.
    t = d.mean() / (d.std(ddof=1) / np.sqrt(len(d)))
    return float(2.0 * stats.t.sf(abs(t), len(d) - 1))


def t_interval(deltas: Sequence[float], confidence: float) -> tuple[float, float]:
    """The paired t-interval (df = k - 1) of the mean per-seed delta, in points."""
    d = np.asarray(deltas, dtype=float)
    mean, se = float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))
    if se == 0.0:
        return mean, mean
    half = float(stats.t.ppf(0.5 + confidence / 2.0, len(d) - 1)) * se
    return mean - half, mean + half


def verdict(effect: Effect) -> str:
    """better / worse when the (adjusted) interval lies above / below 0; ONE_SEED with one seed."""
    if effect.ci_low is None or effect.ci_high is None:
        return ONE_SEED
    if effect.ci_low > 0.0:
        return VERDICTS[0]
    if effect.ci_high < 0.0:
        return VERDICTS[1]
    return VERDICTS[2]


def holm(effects: Sequence[Effect | None], alpha: float = ALPHA) -> list[Effect | None]:
    """Holm's correction across one family of comparisons (a table's rows), intervals included.

    Rows with one seed (no p value) and None entries are not in the family and stay as they are.
    Each tested row's interval is recomputed at ``1 - alpha * p_raw / p_holm``: it excludes 0
    exactly when ``p_holm < alpha``, so the verdict read from it agrees with the adjusted p.
    """
    tested = [e for e in effects if e is not None and e.p_raw is not None]
    if not tested:
        return list(effects)
    adjusted = iter(holm_adjusted([e.p_raw for e in tested]))
    out: list[Effect | None] = []
    for effect in effects:
        if effect is None or effect.p_raw is None:
            out.append(effect)
            continue
        p_value = float(next(adjusted))
        # p_raw = 0 (identical nonzero deltas): the interval is a point; any level gives the same.
        level_alpha = alpha * effect.p_raw / p_value if p_value > 0.0 else alpha
        low, high = t_interval(effect.deltas, 1.0 - level_alpha)
        adjusted_effect = replace(effect, p_value=p_value, ci_low=low, ci_high=high, level=1.0 - level_alpha)
        out.append(replace(adjusted_effect, verdict=verdict(adjusted_effect)))
    return out


def holm_adjusted(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p values: the i-th smallest times (m - i), running maximum, at most 1.

    The same numbers as statsmodels' ``multipletests(method="holm")`` (the tests check it), which
    runs ``gc.collect()`` on every call: 0.3 s each in a loaded interpreter, 100x the simulations.
    """
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p)
    stepped = np.minimum(1.0, np.maximum.accumulate(p[order] * (len(p) - np.arange(len(p)))))
    adjusted = np.empty_like(p)
    adjusted[order] = stepped
    return adjusted


def coherent(effect: Effect, alpha: float = ALPHA) -> bool:
    """Whether a row's verdict, p value and interval say the same thing (tests check every row)."""
    if effect.p_value is None:
        return effect.verdict == ONE_SEED and effect.ci_low is None
    assert effect.ci_low is not None and effect.ci_high is not None
    excludes_zero = effect.ci_low > 0.0 or effect.ci_high < 0.0
    called = effect.verdict in VERDICTS[:2]
    side = (effect.verdict == VERDICTS[0]) == (effect.delta > 0.0)
    return excludes_zero == (effect.p_value < alpha) == called and (not called or side)
