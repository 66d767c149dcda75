"""Is a difference real? Paired comparisons of two models on the same test images.

Two runs tested on the same images are compared image by image, which removes the part of the
noise that comes from which images happen to be in the test set:

- ``p_value``: McNemar's exact test (statsmodels) on the images where the two disagree (one right,
  the other wrong), pooled over seed pairs; Holm's correction (statsmodels) across the rows of a
  table.
- ``delta_ci_low``/``delta_ci_high``: a 95% percentile bootstrap interval of the difference in
  points. Images are resampled with replacement (jointly for all pairs on one test set), and with
  several seed pairs the pairs are resampled too, so the interval carries the seed-to-seed
  variation that one seed cannot show.

The bootstrap draws, per resample, how many images fall into each agreement pattern (for one pair:
both right or both wrong, only the row right, only the baseline right) from the multinomial
distribution of those patterns. That is the bootstrap distribution of resampling the images
themselves (the statistic depends on those counts alone), in O(patterns) instead of O(images)
per resample: ``scipy.stats.bootstrap`` takes about 4 s per comparison on 90,000 images, this
takes milliseconds, and it does the two-level (seeds, then images) resampling that scipy does not;
tests/test_significance.py checks it against ``scipy.stats.bootstrap``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

# The file a run leaves for these comparisons (written by pyramid_lab.training.predictions).
PREDICTIONS_NAME = "test_predictions.npz"
ALPHA = 0.05
CONFIDENCE = 0.95
RESAMPLES = 10_000
VERDICTS = ("better", "worse", "no detectable difference")


class PredictionsError(ValueError):
    """A test_predictions.npz that cannot be used; the message says why."""


@dataclass(frozen=True)
class Predictions:
    """One run's per-image test predictions (the format of training/predictions.py).

    Attributes:
        pred, target: int ``[N]`` predicted and true class per test image.
        index: int ``[N]`` position of each image in the test split (sorted).
        test_set: a digest of the test split's images and labels; None when unknown.
        classes: the class names, ``[C]``.
        ensemble: int ``[N]`` the snapshot ensemble's predicted classes, None without one.
    """

    pred: np.ndarray
    target: np.ndarray
    index: np.ndarray
    test_set: str | None
    classes: tuple[str, ...]
    ensemble: np.ndarray | None = None

    @property
    def correct(self) -> np.ndarray:
        return self.pred == self.target


def load_predictions(path: str | Path) -> Predictions:
    """Read a test_predictions.npz (no pickles).

    Raises:
        PredictionsError: the file is unreadable, lacks ``pred``/``target``, or its arrays disagree.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError) as error:
        raise PredictionsError(f"{path}: cannot be read ({error})") from None
    missing = [key for key in ("pred", "target") if key not in arrays]
    if missing:
        raise PredictionsError(f"{path}: no {' or '.join(missing)} array")
    pred, target = arrays["pred"].astype(np.int64), arrays["target"].astype(np.int64)
    index = arrays.get("index", np.arange(len(pred))).astype(np.int64)
    ensemble = arrays.get("pred_ensemble")
    if pred.ndim != 1 or pred.shape != target.shape or index.shape != pred.shape:
        raise PredictionsError(f"{path}: pred, target and index must be [N] arrays of one length")
    if ensemble is not None and ensemble.shape != pred.shape:
        raise PredictionsError(f"{path}: pred_ensemble has {ensemble.shape}, expected {pred.shape}")
    test_set = arrays.get("test_set")
    return Predictions(
        pred=pred,
        target=target,
        index=index,
        test_set=None if test_set is None else str(test_set),
        classes=tuple(str(c) for c in arrays.get("classes", ())),
        ensemble=None if ensemble is None else ensemble.astype(np.int64),
    )


@dataclass(frozen=True)
class Pair:
    """Two runs' correctness on the same images (aligned ``[N]`` booleans) and their test set."""

    correct: np.ndarray
    baseline_correct: np.ndarray
    test_set: str


def pair(row: Predictions, baseline: Predictions, row_pred: np.ndarray | None = None) -> Pair | None:
    """Align two runs on the test images both predicted; None when they are not on one test set.

    Args:
        row, baseline: the two runs' predictions.
        row_pred: predictions to use for ``row`` instead of ``row.pred`` (its snapshot ensemble).
    """
    if row.test_set is not None and baseline.test_set is not None and row.test_set != baseline.test_set:
        return None
    common, i, j = np.intersect1d(row.index, baseline.index, assume_unique=True, return_indices=True)
    if len(common) == 0 or not np.array_equal(row.target[i], baseline.target[j]):
        return None
    pred = row.pred if row_pred is None else row_pred
    key = row.test_set or baseline.test_set or f"targets:{hash(row.target[i].tobytes())}"
    return Pair(pred[i] == row.target[i], baseline.correct[j], f"{key}:{hash(common.tobytes())}")


@dataclass(frozen=True)
class Effect:
    """A row's difference from its baseline. Points are percentage points of test accuracy.

    Attributes:
        delta: mean over seed pairs of (row − baseline) test accuracy, in points.
        ci_low, ci_high: the 95% bootstrap interval of ``delta``, in points.
        p_raw: McNemar's exact p on the pooled disagreeing images.
        p_value: ``p_raw`` after Holm's correction across the table (equal until then).
        verdict: better / worse / no detectable difference at 5%.
        pairs: seed pairs compared. images: test images per pair (the smallest).
        only_row, only_baseline: disagreeing images, pooled: right only in the row / the baseline.
    """

    delta: float
    ci_low: float
    ci_high: float
    p_raw: float
    p_value: float
    verdict: str
    pairs: int
    images: int
    only_row: int
    only_baseline: int


def compare(pairs: Sequence[Pair], resamples: int = RESAMPLES, seed: int = 0) -> Effect:
    """The effect of one row against its baseline over its seed pairs (p not yet Holm-corrected).

    Args:
        pairs: one per seed pair, each on the images both runs predicted.
        resamples: bootstrap resamples.
        seed: seed of the bootstrap's generator (a report is the same every time it is written).
    """
    if not pairs:
        raise ValueError("compare() needs at least one pair of runs")
    diffs = np.array([p.correct.mean() - p.baseline_correct.mean() for p in pairs])
    only_row = sum(int(np.sum(p.correct & ~p.baseline_correct)) for p in pairs)
    only_base = sum(int(np.sum(~p.correct & p.baseline_correct)) for p in pairs)
    both = sum(int(np.sum(p.correct & p.baseline_correct)) for p in pairs)
    neither = sum(int(np.sum(~p.correct & ~p.baseline_correct)) for p in pairs)
    # McNemar: only the disagreeing images carry information about which model is better.
    p_raw = float(mcnemar([[both, only_row], [only_base, neither]], exact=True).pvalue)
    low, high = bootstrap_interval(pairs, resamples, np.random.default_rng(seed))
    delta = 100.0 * float(diffs.mean())
    return Effect(
        delta=delta,
        ci_low=low,
        ci_high=high,
        p_raw=p_raw,
        p_value=p_raw,
        verdict=verdict(delta, low, high, p_raw),
        pairs=len(pairs),
        images=min(len(p.correct) for p in pairs),
        only_row=only_row,
        only_baseline=only_base,
    )


def bootstrap_interval(
    pairs: Sequence[Pair], resamples: int, rng: np.random.Generator
) -> tuple[float, float]:
    """Percentile interval (points) of the mean paired difference: seed pairs, then images.

    Pairs on one test set share each resample of its images (the same images are drawn for all
    of them, as a new test set would be); with several pairs, the pairs themselves are then
    resampled with replacement (another set of seeds).
    """
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(pairs):
        groups.setdefault(p.test_set, []).append(i)
    per_pair = np.empty((resamples, len(pairs)))
    for members in groups.values():
        # Each image's difference (-1, 0, 1) in every pair of the group: its agreement pattern.
        d = np.stack(
            [pairs[i].correct.astype(np.int8) - pairs[i].baseline_correct.astype(np.int8) for i in members],
            axis=1,
        )
        patterns, counts = np.unique(d, axis=0, return_counts=True)
        n = int(counts.sum())
        drawn = rng.multinomial(n, counts / n, size=resamples)  # [resamples, patterns]
        per_pair[:, members] = drawn @ patterns / n
    if len(pairs) > 1:
        chosen = rng.integers(0, len(pairs), size=per_pair.shape)
        means = np.take_along_axis(per_pair, chosen, axis=1).mean(axis=1)
    else:
        means = per_pair[:, 0]
    tail = 100.0 * (1.0 - CONFIDENCE) / 2.0
    low, high = np.percentile(100.0 * means, [tail, 100.0 - tail])
    return float(low), float(high)


def verdict(delta: float, low: float, high: float, p_value: float, alpha: float = ALPHA) -> str:
    """better / worse when the (corrected) p is below alpha and the interval is on one side of 0.

    Both are asked for: with several seeds the interval also carries the seed-to-seed variation,
    which McNemar's test on the pooled images does not see.
    """
    if p_value < alpha and low > 0.0 and delta > 0.0:
        return VERDICTS[0]
    if p_value < alpha and high < 0.0 and delta < 0.0:
        return VERDICTS[1]
    return VERDICTS[2]


def holm(effects: Sequence[Effect | None], alpha: float = ALPHA) -> list[Effect | None]:
    """Holm's correction across one table's comparisons (None entries stay None)."""
    present = [e for e in effects if e is not None]
    if not present:
        return list(effects)
    corrected = iter(multipletests([e.p_raw for e in present], alpha=alpha, method="holm")[1])
    out: list[Effect | None] = []
    for effect in effects:
        if effect is None:
            out.append(None)
            continue
        p_value = float(next(corrected))
        out.append(
            replace(
                effect,
                p_value=p_value,
                verdict=verdict(effect.delta, effect.ci_low, effect.ci_high, p_value, alpha),
            )
        )
    return out
