"""A folder of runs -> results.md, results.csv, curves.png, and per table <table>.png and
<table>_effects.png."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pyramid_lab.report.collect import Collected, ReportError, Run, collect_runs
from pyramid_lab.report.figures import write_effect_figures, write_figures
from pyramid_lab.report.render import csv_text, markdown_document
from pyramid_lab.report.tables import Table, build_tables
from pyramid_lab.runs.atomic import atomic_write


class ReportWarning(UserWarning):
    """A metrics.json that could not be used; the other runs are still reported."""


@dataclass(frozen=True)
class ReportPaths:
    """The files a report wrote."""

    markdown: Path
    csv: Path
    curves: Path  # every table's curves: curves.png, or with one table that table's figure
    tables: dict[str, Path]
    effects: dict[str, Path] = field(default_factory=dict)


def load_runs(root: str | Path) -> list[Run]:
    """Every usable run under ``root``; each unusable metrics.json becomes a ReportWarning.

    Raises:
        ReportError: ``root`` is missing or empty, or holds no metrics.json.
    """
    collected = collect_runs(root)
    for problem in collected.problems:
        warnings.warn(problem, ReportWarning, stacklevel=2)
    return collected.runs


def write_report(root: str | Path, out_dir: str | Path | None = None) -> ReportPaths:
    """Report on every run under ``root``: tables (md, csv) and figures, into out_dir (default root).

    Raises:
        ReportError: ``root`` holds no usable run, or out_dir is not a folder.
    """
    collected = collect_runs(root)
    for problem in collected.problems:
        warnings.warn(problem, ReportWarning, stacklevel=2)
    return write_outputs(collected, build_tables(check_usable(collected)), out_dir)


def check_usable(collected: Collected) -> list[Run]:
    """The collected runs, or a ReportError when every metrics.json was unreadable."""
    if not collected.runs:
        raise ReportError(
            f"none of the {collected.files} metrics.json files under {collected.root} could be read"
        )
    return collected.runs


def output_folder(root: Path, out_dir: str | Path | None) -> Path:
    """The folder the report writes into (``out_dir``, default ``root``), made if missing.

    Raises:
        ReportError: ``out_dir`` is a file.
    """
    out = Path(out_dir) if out_dir is not None else root
    if out.exists() and not out.is_dir():
        raise ReportError(
            f"--out {out} is a file; expected a folder for results.md, results.csv and the PNGs"
        )
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_outputs(
    collected: Collected, tables: Sequence[Table], out_dir: str | Path | None = None
) -> ReportPaths:
    """Write the report files for already built tables (the CLI and write_report share this)."""
    out = output_folder(collected.root, out_dir)
    curves, figures = write_figures(tables, out)
    effects = write_effect_figures(tables, out)
    markdown, csv_path = out / "results.md", out / "results.csv"
    atomic_write(
        markdown, markdown_document(tables, collected.root, figures, collected.problems, effects, out)
    )
    atomic_write(csv_path, csv_text(tables))
    return ReportPaths(markdown=markdown, csv=csv_path, curves=curves, tables=figures, effects=effects)
