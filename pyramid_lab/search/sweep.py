"""The search loop: ask Optuna for trials, count each model, launch the trials' jobs, tell the outcome.

Each trial's job is an ordinary run of ``train()`` in the sweep folder's subfolder named by the
trial's number, launched by whichever Hydra launcher is configured (in this process, in local
processes through submitit, or as SLURM jobs). Outcomes flow through the run's ``metrics.json``
and the study's storage, never through the job's return value, which a remote launcher may lose.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from pyramid_lab.errors import ConfigError, is_finite_number
from pyramid_lab.launch import warnings_filter
from pyramid_lab.models.budget import over_budget
from pyramid_lab.runs.record_file import RECORD_NAME, read_record, write_record
from pyramid_lab.runs.trust import check_trusted
from pyramid_lab.search import bookkeeping
from pyramid_lab.search.bookkeeping import OVERRIDES, PARAMS, REASON, RUN_DIR, STATUS
from pyramid_lab.search.budget import CONSTRAINT, MAX_PARAMS, count_model_parameters
from pyramid_lab.search.pruning import PRUNER_ATTR
from pyramid_lab.search.results import write_results
from pyramid_lab.search.scale import GROUP as SCALE_GROUP
from pyramid_lab.search.scale import scale_settings, scale_wins
from pyramid_lab.search.space import SearchSpace, format_value, parse_space

log = logging.getLogger(__name__)


@dataclass
class SearchSettings:
    """``hydra.sweeper.*`` (conf/hydra/sweeper/optuna_search.yaml documents each)."""

    n_trials: int
    n_jobs: int
    storage: str | None
    study_name: str
    direction: str | list[str]
    objective: str | list[str]
    sampler: Any
    pruner: Any
    params: Any
    conditions: Any
    heartbeat_interval: int | None


@dataclass
class Pending:
    trial: optuna.Trial
    overrides: list[str]
    run_dir: Path


class Search:
    """One invocation of the search (a rerun of the same command continues the same study)."""

    def __init__(
        self, settings: SearchSettings, config: DictConfig, hydra_context: HydraContext, launcher: Launcher
    ):
        self.settings, self.config, self.hydra_context, self.launcher = (
            settings,
            config,
            hydra_context,
            launcher,
        )
        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        self.objectives = _as_list(settings.objective)
        self.directions = _as_list(settings.direction)
        _check(settings, self.objectives, self.directions)
        self.storage_url = settings.storage or bookkeeping.default_storage(self.sweep_dir)

    def run(self, arguments: Sequence[str]) -> optuna.Study:
        # Before any job installs the command's filter: Optuna's experimental-feature notices.
        warnings_filter.silence()
        space = parse_space(self._params(), arguments, _plain(self.settings.conditions))
        if not space.distributions:
            raise ConfigError("hydra.sweeper.params: nothing to search (every parameter is fixed)")
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        storage = bookkeeping.make_storage(self.storage_url, self.settings.heartbeat_interval)
        study = optuna.create_study(
            storage=storage,
            study_name=self.settings.study_name,
            directions=self.directions,
            load_if_exists=True,
        )
        # optuna-dashboard and the optuna CLI name the objectives (else "Objective 0").
        study.set_metric_names(self.objectives)
        dead = bookkeeping.fail_dead_trials(study)
        if dead:
            log.info(
                "trials %s were left running by a process that died: failed; their slots run again", dead
            )
        study.sampler = self._sampler(len(study.trials))
        # The trials' jobs read the pruner from the study (they may run on other machines).
        study.set_user_attr(PRUNER_ATTR, _plain(self.settings.pruner))
        log.info(
            "study %s in %s: %d of %d trials done; optuna-dashboard %s",
            study.study_name,
            self.storage_url,
            bookkeeping.count_used(study.trials),
            self.settings.n_trials,
            self.storage_url,
        )
        with bookkeeping.Heartbeat(storage, self.settings.heartbeat_interval) as heartbeat:
            while (batch := self._batch_size(study)) > 0:
                pending = [self._prepare(study, space) for _ in range(batch)]
                pending = [p for p in pending if p is not None]
                if pending:
                    heartbeat.watch(p.trial for p in pending)
                    self._launch(study, pending)
                    heartbeat.watch([])
        write_results(study, self.sweep_dir, self.storage_url, self.objectives, self._winner_config)
        return study

    def _params(self) -> dict[str, Any]:
        """``hydra.sweeper.params`` with what the chosen scale sets fixed (pyramid_lab/search/scale.py)."""
        choices = self.config.hydra.get("runtime", {}).get("choices", {})
        settings = scale_settings(self.hydra_context.config_loader, choices.get(SCALE_GROUP))
        params, fixed = scale_wins(_plain(self.settings.params), settings)
        if fixed:
            log.info(
                "scale=%s fixes %s for every trial: not searched", choices[SCALE_GROUP], ", ".join(fixed)
            )
        return params

    def _batch_size(self, study: optuna.Study) -> int:
        trials = study.get_trials(deepcopy=False)
        # Trials that other sweepers sharing the study are running now hold their slots too.
        running = sum(t.state == TrialState.RUNNING for t in trials)
        return min(self.settings.n_jobs, self.settings.n_trials - bookkeeping.count_used(trials) - running)

    def _sampler(self, n_existing: int) -> optuna.samplers.BaseSampler:
        # Seeded, and offset by the trials already in the study: a rerun samples new points rather
        # than replaying the first ones (the seed alone would repeat trial 0's parameters).
        node = OmegaConf.create(_plain(self.settings.sampler))
        if node.get("seed") is not None:
            node.seed = int(node.seed) + n_existing
        return instantiate(node)

    def _prepare(self, study: optuna.Study, space: SearchSpace) -> Pending | None:
        """Ask for a trial, compose its config and count its model; None when it is settled already."""
        trial = study.ask()
        bookkeeping.mark_owner(trial)
        run_dir = self.sweep_dir / str(trial.number)
        overrides = [
            *space.overrides(space.sample(trial)),
            f"++search.storage={format_value(self.storage_url)}",
            f"++search.study_name={format_value(study.study_name)}",
            f"++search.trial={trial.number}",
            f"++row={format_value(trial_row(trial.number))}",  # the trial's name in the report
            f"hydra.sweep.subdir={trial.number}",  # the run folder is named by the trial's number
        ]
        trial.set_user_attr(OVERRIDES, overrides)
        trial.set_user_attr(RUN_DIR, str(run_dir))
        if (run_dir / RECORD_NAME).exists():
            study.tell(trial, state=TrialState.FAIL)  # no status: its slot stays free
            raise ConfigError(
                f"hydra.sweep.dir={self.sweep_dir} holds runs that study {study.study_name} in "
                f"{self.storage_url} does not know (trial {trial.number}): use a new sweep folder"
            )
        try:
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
            params = count_model_parameters(cfg)
            max_params = cfg.budget.max_params
        except Exception as error:  # noqa: BLE001 - a sampled combination the model refuses: that trial fails
            cause = error.__cause__ if isinstance(error.__cause__, ConfigError) else error
            self._settle(study, trial, run_dir, "failed", f"{type(cause).__name__}: {cause}")
            return None
        if cfg.data.get("merge_val"):
            study.tell(trial, state=TrialState.FAIL)  # no status: its slot stays free
            raise ConfigError(
                "data.merge_val=true: the search selects on val/acc_best, which needs held-out validation "
                "images; use data.merge_val=false (best_config.yaml trains the winner on train + validation)"
            )
        trial.set_user_attr(PARAMS, params)
        trial.set_user_attr(MAX_PARAMS, max_params)
        if max_params is not None:
            trial.set_constraint(CONSTRAINT, params - max_params)
        reason = over_budget(params, max_params)
        if reason is not None:
            self._settle(study, trial, run_dir, "pruned", reason, params=params)
            return None
        return Pending(trial, overrides, run_dir)

    def _settle(
        self, study: optuna.Study, trial: optuna.Trial, run_dir: Path, status: str, reason: str, **fields: Any
    ) -> None:
        """Tell a trial that never launched, and leave a record of why in its run folder."""
        log.info("trial %d %s: %s", trial.number, status, reason)
        trial.set_user_attr(STATUS, status)
        trial.set_user_attr(REASON, reason)
        write_record(
            run_dir / RECORD_NAME,
            {
                "status": status,
                "error": reason,
                "run_dir": str(run_dir.resolve()),
                "trial": trial.number,
                "overrides": trial.user_attrs.get(OVERRIDES, []),
                "epochs": 0,
                "history": [],
                **fields,
            },
        )
        study.tell(trial, state=TrialState.PRUNED if status == "pruned" else TrialState.FAIL)

    def _launch(self, study: optuna.Study, pending: list[Pending]) -> None:
        first = pending[0].trial.number
        try:
            returns: Sequence[JobReturn] = self.launcher.launch([p.overrides for p in pending], first)
        except Exception as error:  # noqa: BLE001 - e.g. a SLURM job that died: the records still tell
            log.warning("the launcher raised %s: %s; reading the runs' records", type(error).__name__, error)
            returns = []
        except BaseException:
            # Ctrl-C or SIGTERM while the trials ran: fail them without a status, so that their
            # slots run again when the search is rerun (never left RUNNING).
            for p in pending:
                study.tell(p.trial, state=TrialState.FAIL, skip_if_finished=True)
            raise
        del returns  # the outcome is in each run's metrics.json (a job returns test/acc, not the objective)
        for p in pending:
            self._tell(study, p)

    def _tell(self, study: optuna.Study, pending: Pending) -> None:
        trial = pending.trial
        try:
            record = read_record(pending.run_dir)
        except (OSError, ValueError) as error:
            record = {"status": "missing", "error": f"no readable {RECORD_NAME}: {error}"}
        status = record.get("status", "missing")
        values = [record.get(name) for name in self.objectives]
        frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
        # The pruning callback writes its reason into the study before the run stops: a pruned
        # run is told as pruned even where train() records it as failed.
        if status == "pruned" or REASON in frozen.user_attrs:
            state, reason = TrialState.PRUNED, frozen.user_attrs.get(REASON) or record.get("error")
        elif status == "completed" and all(is_finite_number(v) for v in values):
            state, reason = TrialState.COMPLETE, None
        elif status == "completed":
            state, reason = TrialState.FAIL, f"completed without a finite {', '.join(self.objectives)}"
        else:
            state, reason = TrialState.FAIL, record.get("error") or status
        trial.set_user_attr(STATUS, "pruned" if state == TrialState.PRUNED else status)
        for key in ("params", "epochs", "val/acc_best", "wall_time_s"):
            if is_finite_number(record.get(key)):
                trial.set_user_attr(key, record[key])
        if reason:
            trial.set_user_attr(REASON, str(reason)[:1000])
        log.info("trial %d: %s %s", trial.number, state.name.lower(), reason or values)
        study.tell(
            trial, values=[float(v) for v in values] if state == TrialState.COMPLETE else None, state=state
        )

    def _winner_config(self, overrides: list[str]) -> DictConfig:
        # The overrides are read back from the storage, and best_config.yaml will be run: whoever
        # can write to the storage must not choose what it instantiates (pyramid_lab/runs/trust.py).
        source = f"the best trial's overrides in {self.storage_url}"
        trust = bool(self.config.get("trust_checkpoint", False))
        check_trusted(overrides, source, trust)
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        job = {k: v for k, v in OmegaConf.to_container(cfg, resolve=False).items() if k != "hydra"}
        check_trusted(job, source, trust, resolved=False)
        return cfg


def trial_row(number: int) -> str:
    """A trial's row in the report: short, and in trial order when sorted (up to trial 999)."""
    return f"trial {number:03d}"


def _check(settings: SearchSettings, objectives: list[str], directions: list[str]) -> None:
    if settings.n_trials < 0 or settings.n_jobs < 1:
        raise ConfigError(
            f"hydra.sweeper.n_trials={settings.n_trials}, n_jobs={settings.n_jobs}: need n_trials >= 0 "
            "(the study's total) and n_jobs >= 1"
        )
    if len(objectives) != len(directions):
        raise ConfigError(
            f"hydra.sweeper.objective={objectives} and direction={directions}: "
            "give one direction per objective"
        )
    for name in objectives:
        if name.startswith("test/"):
            raise ConfigError(
                f"hydra.sweeper.objective={name}: a search must not select on the test set; "
                "use a validation metric such as val/acc_best"
            )
    for direction in directions:
        if direction not in ("maximize", "minimize"):
            raise ConfigError(f"hydra.sweeper.direction={direction}: use maximize or minimize")


def _as_list(value: Any) -> list[str]:
    value = _plain(value)
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
