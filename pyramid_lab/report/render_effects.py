"""The comparison parts of results.md: each row against the baseline, what the runs can detect,
per-class accuracy with counts, and links to each run's pictures."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from pyramid_lab.report.power import (
    MAX_SEEDS,
    paired_detectable_difference,
    pooled_delta_sd,
    recipe_detectable_difference,
    seeds_needed,
)
from pyramid_lab.report.significance import ALPHA, ONE_SEED, Effect
from pyramid_lab.report.study import ASSUMED_DISAGREEMENT, ASSUMED_SEED_SD, STUDY_TEST_IMAGES
from pyramid_lab.report.tables import Row, Table

# Pictures a run leaves in its folder (pyramid_lab.training.predictions).
PICTURES = {
    "confident_wrong.png": "most confidently wrong",
    "confusion.png": "confusion matrix",
}
EFFECT_NOTE = (
    "Against the baseline, the seed is the unit: Δ = row − baseline test accuracy in points, the "
    "mean of the per-seed deltas (runs paired by seed, on the same test images); its interval is "
    "the paired t-interval (df = seeds − 1) at the level shown, Holm-adjusted across the table's "
    "rows like p; p is the paired t-test's, Holm-corrected; verdict better/worse exactly when that "
    "interval lies above/below 0 (then p < 0.05). With one seed per row there is no recipe verdict: "
    "one seed cannot show the seed-to-seed variation. McNemar's p per seed pair is about the two "
    "trained models (do they differ on these images), not about the recipe, and is not corrected. "
    "Snapshot ensembles are compared with their own single models, a Holm family of their own. "
    "Blank (—): no test predictions to compare."
)
# How many seeds to name in "what k seeds can detect".
SEED_COUNTS = (2, 3, 5, 10)


def aligned(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Rows of cells as aligned Markdown."""
    cells = [list(header), *(list(r) for r in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |" for line in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def effects_table(table: Table, md: Callable[[str], str]) -> str:
    """Each row against the table's baseline, then any snapshot ensemble against its single model;
    empty when the table has no baseline row."""
    if table.baseline is None:
        return ""
    header = (
        "row",
        f"Δ vs {table.baseline} (pts)",
        "per seed",
        "interval (Holm)",
        "p (Holm)",
        "verdict",
        "seeds",
        "McNemar p per seed (these models)",
        "study Δ (pts)",
    )
    text = aligned(header, [_effect_cells(row, md) for row in table.main_rows])
    if table.ensemble_rows:
        ensembles = aligned(
            ("row", "Δ vs single model (pts)", *header[2:-1]),
            [_effect_cells(row, md)[:-1] for row in table.ensemble_rows],
        )
        text += "\n\nSnapshot ensembles against their single models (a Holm family of their own):\n\n"
        text += ensembles
    return text


def _effect_cells(row: Row, md: Callable[[str], str]) -> list[str]:
    study = "—" if row.study_delta is None else f"{row.study_delta:+.3f}"
    if row.baseline is None:
        return [md(row.row), "baseline", "", "", "", "", "", "", study]
    effect = row.effect
    if effect is None:
        return [md(row.row), "—", "—", "—", "—", "—", "0", "—", study]
    return [
        md(row.row),
        f"{effect.delta:+.2f}",
        " ".join(f"{d:+.2f}" for d in effect.deltas),
        interval_text(effect),
        "—" if effect.p_value is None else format_p(effect.p_value),
        verdict_text(effect),
        str(effect.pairs),
        " ".join(format_p(p) for p in effect.mcnemar),
        study,
    ]


def verdict_text(effect: Effect) -> str:
    """The verdict; with one seed, what that seed can say instead: whether the two models differ."""
    if effect.verdict != ONE_SEED:
        return effect.verdict
    differ = effect.mcnemar[0] < ALPHA
    models = "these two models differ" if differ else "these two models: no detectable difference"
    return f"{ONE_SEED} ({models}, McNemar p {format_p(effect.mcnemar[0])})"


def interval_text(effect: Effect) -> str:
    """``[low, high] at 98.3%``, or what one seed has instead."""
    if effect.ci_low is None or effect.ci_high is None or effect.level is None:
        return "— (one seed)"
    return f"[{effect.ci_low:+.2f}, {effect.ci_high:+.2f}] at {_percent(effect.level)}"


def _percent(level: float) -> str:
    text = f"{100.0 * level:.1f}"
    return f"{100.0 * level:.3g}%" if text == "100.0" else f"{text}%"


def format_p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def detectable_text(table: Table) -> str:
    """What this table's comparisons can detect: (a) between two trained models, from the measured
    disagreement rate; (b) between recipes, from the measured spread of the per-seed deltas, and
    the seeds the study's own deltas would need. Empty where nothing was compared."""
    effects = [row.effect for row in table.main_rows if row.effect is not None]
    if not effects:
        return ""
    lines = []
    images = min(e.images for e in effects)
    disagreeing = sum(sum(e.only_row) + sum(e.only_baseline) for e in effects)
    compared = sum(e.images * e.pairs for e in effects)
    per_pair = disagreeing / sum(e.pairs for e in effects)
    # With fewer than ~5 disagreeing images per pair (a tiny test set) the normal approximation,
    # and the number it gives (down to "0.00 points"), mean nothing: say nothing instead.
    if per_pair >= 5:
        share = disagreeing / compared
        mdd = paired_detectable_difference(images, share, ALPHA)
        lines.append(
            f"Two trained models (one seed each) on these {images:,} test images, disagreeing on "
            f"{100 * share:.1f}% of them as the pairs compared here do: McNemar detects a difference "
            f"of {mdd:.2f} points 80% of the time at 5%. That is about those two models, not a recipe."
        )
    pooled = pooled_delta_sd([e.deltas for e in effects])
    if pooled is None:
        lines.append(
            "Recipes: every row has one seed, so the seed-to-seed variation is not measured and no "
            "recipe difference can be claimed; run `seed=1,2,3` (or more: `python -m "
            "pyramid_lab.report plan`)."
        )
        return "\n\n".join(lines)
    sd, df = pooled
    if sd == 0.0:
        lines.append(
            "Recipes: every row's per-seed deltas are identical: their spread gives no power estimate."
        )
        return "\n\n".join(lines)
    reach = ", ".join(f"{k}: {recipe_detectable_difference(sd, k):.2f}" for k in SEED_COUNTS)
    text = (
        f"Recipes: the per-seed deltas here vary with an sd of {sd:.2f} points (pooled, {df} df); "
        f"with k seeds per row a paired t-test at 5% detects, 80% of the time (before Holm), a "
        f"difference of (k: points) {reach}."
    )
    need = []
    block = table.block
    for row in [] if block is None else block.rows:
        delta = block.study_difference(row)
        if row != block.baseline and delta:
            k = seeds_needed(delta, sd)
            need.append(f"{row} {delta:+.3f}: {f'more than {MAX_SEEDS:,}' if k is None else k}")
    if need:
        text += (
            " Seeds per row needed at this spread to detect the study's own deltas: " + "; ".join(need) + "."
        )
    lines.append(text)
    return "\n\n".join(lines)


def study_claims_text(tables: Sequence[Table]) -> str:
    """results.md's statement of what the study's one-seed numbers can and cannot show, with the
    study's differences in ``tables`` (from the blocks their runs recorded) that are too small."""
    low, high = (paired_detectable_difference(STUDY_TEST_IMAGES, d, ALPHA) for d in ASSUMED_DISAGREEMENT)
    below = []
    for block in (table.block for table in tables if table.block is not None):
        for row in block.rows:
            diff = block.study_difference(row)
            if row != block.baseline and diff is not None and abs(diff) < high:
                below.append(f"{block.name} {row} {diff:+.3f}")
    sds = [2**0.5 * s for s in ASSUMED_SEED_SD]
    reach = "; ".join(
        f"{k} seeds: " + "–".join(f"{recipe_detectable_difference(sd, k):.2f}" for sd in sds) for k in (2, 5)
    )
    disagree = "–".join(f"{100 * d:.0f}" for d in ASSUMED_DISAGREEMENT)
    seed_sd = "–".join(f"{s}" for s in ASSUMED_SEED_SD)
    return (
        f"What the study's numbers can show: each is one seed on {STUDY_TEST_IMAGES:,} CINIC-10 test "
        f"images. Two trained models that disagree on {disagree}% of them (an assumption: the study "
        f"kept no predictions) differ detectably (McNemar, 5%, 80% power) from {low:.2f}–{high:.2f} "
        "points: a statement about those two models. A recipe claim needs the seed-to-seed "
        f"variation, which one seed does not measure: with one seed per row none can be made. At an "
        f"assumed seed sd of {seed_sd} points, a paired t-test detects ({reach}) points. The study's "
        "differences from its baseline that two of its models could not even be told apart by: "
        + ("; ".join(below) or "none")
        + "."
    )


def per_class_table(table: Table, md: Callable[[str], str]) -> str:
    """Test accuracy (%) per class and row with the counts and a 95% Wilson interval (images as
    the unit: how precisely these runs' per-class accuracy is measured, not the seed-to-seed
    spread); rows without test predictions show the runs' mean only. Empty when nothing recorded it."""
    rows = [row for row in table.main_rows if row.class_counts or row.acc_per_class]
    if not rows:
        return ""
    classes = list(
        dict.fromkeys(name for row in rows for name in (row.class_counts or row.acc_per_class or {}))
    )
    cells = [[md(row.row), *(_class_cell(row, c) for c in classes)] for row in rows]
    return aligned(["row", *(md(c) for c in classes)], cells)


def _class_cell(row: Row, name: str) -> str:
    if row.class_counts and name in row.class_counts:
        # Imported here: statsmodels (with pandas, ~64 MB) only for tables with per-class counts.
        from statsmodels.stats.proportion import proportion_confint

        right, total = row.class_counts[name]
        low, high = proportion_confint(right, total, alpha=ALPHA, method="wilson")
        return f"{100 * right / total:.1f} ({right}/{total}; {100 * low:.1f}–{100 * high:.1f})"
    per_class = row.acc_per_class or {}
    return f"{per_class[name]:.1f}" if name in per_class else "—"


def pictures_list(table: Table, out_dir: Path, md: Callable[[str], str]) -> list[str]:
    """One line per run with pictures: links to its confident_wrong.png and confusion.png."""
    lines = []
    for row in table.rows:
        if row.ensemble_of is not None:
            continue
        for run in row.completed:
            links = [
                f"[{title}]({_link(run.folder / name, out_dir)})"
                for name, title in PICTURES.items()
                if run.folder is not None and (run.folder / name).is_file()
            ]
            if links:
                seed = "" if run.seed is None else f" (seed {run.seed})"
                lines.append(f"- {md(row.row)}{seed}: " + " · ".join(links))
    return lines


def _link(path: Path, out_dir: Path) -> str:
    return Path(os.path.relpath(path.resolve(), out_dir.resolve())).as_posix().replace(" ", "%20")
