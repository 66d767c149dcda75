"""A search's results in its sweep folder: ``optimization_results.yaml`` and the winner's config.

``optimization_results.yaml`` keeps hydra-optuna-sweeper's keys (``name``, ``best_params``,
``best_value``; ``solutions`` for several objectives) and adds where the study and the best run are,
and the parameters' importances with the method that computed them (``importances.evaluator``).
``best_config.yaml`` is the best trial's whole config as a primary config, set to train on
train + validation (``data.merge_val: true``) and test, so that the winner is trained with

    python -m pyramid_lab --config-dir <sweep folder> --config-name best_config

(add ``trainer.max_epochs=...`` for a longer run; ``data.merge_val=false`` reproduces the trial).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
import yaml
from omegaconf import DictConfig, OmegaConf

from pyramid_lab.runs.reading import UnreadableFile, read_regular
from pyramid_lab.search.bookkeeping import OVERRIDES, RUN_DIR
from pyramid_lab.search.importance import param_importances

RESULTS_NAME = "optimization_results.yaml"
WINNER_NAME = "best_config.yaml"
# What only the search needs: the trial's pruning hook and where it reports.
SEARCH_KEYS = ("search",)
SEARCH_CALLBACKS = ("optuna_pruning",)
# write_results writes about 1 kB; a file far larger was not written by it.
RESULTS_LIMIT = 2**20
# What the report needs to find the study again.
_REQUIRED = {"study_name": "the study's name", "storage": "the study's storage URL"}


class ResultsError(ValueError):
    """An optimization_results.yaml that cannot be used; the message says why (without the path)."""


def read_results(sweep_dir: str | Path) -> dict[str, Any]:
    """A sweep folder's ``optimization_results.yaml``, checked: a regular file of at most 1 MiB,
    plain YAML (no tags: ``yaml.safe_load``), a mapping that names the study and its storage.

    Raises:
        ResultsError: the file is missing, not a regular file, too large, not YAML, or lacks
            ``study_name`` or ``storage``.
    """
    try:
        results = yaml.safe_load(read_regular(Path(sweep_dir) / RESULTS_NAME, RESULTS_LIMIT))
    except UnreadableFile as error:
        raise ResultsError(str(error)) from None
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as error:
        raise ResultsError(f"not valid YAML ({_yaml_reason(error)})") from None
    if not isinstance(results, dict):
        raise ResultsError(f"expected a YAML mapping, got {type(results).__name__}")
    for key, meaning in _REQUIRED.items():
        if not isinstance(results.get(key), str) or not results[key]:
            raise ResultsError(f"'{key}' is {results.get(key)!r}, expected {meaning}")
    return results


def write_results(
    study: optuna.Study,
    sweep_dir: Path,
    storage_url: str,
    objectives: Sequence[str],
    compose: Callable[[list[str]], DictConfig],
) -> dict[str, Any]:
    """Write ``optimization_results.yaml`` (and ``best_config.yaml`` when a trial completed).

    Args:
        study: the finished (or partly finished) study.
        sweep_dir: the sweep folder.
        storage_url: where the study lives (recorded for the report and optuna-dashboard).
        objectives: the record fields optimised, e.g. ``["val/acc_best"]``.
        compose: overrides -> the composed config (the launcher's way of building a trial's config).
    """
    trials = study.get_trials(deepcopy=False)
    counts = Counter(t.state.name.lower() for t in trials)
    results: dict[str, Any] = {"name": "optuna"}
    winner: optuna.trial.FrozenTrial | None = None
    if len(objectives) == 1:
        completed = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        winner = study.best_trial if completed else None
        results["best_params"] = dict(winner.params) if winner else None
        results["best_value"] = _number(winner.value) if winner else None
        results["best_trial"] = winner.number if winner else None
        results["best_run_dir"] = winner.user_attrs.get(RUN_DIR) if winner else None
    else:
        results["solutions"] = [
            {"trial": t.number, "params": dict(t.params), "values": [_number(v) for v in t.values]}
            for t in study.best_trials
        ]
    results |= {
        "objective": list(objectives) if len(objectives) > 1 else objectives[0],
        "directions": [d.name.lower() for d in study.directions],
        "study_name": study.study_name,
        "storage": storage_url,
        "trials": {state: counts.get(state, 0) for state in ("complete", "pruned", "fail", "running")},
        "importances": param_importances(study, objectives[0]).as_record(),
    }
    if winner is not None:
        path = write_winner_config(
            compose(list(winner.user_attrs[OVERRIDES])), sweep_dir / WINNER_NAME, winner
        )
        results["best_config"] = str(path)
    (sweep_dir / RESULTS_NAME).write_text(OmegaConf.to_yaml(OmegaConf.create(results)))
    return results


def write_winner_config(cfg: DictConfig, path: Path, trial: optuna.trial.FrozenTrial) -> Path:
    """The trial's config as a primary config that trains it on train + validation and tests it."""
    config = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(config, dict)
    config.pop("hydra", None)
    for key in SEARCH_KEYS:
        config.pop(key, None)
    for key in SEARCH_CALLBACKS:
        (config.get("callbacks") or {}).pop(key, None)
    config["data"]["merge_val"] = True
    config["task_name"] = "search_winner"
    config["row"] = None  # "trial 007" named the trial's run, not this one
    # Hydra's own settings (run folder, callbacks) from conf/hydra/default.yaml, as in conf/config.yaml.
    config = {"defaults": [{"hydra": "default"}, "_self_"], **config}
    header = (
        f"# The best trial of the search in {path.parent.resolve()}: trial {trial.number} "
        f"({trial.value:.4f}), run {trial.user_attrs.get(RUN_DIR, '?')}\n"
        "# as a config that trains it on train + validation and tests it:\n"
        f"#   python -m pyramid_lab --config-dir {path.parent.resolve()} --config-name {path.stem}\n"
        "# data.merge_val=false reproduces the trial itself; trainer.max_epochs=... trains longer.\n"
    )
    path.write_text(header + OmegaConf.to_yaml(OmegaConf.create(config)))
    return path


def _yaml_reason(error: BaseException) -> str:
    # PyYAML's own message spans five lines with a caret drawing; keep what and where.
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or type(error).__name__
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else str(problem)


def _number(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None
