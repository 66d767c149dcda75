"""Which parameters mattered: PED-ANOVA importances for the study's (first) objective.

PED-ANOVA (Watanabe et al., IJCAI 2023; Optuna 5's default evaluator) compares the parameters of
the best trials (the top 10% by the objective) with those of all trials: a parameter is important
when the best trials concentrate in part of its range. It assesses conditional parameters too (SAM's
``rho``), which fANOVA leaves out. It ranks for *low* values of its target, so the target follows
the study's direction: for a maximised ``val/acc_best`` it is the trials with the highest accuracy
that are compared (Optuna's own default target does the same for one objective; with several
objectives we rank the first, negated when it is maximised).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import optuna
from optuna.importance import PedAnovaImportanceEvaluator
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

# The name the figure and optimization_results.yaml give the method.
EVALUATOR = "PED-ANOVA"
TARGET_QUANTILE = 0.1  # PED-ANOVA's default: the top 10% of trials


@dataclass(frozen=True)
class Importances:
    """Importances (summing to 1, most important first) and what they were computed for.

    Attributes:
        values: parameter -> importance; empty when there were too few completed trials.
        evaluator: the method's name (``PED-ANOVA``).
        objective: the objective the importances rank for, e.g. ``val/acc_best``.
        direction: ``maximize`` or ``minimize``: the best trials are those with the highest or
            lowest values of the objective.
        note: why ``values`` is empty, else None.
    """

    values: dict[str, float]
    evaluator: str
    objective: str
    direction: str
    note: str | None = None

    def as_record(self) -> dict[str, object]:
        """What optimization_results.yaml keeps: the method, what it ranked for, the values."""
        return {
            "evaluator": self.evaluator,
            "objective": self.objective,
            "direction": self.direction,
            "target": f"top {TARGET_QUANTILE:.0%} of trials",
            "values": {name: round(float(value), 6) for name, value in self.values.items()},
            **({"note": self.note} if self.note else {}),
        }

    def describe(self) -> str:
        best = "highest" if self.direction == "maximize" else "lowest"
        return f"{self.evaluator}: what sets the {best} {self.objective} (top {TARGET_QUANTILE:.0%}) apart"


def param_importances(study: optuna.Study, objective: str) -> Importances:
    """PED-ANOVA importances of ``study``'s parameters for its first objective, best trials first."""
    direction = study.directions[0]
    name = "maximize" if direction == StudyDirection.MAXIMIZE else "minimize"
    completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(completed) < 2:
        return Importances({}, EVALUATOR, objective, name, f"{len(completed)} completed trial(s), need 2")
    # One objective: Optuna's default target is the objective in the study's direction. Several:
    # the first objective, as a value where lower is better (what PED-ANOVA ranks for).
    sign = -1.0 if direction == StudyDirection.MAXIMIZE else 1.0
    target = None if len(study.directions) == 1 else (lambda t: sign * _first(t))
    try:
        with warnings.catch_warnings():
            # "importances will be equal" with very few trials: the figure says how many there were.
            warnings.simplefilter("ignore", UserWarning)
            values = optuna.importance.get_param_importances(
                study, evaluator=PedAnovaImportanceEvaluator(target_quantile=TARGET_QUANTILE), target=target
            )
    except (RuntimeError, ValueError) as error:  # e.g. no parameter varies among the completed trials
        return Importances({}, EVALUATOR, objective, name, str(error))
    return Importances(dict(values), EVALUATOR, objective, name)


def _first(trial: FrozenTrial) -> float:
    value = trial.values[0] if trial.values else None
    return float(value) if value is not None and math.isfinite(value) else float("nan")
