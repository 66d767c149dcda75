"""``python -m pyramid_lab.report DIR [--out OUTDIR]``: a sweep folder as the study's tables and figures.

Exit codes: 0 when every metrics.json was read; 1 when some could not be (each named in a warning,
the rest still reported); 2 when DIR cannot be reported on at all (missing, empty, no records).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pyramid_lab import command_name

SEARCH_RESULTS = "optimization_results.yaml"  # pyramid_lab.search.results.RESULTS_NAME


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=command_name("pyramid_lab.report"),
        description="Write results.md, results.csv, curves.png, <table>.png and <table>_effects.png "
        "for every run under DIR.",
    )
    parser.add_argument(
        "dir",
        metavar="DIR",
        help="a run or sweep folder, searched recursively for metrics.json",
    )
    parser.add_argument("--out", metavar="OUTDIR", default=None, help="where to write (default: DIR)")
    args = parser.parse_args(argv)
    # Imported once the arguments are read: --help and a bad argument answer without matplotlib.
    # The figures are drawn on Figure objects and saved through Agg: no pyplot, no display needed.
    from pyramid_lab.report.collect import ReportError, collect_runs
    from pyramid_lab.report.render import terminal_text
    from pyramid_lab.report.tables import build_tables
    from pyramid_lab.report.write import check_usable, write_outputs

    try:
        collected = collect_runs(args.dir)
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for problem in collected.problems:
        print(f"warning: {problem}", file=sys.stderr)
    try:
        tables = build_tables(check_usable(collected))
        paths = write_outputs(collected, tables, args.out)
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1 if collected.problems else 2
    _earlier_attempts(collected.notes, paths.markdown)
    searches = _search_sections(args.dir, paths.markdown)
    print(terminal_text(tables))
    counts = f"{_count(len(collected.runs), 'run')} in {_count(len(tables), 'table')}"
    figures = _count(len(paths.tables), "table figure") + f", {_count(len(paths.effects), 'effects figure')}"
    every_table = "" if paths.curves in paths.tables.values() else f"{paths.curves.name}, "
    files = f"{paths.markdown.name}, {paths.csv.name}, {every_table}{figures}"
    if searches:
        files += f", the search section of {_count(len(searches), 'search')}"
    print(f"\n{counts}; wrote {files} in {paths.markdown.parent}")
    return 1 if collected.problems else 0


def _earlier_attempts(notes: list[str], markdown: Path) -> None:
    """Say which runs are reported from an earlier completed attempt (a later one failed)."""
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if notes:
        with open(markdown, "a") as file:
            file.write("\n## Reported from an earlier attempt\n\n" + "".join(f"- {n}\n" for n in notes))


def _search_sections(root: str, markdown: Path) -> list[Path]:
    """Append a section per Optuna search under ``root`` (pyramid_lab.search) to ``markdown``."""
    found = sorted({p.parent for p in Path(root).rglob(SEARCH_RESULTS)})
    if not found:
        return []
    try:  # Optuna is the [search] extra; the report itself needs only the records
        from pyramid_lab.search.report import write_search_section
    except ImportError as error:
        print(
            f"warning: {len(found)} search folder(s) not reported: {error} (pip install "
            '"pyramid_lab[search]")',
            file=sys.stderr,
        )
        return []
    sections = [write_search_section(folder, markdown.parent) for folder in found]
    with open(markdown, "a") as file:
        file.write("\n" + "\n\n".join(sections) + "\n")
    return found


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


if __name__ == "__main__":
    sys.exit(main())
