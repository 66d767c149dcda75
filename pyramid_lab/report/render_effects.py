"""The comparison parts of results.md: each row against the baseline, what one seed can detect,
per-class accuracy, and links to each run's pictures."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from pyramid_lab.report.significance import ALPHA
from pyramid_lab.report.study import (
    BASELINE_ROWS,
    PAPER_TABLES,
    STUDY_TEST_IMAGES,
    paper_accuracy,
    smallest_detectable_difference,
    study_difference,
)
from pyramid_lab.report.tables import Row, Table

# Pictures a run leaves in its folder (pyramid_lab.training.predictions).
PICTURES = {
    "confident_wrong.png": "most confidently wrong",
    "confusion.png": "confusion matrix",
}
EFFECT_NOTE = (
    "Against the baseline: Δ = row − baseline test accuracy in points (mean over seed pairs), its "
    "95% bootstrap interval over the same test images (and over seeds when there are several), "
    "p from McNemar's exact test on the images where the two disagree, Holm-corrected across the "
    "table's rows; verdict better/worse when p < 0.05 and the interval excludes 0, otherwise no "
    "detectable difference. Blank (—): no test predictions to compare (older runs)."
)


def aligned(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Rows of cells as aligned Markdown."""
    cells = [list(header), *(list(r) for r in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |" for line in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def effects_table(table: Table, md: Callable[[str], str]) -> str:
    """Each row against the table's baseline; empty when the table has no baseline row."""
    if table.baseline is None:
        return ""
    header = (
        "row",
        f"Δ vs {table.baseline} (pts)",
        "95% interval",
        "p (Holm)",
        "verdict",
        "seed pairs",
        "study Δ (pts)",
    )
    return aligned(header, [_effect_cells(row, md) for row in table.rows])


def _effect_cells(row: Row, md: Callable[[str], str]) -> list[str]:
    study = "—" if row.study_delta is None else f"{row.study_delta:+.3f}"
    if row.baseline is None:
        return [md(row.row), "baseline", "", "", "", "", study]
    effect = row.effect
    if effect is None:
        return [md(row.row), "—", "—", "—", "—", "0", study]
    return [
        md(row.row if row.ensemble_of is None else f"{row.row} (vs the single model)"),
        f"{effect.delta:+.2f}",
        f"[{effect.ci_low:+.2f}, {effect.ci_high:+.2f}]",
        format_p(effect.p_value),
        effect.verdict,
        str(effect.pairs),
        study,
    ]


def format_p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def detectable_text(table: Table) -> str:
    """The smallest difference one seed can detect on this table's test images."""
    base = next((row for row in table.rows if row.row == table.baseline), None)
    images = table.test_images
    if base is None or base.test_acc is None or images is None:
        return ""
    mdd = smallest_detectable_difference(images, base.test_acc / 100.0, ALPHA)
    return (
        f"Smallest difference one seed can detect here (5%, binomial noise of two runs): "
        f"{mdd:.2f} points on these {images:,} test images at the baseline's {base.test_acc:.1f}%."
    )


def study_claims_text() -> str:
    """results.md's statement of what the study's test set can detect, and its claims below it."""
    below, headline = [], None
    for table, rows in PAPER_TABLES.items():
        base = paper_accuracy(table, BASELINE_ROWS.get(table))
        if base is None:
            continue
        mdd = smallest_detectable_difference(STUDY_TEST_IMAGES, base / 100.0, ALPHA)
        headline = headline or (base, mdd)
        for row in rows:
            diff = study_difference(table, row)
            if row != BASELINE_ROWS[table] and diff is not None and abs(diff) < mdd:
                below.append(f"{table} {row} {diff:+.3f}")
    if headline is None:
        return ""
    return (
        f"What one seed can detect: on the study's {STUDY_TEST_IMAGES:,} CINIC-10 test images at "
        f"{headline[0]:.1f}%, two single-seed runs must differ by {headline[1]:.2f} points before a "
        "test at 5% can tell them apart from binomial noise (z · sqrt(2 p (1 − p) / n)); "
        "seed-to-seed variation comes on top. The study's differences from its baseline below "
        "that, each from one seed: " + ("; ".join(below) or "none") + "."
    )


def per_class_table(table: Table, md: Callable[[str], str]) -> str:
    """Test accuracy (%) per class and row (mean over seeds); empty when no run recorded it."""
    rows = [(row, row.acc_per_class) for row in table.rows if row.acc_per_class]
    if not rows:
        return ""
    classes = list(dict.fromkeys(name for _, per_class in rows for name in per_class))
    cells = [
        [
            md(row.row),
            *(f"{per_class[c]:.1f}" if c in per_class else "—" for c in classes),
        ]
        for row, per_class in rows
    ]
    return aligned(["row", *(md(c) for c in classes)], cells)


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
