"""Reports on runs: every metrics.json under a folder -> the study's tables and figures.

``python -m pyramid_lab.report DIR`` writes ``results.md``, ``results.csv``, ``curves.png``,
``<table>.png`` and ``<table>_effects.png`` into DIR. Every row is compared with its table's
baseline row on the same test images (``significance``: the seed as the unit, a paired t-test and
its interval, Holm-adjusted; McNemar per seed pair about the trained models; ``power``: what they
can detect). The same steps from Python (a notebook)::

    runs = load_runs("multirun/2026-11-28/10-00-00")
    tables = build_tables(runs)
    plot_curves(tables[0].runs, "train/acc")
    plot_effects(tables[0])
    paths = write_report("multirun/2026-11-28/10-00-00")
"""

from typing import TYPE_CHECKING

from pyramid_lab import lazy_exports

if TYPE_CHECKING:  # for readers and type checkers; at run time each name loads on first use
    from pyramid_lab.report.collect import (
        UNTABLED,
        Collected,
        RecordError,
        ReportError,
        Run,
        collect_runs,
    )
    from pyramid_lab.report.figures import (
        effects_figure,
        plot_curves,
        plot_effects,
        plot_test_accuracy,
        study_figure,
        table_figure,
    )
    from pyramid_lab.report.power import (
        paired_detectable_difference,
        recipe_detectable_difference,
        seeds_needed,
    )
    from pyramid_lab.report.render import csv_text, markdown_table, terminal_text
    from pyramid_lab.report.significance import Effect, Pair, compare, holm
    from pyramid_lab.report.tables import Row, Table, build_tables
    from pyramid_lab.report.write import ReportPaths, ReportWarning, load_runs, write_report
    from pyramid_lab.runs.predictions_file import Predictions, load_predictions

# The module each public name lives in. Loaded on first use (PEP 562): `pyramid-lab-report --help`
# and `import pyramid_lab.report.__main__` do not pay for matplotlib and statsmodels (seconds).
_EXPORTS = {
    "Collected": "pyramid_lab.report.collect",
    "Effect": "pyramid_lab.report.significance",
    "Pair": "pyramid_lab.report.significance",
    "Predictions": "pyramid_lab.runs.predictions_file",
    "RecordError": "pyramid_lab.report.collect",
    "ReportError": "pyramid_lab.report.collect",
    "ReportPaths": "pyramid_lab.report.write",
    "ReportWarning": "pyramid_lab.report.write",
    "Row": "pyramid_lab.report.tables",
    "Run": "pyramid_lab.report.collect",
    "Table": "pyramid_lab.report.tables",
    "UNTABLED": "pyramid_lab.report.collect",
    "build_tables": "pyramid_lab.report.tables",
    "collect_runs": "pyramid_lab.report.collect",
    "compare": "pyramid_lab.report.significance",
    "csv_text": "pyramid_lab.report.render",
    "effects_figure": "pyramid_lab.report.figures",
    "holm": "pyramid_lab.report.significance",
    "load_predictions": "pyramid_lab.runs.predictions_file",
    "load_runs": "pyramid_lab.report.write",
    "markdown_table": "pyramid_lab.report.render",
    "paired_detectable_difference": "pyramid_lab.report.power",
    "plot_curves": "pyramid_lab.report.figures",
    "plot_effects": "pyramid_lab.report.figures",
    "plot_test_accuracy": "pyramid_lab.report.figures",
    "recipe_detectable_difference": "pyramid_lab.report.power",
    "seeds_needed": "pyramid_lab.report.power",
    "study_figure": "pyramid_lab.report.figures",
    "table_figure": "pyramid_lab.report.figures",
    "terminal_text": "pyramid_lab.report.render",
    "write_report": "pyramid_lab.report.write",
}


__getattr__ = lazy_exports(__name__, _EXPORTS)


__all__ = [
    "UNTABLED",
    "Collected",
    "Effect",
    "Pair",
    "Predictions",
    "RecordError",
    "ReportError",
    "ReportPaths",
    "ReportWarning",
    "Row",
    "Run",
    "Table",
    "build_tables",
    "collect_runs",
    "compare",
    "csv_text",
    "effects_figure",
    "holm",
    "load_predictions",
    "load_runs",
    "markdown_table",
    "plot_curves",
    "plot_effects",
    "plot_test_accuracy",
    "paired_detectable_difference",
    "recipe_detectable_difference",
    "seeds_needed",
    "study_figure",
    "table_figure",
    "terminal_text",
    "write_report",
]
