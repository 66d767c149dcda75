"""``python -m pyramid_lab.report DIR [--out OUTDIR]``: a sweep folder as the study's tables and figures.

Exit codes: 0 when every metrics.json was read; 1 when some could not be (each named in a warning,
the rest still reported); 2 when DIR cannot be reported on at all (missing, empty, no records).
"""

from __future__ import annotations

import argparse
import sys

# The figures are drawn on Figure objects and saved through Agg: no pyplot, no display needed.
from pyramid_lab.report.collect import ReportError, collect_runs
from pyramid_lab.report.render import terminal_text
from pyramid_lab.report.tables import build_tables
from pyramid_lab.report.write import check_usable, write_outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pyramid_lab.report",
        description="Write results.md, results.csv, curves.png and <table>.png for every run under DIR.",
    )
    parser.add_argument(
        "dir", metavar="DIR", help="a run or sweep folder, searched recursively for metrics.json"
    )
    parser.add_argument("--out", metavar="OUTDIR", default=None, help="where to write (default: DIR)")
    args = parser.parse_args(argv)
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
    print(terminal_text(tables))
    counts = f"{_count(len(collected.runs), 'run')} in {_count(len(tables), 'table')}"
    figures = _count(len(paths.tables), "table figure")
    files = f"{paths.markdown.name}, {paths.csv.name}, {paths.curves.name}, {figures}"
    print(f"\n{counts}; wrote {files} in {paths.markdown.parent}")
    return 1 if collected.problems else 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


if __name__ == "__main__":
    sys.exit(main())
