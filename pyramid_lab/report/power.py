"""What a comparison can detect: the smallest true difference found 80% of the time, and the seeds
a recipe claim needs. Points are percentage points of test accuracy.

Two questions, two noise sources:

- Do two *trained models* differ on images like these? McNemar's test on the images where they
  disagree: with a disagreement rate ``d`` on ``n`` images the per-image difference has variance
  about ``d``, so the detectable difference is ``(z(1 - alpha/2) + z(power)) * sqrt(d / n)``
  (Connor 1987's normal approximation): 0.21-0.27 points for models that disagree on 5-8% of
  90,000 images. Two independent accuracies would need ``sqrt(2 p (1 - p) / n)`` instead, larger,
  because pairing removes the images both get right or both get wrong.
- Does a *recipe* differ? The seed is the unit: k per-seed deltas, a paired t-test. Its detectable
  difference is the effect size at which that test's (noncentral-t) power reaches ``power``, times
  the sd of a per-seed delta; with independent seeds that sd is ``sqrt(2)`` times the seed-to-seed
  sd of one recipe's accuracy. One seed measures no seed variance: it makes no recipe claim at all.

The power is integrated here rather than taken from statsmodels' ``TTestPower`` or scipy's ``nct``:
with two seeds (df = 1) both return nan or a wrong root for some effect sizes (statsmodels 0.14
solves alpha 0.0125, two seeds, to an effect of 10.0 at a power of 0.22). tests/test_significance.py
checks this one against ``TTestPower`` where that is sound (5 seeds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import optimize
from scipy.stats import chi, norm, t

ALPHA = 0.05
POWER = 0.8
# Beyond this many seeds the answer is "more than MAX_SEEDS": no sweep runs that many.
MAX_SEEDS = 1000
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(256)


def paired_detectable_difference(
    images: int, disagreement: float, alpha: float = ALPHA, power: float = POWER
) -> float:
    """The difference (points) between two trained models that McNemar's test at ``alpha`` detects
    with probability ``power`` on ``images`` test images where they disagree on a share
    ``disagreement`` of them.

    Args:
        images: test images (> 0). disagreement: share in (0, 1] of images where one model is right
            and the other wrong. alpha: two-sided level. power: in (0, 1).
    """
    if images <= 0 or not 0.0 < disagreement <= 1.0:
        raise ValueError(f"need images > 0 and disagreement in (0, 1], got {images} and {disagreement}")
    z = float(norm.ppf(1.0 - alpha / 2.0) + norm.ppf(power))
    return 100.0 * z * math.sqrt(disagreement / images)


def recipe_detectable_difference(
    delta_sd: float, seeds: int, alpha: float = ALPHA, power: float = POWER
) -> float:
    """The recipe difference (points) the paired t-test on ``seeds`` per-seed deltas detects with
    probability ``power`` at two-sided ``alpha``; infinite below two seeds.

    Args:
        delta_sd: the sd of one seed pair's delta, in points (``sqrt(2)`` x the seed sd).
        seeds: seed pairs per row.
    """
    if delta_sd <= 0.0:
        raise ValueError(f"need delta_sd > 0, got {delta_sd}")
    if seeds < 2:
        return math.inf
    effect = optimize.brentq(lambda size: t_test_power(size, seeds, alpha) - power, 1e-6, 1e4, xtol=1e-6)
    return float(effect) * delta_sd


def t_test_power(effect_size: float, seeds: int, alpha: float = ALPHA) -> float:
    """The power of the two-sided one-sample t-test on ``seeds`` values at ``alpha`` when the true
    mean is ``effect_size`` sds from 0.

    With ``T = (Z + nc) / (X / sqrt(df))``, ``X ~ chi(df)``, ``nc = effect_size * sqrt(seeds)``:
    ``P(|T| > c) = E_X[Phi(nc - c X / sqrt(df)) + Phi(-nc - c X / sqrt(df))]``, integrated over X.
    """
    df = seeds - 1
    critical = float(t.ppf(1.0 - alpha / 2.0, df)) / math.sqrt(df)
    nc = effect_size * math.sqrt(seeds)

    # Gauss-Legendre over the bulk of X's distribution (all but 1e-12 of it): smooth integrand,
    # a fixed grid is exact to ~1e-9 here and a thousand times faster than adaptive quad.
    low, high = float(chi.ppf(1e-12, df)), float(chi.isf(1e-12, df))
    x = low + (high - low) * (_NODES + 1.0) / 2.0
    rejected = norm.cdf(nc - critical * x) + norm.cdf(-nc - critical * x)
    value = (high - low) / 2.0 * float(np.sum(_WEIGHTS * rejected * chi.pdf(x, df)))
    return min(1.0, float(value))


def seeds_needed(
    delta: float, delta_sd: float, alpha: float = ALPHA, power: float = POWER, most: int = MAX_SEEDS
) -> int | None:
    """The fewest seeds per row with which the paired t-test detects ``delta`` points with
    probability ``power``; None when more than ``most`` would be needed (or ``delta`` is 0)."""
    if delta_sd <= 0.0:
        raise ValueError(f"need delta_sd > 0, got {delta_sd}")
    size = abs(delta) / delta_sd
    if size == 0.0:
        return None

    # The normal approximation needs fewer seeds than the t-test: past ``most`` the answer is None.
    guess = ((norm.ppf(1.0 - alpha / 2.0) + norm.ppf(power)) / size) ** 2
    if guess > most:
        return None
    # Power grows with the seeds: bisect for the first count that reaches it.
    low, high = 2, most
    if t_test_power(size, high, alpha) < power:
        return None
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if t_test_power(size, middle, alpha) >= power else (middle + 1, high)
    return low


def pooled_delta_sd(deltas_per_row: Sequence[Sequence[float]]) -> tuple[float, int] | None:
    """The sd of a per-seed delta pooled over rows with two or more seeds, and its degrees of
    freedom (each row's deltas around its own mean); None when no row has two seeds."""
    rows = [np.asarray(d, dtype=float) for d in deltas_per_row if len(d) >= 2]
    if not rows:
        return None
    df = sum(len(d) - 1 for d in rows)
    squares = sum(float(np.sum((d - d.mean()) ** 2)) for d in rows)
    return math.sqrt(squares / df), df
