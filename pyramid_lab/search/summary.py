"""The Hydra callback that ends a search: its counts, its best trial and how to train the winner.

It takes the place of the sweep summary (``pyramid_lab.launch.hydra_callbacks.SweepSummary``) in
``experiment=search_budget``: pruned and failed trials are part of a search, so the exit status is
non-zero only when no trial completed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from pyramid_lab.errors import exit_with_error
from pyramid_lab.search.results import RESULTS_NAME


def summary_lines(results: dict[str, Any], sweep_dir: Path) -> list[str]:
    counts = results.get("trials") or {}
    done = ", ".join(f"{counts.get(k, 0)} {k}" for k in ("complete", "pruned", "fail"))
    lines = [f"search {sweep_dir}: study {results.get('study_name')}: {done}"]
    if results.get("best_value") is not None:
        lines.append(
            f"best {results.get('objective')}={results['best_value']:.4f}: trial {results.get('best_trial')} "
            f"({results.get('best_run_dir')}) {results.get('best_params')}"
        )
    for solution in results.get("solutions") or []:
        lines.append(f"pareto: trial {solution['trial']} {solution['values']} {solution['params']}")
    if results.get("best_config"):
        lines.append(
            "train the winner on train + validation: "
            f"python -m pyramid_lab --config-dir {sweep_dir.resolve()} "
            "--config-name best_config"
        )
    lines.append(f"dashboard: optuna-dashboard {results.get('storage')}")
    return lines


class SearchSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        path = sweep_dir / RESULTS_NAME
        if not path.is_file():
            return  # the search stopped before its results (its error is already shown)
        results = OmegaConf.to_container(OmegaConf.load(path))
        assert isinstance(results, dict)
        print("\n".join(summary_lines(results, sweep_dir)))
        if results.get("best_value") is None and not results.get("solutions"):
            exit_with_error("no trial completed (see each trial's metrics.json for why)", 1)
