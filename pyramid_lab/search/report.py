"""The report's search section: trial history, parameter importances, accuracy against size, top trials.

For ``python -m pyramid_lab.report``: :func:`find_searches` finds the sweep folders that hold a
search (an ``optimization_results.yaml``) and :func:`write_search_section` writes its figures and
returns its Markdown. Imports no torch; the figures are drawn on Figure objects (no pyplot).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from optuna.trial import FrozenTrial, TrialState

from pyramid_lab.errors import ConfigError
from pyramid_lab.launch import warnings_filter
from pyramid_lab.search.bookkeeping import DB_NAME, PARAMS, REASON, default_storage
from pyramid_lab.search.budget import MAX_PARAMS
from pyramid_lab.search.importance import Importances, param_importances
from pyramid_lab.search.results import RESULTS_NAME, read_results

TOP = 10  # rows of the top-trials table


def find_searches(root: str | Path) -> list[Path]:
    """Every folder under ``root`` (itself included) that holds a search's results."""
    root = Path(root)
    found = [root] if (root / RESULTS_NAME).is_file() else []
    return found + sorted(p.parent for p in root.rglob(f"*/{RESULTS_NAME}"))


def load_search(sweep_dir: str | Path) -> tuple[optuna.Study, dict[str, Any]]:
    """The study a sweep folder's ``optimization_results.yaml`` names, and those results.

    A folder that was moved still opens: its own ``optuna.db`` is used when the recorded SQLite
    database is gone. A missing SQLite database is never opened: SQLAlchemy would create it, at
    whatever path the file names. The results are read as data; nothing in them is instantiated.

    Raises:
        ResultsError: the results file cannot be used (pyramid_lab.search.results.read_results).
        ConfigError: it names a SQLite storage that does not exist, and the folder has none.
    """
    sweep_dir = Path(sweep_dir)
    results = read_results(sweep_dir)
    storage = results["storage"]
    if storage.startswith("sqlite:") and not Path(storage.removeprefix("sqlite:///")).is_file():
        if not (sweep_dir / DB_NAME).is_file():
            raise ConfigError(
                f"{sweep_dir / RESULTS_NAME} names storage {storage}, which does not exist, and "
                f"{sweep_dir} holds no {DB_NAME}"
            )
        storage = default_storage(sweep_dir)
    study = optuna.load_study(study_name=results["study_name"], storage=storage)
    return study, results


def write_search_section(sweep_dir: str | Path, out_dir: str | Path | None = None) -> str:
    """Draw ``search_history.png``, ``search_importances.png`` and ``search_size.png`` into
    ``out_dir`` (default: the sweep folder) and return the section's Markdown."""
    sweep_dir = Path(sweep_dir)
    out = Path(out_dir or sweep_dir)
    out.mkdir(parents=True, exist_ok=True)
    study, results = load_search(sweep_dir)
    warnings_filter.silence()  # Optuna's notices about its experimental features, with their reason
    objective = _objective_name(results)
    trials = study.get_trials(deepcopy=False)
    states = {
        s: sum(t.state == s for t in trials)
        for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    }
    lines = [
        f"## Search: {study.study_name} ({sweep_dir})",
        "",
        (
            f"{len(trials)} trials: {states[TrialState.COMPLETE]} completed, {states[TrialState.PRUNED]} "
            f"pruned ({sum(_over_budget(t) for t in trials)} over the parameter budget before training), "
            f"{states[TrialState.FAIL]} failed. Objective: {objective} (validation, never the test set). "
            f"Storage: `{results['storage']}` (`optuna-dashboard {results['storage']}`)."
        ),
        "",
    ]
    if results.get("best_value") is not None:
        lines += [
            (
                f"Best: trial {results['best_trial']}, {objective} = {100 * results['best_value']:.2f}%; "
                f"its config: `{results.get('best_config')}`."
            ),
            "",
        ]
    importances = param_importances(study, objective)
    if importances.values:
        ranked = ", ".join(f"`{name}` {value:.2f}" for name, value in importances.values.items())
        lines += [f"Importances ({importances.describe()}): {ranked}.", ""]
    figures = {
        "search_history.png": history_figure(trials, objective),
        "search_importances.png": importance_figure(importances),
        "search_size.png": size_figure(trials, objective),
    }
    for name, figure in figures.items():
        figure.savefig(out / name, dpi=120, bbox_inches="tight")
        lines += [f"![{name.removesuffix('.png')}]({name})", ""]
    lines += top_trials_table(trials, objective)
    return "\n".join(lines) + "\n"


def history_figure(trials: Sequence[FrozenTrial], objective: str) -> Figure:
    """Each completed trial's objective by trial number, and the best so far."""
    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.subplots()
    done = [(t.number, _value(t)) for t in trials if t.state == TrialState.COMPLETE and _value(t) is not None]
    if done:
        numbers, values = zip(*done)
        best = [max(values[: i + 1]) for i in range(len(values))]
        ax.scatter(numbers, [100 * v for v in values], s=14, label="trial", color="tab:blue")
        ax.step(numbers, [100 * v for v in best], where="post", label="best so far", color="tab:orange")
        _legend_beside(ax)
    if trials:  # every trial's number on the axis, drawn or not (pruned and failed ones have no value)
        ax.set_xlim(-0.5, max(t.number for t in trials) + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # trials are numbered, never fractional
    ax.set_xlabel("trial")
    ax.set_ylabel(f"{objective} (%)")
    ax.set_title("search history")
    return fig


def importance_figure(importances: Importances) -> Figure:
    """The parameters' importances for the (first) objective (pyramid_lab/search/importance.py)."""
    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.subplots()
    if importances.note:
        ax.text(0.5, 0.5, f"no importances yet:\n{importances.note}", ha="center", va="center", fontsize=8)
    names = list(importances.values)[::-1]
    ax.barh(names, [importances.values[n] for n in names], color="tab:green")
    ax.tick_params(axis="y", labelsize=8)
    ax.set_xlabel(f"importance ({importances.evaluator}, sums to 1)")
    ax.set_title(importances.describe(), fontsize=10)
    return fig


def size_figure(trials: Sequence[FrozenTrial], objective: str) -> Figure:
    """The objective against trainable parameters for every trial, with the budget line.

    Trials over the budget were never trained: they are drawn at 0 beside the line.
    """
    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.subplots()
    groups: dict[str, list[tuple[int, float]]] = {"completed": [], "pruned by val/acc": [], "over budget": []}
    budget = None
    for t in trials:
        params = t.user_attrs.get(PARAMS)
        budget = budget or t.user_attrs.get(MAX_PARAMS)
        if params is None:
            continue
        if t.state == TrialState.COMPLETE and _value(t) is not None:
            groups["completed"].append((params, 100 * _value(t)))
        elif _over_budget(t):
            groups["over budget"].append((params, 0.0))
        elif t.state == TrialState.PRUNED and t.intermediate_values:
            groups["pruned by val/acc"].append(
                (params, 100 * t.intermediate_values[max(t.intermediate_values)])
            )
    for (label, points), marker in zip(groups.items(), ("o", "v", "x")):
        if points:
            ax.scatter(*zip(*points), marker=marker, s=18, label=label)
    if budget:
        ax.axvline(budget, color="tab:red", linestyle="--", label=f"budget {budget:,}")
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel(f"{objective} (%)")
    ax.set_title("accuracy against size")
    if any(groups.values()) or budget:
        _legend_beside(ax)
    return fig


def _legend_beside(ax: Axes) -> None:
    """The legend right of the axes, never over the points (constrained layout makes room)."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8)


def top_trials_table(trials: Sequence[FrozenTrial], objective: str, top: int = TOP) -> list[str]:
    """Markdown rows of the best completed trials: objective, size and every parameter."""
    done = sorted(
        (t for t in trials if t.state == TrialState.COMPLETE and _value(t) is not None),
        key=lambda t: -_value(t),
    )[:top]
    if not done:
        return ["No trial completed yet.", ""]
    names = sorted({name for t in done for name in t.params})
    lines = [
        f"| rank | trial | {objective} (%) | params | " + " | ".join(names) + " |",
        "|---" * (4 + len(names)) + "|",
    ]
    for rank, t in enumerate(done, 1):
        cells = [_cell(t.params.get(name)) for name in names]
        size = t.user_attrs.get(PARAMS)
        lines.append(
            f"| {rank} | {t.number} | {100 * _value(t):.2f} | {f'{size:,}' if size else ''} | "
            + " | ".join(cells)
            + " |"
        )
    return [*lines, ""]


def _objective_name(results: dict[str, Any]) -> str:
    objective = results.get("objective", "val/acc_best")
    return objective[0] if isinstance(objective, list) else str(objective)


def _value(trial: FrozenTrial) -> float | None:
    values = trial.values
    if not values or values[0] is None or not math.isfinite(values[0]):
        return None
    return float(values[0])


def _over_budget(trial: FrozenTrial) -> bool:
    return trial.state == TrialState.PRUNED and "over budget" in str(trial.user_attrs.get(REASON, ""))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
