"""Per-epoch pruning of a search trial: report ``val/acc`` to Optuna and stop a hopeless run.

The search (``experiment=search_budget``) adds this callback to every trial's run and gives it the
study's storage URL, its name and the trial's number as config keys (``search.*``), so that a
trial running in another process or on another node reports to the same study. The pruner is the
one the search configured (stored in the study by the sweeper), checked against the allow-list of
pyramid_lab/runs/trust.py before it is instantiated: whoever can write to the storage (a shared
database server) could otherwise run any callable in every trial. A pruned run stops after the
epoch's record and checkpoint are written and raises :class:`TrialPruned`: ``train()`` records
its ``status`` (``pruned``) and the reason in ``metrics.json``.
"""

from __future__ import annotations

import math

import optuna
import pytorch_lightning as pl
from hydra.utils import instantiate

from pyramid_lab.errors import RunStopped
from pyramid_lab.runs.trust import check_trusted
from pyramid_lab.search.bookkeeping import REASON, trial_handle

# The study's user attribute holding the pruner's config (a Hydra ``_target_`` dict).
PRUNER_ATTR = "pruner"


class TrialPruned(RunStopped):
    """The search's pruner stopped this trial: its ``val/acc`` was not promising."""

    status = "pruned"


class OptunaPruning(pl.Callback):
    """Report ``monitor`` after every validation and stop the run when the pruner says so.

    Args:
        storage: the study's SQLAlchemy URL; None outside a search (the callback does nothing).
        study_name: the study's name in that storage.
        trial: the trial's number in the study.
        monitor: the metric reported each epoch (a fraction, higher is better).
        trust: instantiate the study's pruner whatever it names (``trust_checkpoint=true``).
    """

    def __init__(
        self,
        storage: str | None,
        study_name: str | None,
        trial: int | None,
        monitor: str = "val/acc",
        trust: bool = False,
    ):
        self.storage, self.study_name, self.trial_number, self.monitor = storage, study_name, trial, monitor
        self.trust = trust
        self.trial: optuna.Trial | None = None
        self.reason: str | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or self.storage is None or self.trial_number is None or not trainer.is_global_zero:
            return
        study = optuna.load_study(study_name=self.study_name, storage=self.storage)
        if len(study.directions) > 1:
            return  # Optuna prunes single-objective studies only: a Pareto search trains every trial
        pruner = study.user_attrs.get(PRUNER_ATTR)
        if pruner:
            source = f"the user attribute {PRUNER_ATTR} of study {self.study_name} in {self.storage}"
            check_trusted(pruner, source, self.trust)
            study.pruner = instantiate(pruner)
        self.trial = trial_handle(study, int(self.trial_number))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.storage is None:
            return
        reason = self._report(trainer) if trainer.is_global_zero else None
        # Every rank stops together (under DDP only rank 0 talks to the storage).
        prune = trainer.strategy.broadcast(reason is not None, src=0)
        if prune:
            self.reason = reason or "pruned by the search"
            # Stop after this epoch: the record and last.ckpt of this epoch are still written.
            trainer.should_stop = True

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.reason is not None:
            raise TrialPruned(self.reason)

    def _report(self, trainer: pl.Trainer) -> str | None:
        value = trainer.callback_metrics.get(self.monitor)
        if self.trial is None or value is None:
            return None
        value, step = float(value), trainer.current_epoch
        if not math.isfinite(value):
            return None  # a diverged run is stopped as diverged, not pruned
        self.trial.report(value, step)
        if not self.trial.should_prune():
            return None
        pruner = type(self.trial.study.pruner).__name__
        reason = f"pruned by {pruner} after epoch {step + 1}: {self.monitor}={value:.4f} not promising"
        self.trial.set_user_attr(REASON, reason)
        return reason
