"""``python -m pyramid_lab.report plan --delta 0.2 --seed-sd 0.15``: how many seeds a recipe claim
needs, before anything is trained (pyramid_lab.report.power does the arithmetic)."""

from __future__ import annotations

import argparse
import math

from pyramid_lab import command_name
from pyramid_lab.errors import show_error
from pyramid_lab.report.power import (
    ALPHA,
    MAX_SEEDS,
    POWER,
    paired_detectable_difference,
    recipe_detectable_difference,
    seeds_needed,
)

SEED_COUNTS = (2, 3, 5, 10, 20)


def plan_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog=f"{command_name('pyramid_lab.report')} plan",
        description="How many seeds per row a table needs to detect a recipe difference: a paired "
        "t-test on per-seed deltas (the report's test), with the sd of a per-seed delta taken as "
        "sqrt(2) x the seed-to-seed sd of one recipe's test accuracy.",
    )
    parser.add_argument("--delta", type=float, required=True, help="the difference to detect, in points")
    parser.add_argument(
        "--seed-sd",
        type=float,
        required=True,
        help="seed-to-seed sd of one recipe's test accuracy, in points (measure it: seed=1,2,3)",
    )
    parser.add_argument(
        "--comparisons",
        type=int,
        default=1,
        help="rows tested against the baseline in the table: Holm's first step tests at alpha / this "
        "(default 1)",
    )
    parser.add_argument("--alpha", type=float, default=ALPHA, help=f"two-sided level (default {ALPHA})")
    parser.add_argument("--power", type=float, default=POWER, help=f"wanted power (default {POWER})")
    parser.add_argument(
        "--images", type=int, default=None, help="test images: also answer for two trained models"
    )
    parser.add_argument(
        "--disagreement",
        type=float,
        default=None,
        help="share of test images on which two models disagree (with --images), e.g. 0.06",
    )
    args = parser.parse_args(argv)
    problem = _check(args)
    if problem:
        return show_error(problem, 2)
    alpha = args.alpha / args.comparisons
    delta_sd = math.sqrt(2.0) * args.seed_sd
    k = seeds_needed(args.delta, delta_sd, alpha, args.power)
    level = f"at {alpha:.3g} (two-sided" + (
        f", {args.alpha} / {args.comparisons} comparisons)" if args.comparisons > 1 else ")"
    )
    print(
        f"To detect a recipe difference of {args.delta} points {level} with {args.power:.0%} power, "
        f"seed sd {args.seed_sd} points (sd of a per-seed delta {delta_sd:.3g}):"
    )
    print(f"  seeds per row: {f'more than {MAX_SEEDS}' if k is None else k} (one seed: no recipe claim)")
    reach = ", ".join(
        f"{n}: {recipe_detectable_difference(delta_sd, n, alpha, args.power):.3g}" for n in SEED_COUNTS
    )
    print(f"  what k seeds detect (k: points): {reach}")
    if args.images is not None:
        mdd = paired_detectable_difference(args.images, args.disagreement, alpha, args.power)
        print(
            f"  two trained models on {args.images:,} images disagreeing on {args.disagreement:.1%}: "
            f"McNemar detects {mdd:.3g} points (about those two models, not the recipe)"
        )
    return 0


def _check(args: argparse.Namespace) -> str | None:
    """The first bad setting as one line, or None."""
    if not math.isfinite(args.delta) or args.delta <= 0:
        return f"--delta {args.delta} must be a difference in points > 0"
    if not math.isfinite(args.seed_sd) or args.seed_sd <= 0:
        return f"--seed-sd {args.seed_sd} must be an sd in points > 0"
    if args.comparisons < 1:
        return f"--comparisons {args.comparisons} must be >= 1"
    if not 0.0 < args.alpha < 1.0:
        return f"--alpha {args.alpha} must be in (0, 1)"
    if not 0.0 < args.power < 1.0:
        return f"--power {args.power} must be in (0, 1)"
    if (args.images is None) != (args.disagreement is None):
        return "--images and --disagreement go together"
    if args.images is not None and args.images <= 0:
        return f"--images {args.images} must be > 0"
    if args.disagreement is not None and not 0.0 < args.disagreement <= 1.0:
        return f"--disagreement {args.disagreement} must be a share in (0, 1]"
    return None
