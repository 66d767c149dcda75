"""``python -m pyramid_lab.report DIR [--out OUTDIR]``: a sweep folder as the study's tables and figures.
``python -m pyramid_lab.report plan --delta 0.2 --seed-sd 0.15``: how many seeds a claim needs.

Exit codes: 0 when every file was read; 1 when some could not be used (a metrics.json, a
test_predictions.npz, an optimization_results.yaml: each named in a warning and in results.md's
"Skipped files", the rest still reported); 2 when DIR cannot be reported on at all (missing,
empty, no records).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from pyramid_lab import command_name
from pyramid_lab.errors import show_error

SEARCH_RESULTS = "optimization_results.yaml"  # pyramid_lab.search.results.RESULTS_NAME


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["plan"]:  # a sweep folder named plan: python -m pyramid_lab.report ./plan
        from pyramid_lab.report.plan import plan_main

        return plan_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog=command_name("pyramid_lab.report"),
        description="Write results.md, results.csv, curves.png, <table>.png and <table>_effects.png "
        "for every run under DIR. 'python -m pyramid_lab.report plan --help': how many seeds a "
        "recipe claim needs.",
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
    from pyramid_lab.report.write import check_usable, output_folder, write_outputs

    try:
        collected = collect_runs(args.dir)
        out = output_folder(collected.root, args.out)
    except ReportError as error:
        return show_error(error, 2)
    for problem in collected.problems:
        print(f"warning: {problem}", file=sys.stderr)
    try:
        tables = build_tables(check_usable(collected))
    except ReportError as error:
        return show_error(error, 1 if collected.problems else 2)
    sections, searches, skipped = _search_sections(args.dir, out)
    collected = replace(collected, problems=[*collected.problems, *skipped])
    paths = write_outputs(collected, tables, out)
    _earlier_attempts(collected.notes, paths.markdown)
    if sections:
        with open(paths.markdown, "a") as file:
            file.write("\n" + "\n\n".join(sections) + "\n")
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


def _search_sections(root: str, out: Path) -> tuple[list[str], list[Path], list[str]]:
    """A Markdown section per Optuna search under ``root`` (pyramid_lab.search), its figures drawn
    into ``out``; returns the sections, their folders, and one line per search that was skipped."""
    found = sorted({p.parent for p in Path(root).rglob(SEARCH_RESULTS)})
    if not found:
        return [], [], []
    try:  # Optuna is the [search] extra; the report itself needs only the records
        import optuna
        import sqlalchemy

        from pyramid_lab.search.report import write_search_section
        from pyramid_lab.search.results import ResultsError
    except ImportError as error:
        print(
            f"warning: {len(found)} search folder(s) not reported: {error} (pip install "
            '"pyramid_lab[search]")',
            file=sys.stderr,
        )
        return [], [], []
    # What opening a study named by a sweep folder can raise: a missing study (KeyError), a
    # storage URL that does not open (SQLAlchemy), a database of another Optuna version.
    unopenable = (
        KeyError,
        ValueError,
        OSError,
        optuna.exceptions.OptunaError,
        sqlalchemy.exc.SQLAlchemyError,
    )
    sections, reported, skipped = [], [], []
    for folder in found:
        try:
            sections.append(write_search_section(folder, out))
            reported.append(folder)
        except ResultsError as error:
            skipped.append(f"{folder / SEARCH_RESULTS}: {error}")
        except unopenable as error:
            skipped.append(
                f"{folder / SEARCH_RESULTS}: its study cannot be opened ({type(error).__name__}: "
                f"{str(error).splitlines()[0] if str(error) else ''})"
            )
        else:
            continue
        print(f"warning: {skipped[-1]}", file=sys.stderr)
    return sections, reported, skipped


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


if __name__ == "__main__":
    sys.exit(main())
