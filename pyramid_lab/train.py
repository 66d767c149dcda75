"""train(cfg): build everything from the composed config, fit, test, and write the run record."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from lightning_fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException

from pyramid_lab.build import (
    build,
    check_budget,
    check_run_settings,
    count_parameters,
    instantiate,
    model_name,
)
from pyramid_lab.errors import ConfigError, RunStopped, is_ctrl_c
from pyramid_lab.runs.atomic import DiskFull, is_disk_full, quiet_disk_full_in_threads
from pyramid_lab.runs.checkpoint import (
    LAST,
    Resume,
    check_same_model,
    remove_leftovers,
    remove_orphan_best,
    resume_checkpoint,
)
from pyramid_lab.runs.environment import environment
from pyramid_lab.runs.folder_config import (
    refuse_changed_config,
    refuse_unresumable,
    save_attempt_config,
    saved_config,
)
from pyramid_lab.runs.interrupt import stop_signal
from pyramid_lab.runs.lock import RunLock
from pyramid_lab.runs.log_tree import (
    link_into_log_tree,
    log_hparams_with_results,
    log_model_summary,
    run_label,
)
from pyramid_lab.runs.params import run_params
from pyramid_lab.runs.provenance import code_version
from pyramid_lab.runs.record_file import RECORD_NAME, read_record
from pyramid_lab.runs.recorder import RunRecord
from pyramid_lab.runs.trackers import finish_trackers, log_recipe
from pyramid_lab.training.predictions import TestPredictions

log = logging.getLogger(__name__)


def train(cfg: DictConfig, overrides: list[str] | None = None) -> dict[str, Any]:
    """Fit and test the configured model; returns the run record (also in ``metrics.json``).

    With ``resume=true`` (the default) a run folder that already holds a completed record of the
    same config is skipped, and one that holds ``checkpoints/last.ckpt`` continues from it.
    Raises the error that stopped the run after recording it (see :func:`stop_status`).
    """
    run_dir = Path(cfg.paths.output_dir)
    # One writer per run folder, for the life of the run (pyramid_lab/runs/lock.py).
    with RunLock(run_dir):
        return _train(cfg, run_dir, overrides)


def _train(cfg: DictConfig, run_dir: Path, overrides: list[str] | None) -> dict[str, Any]:
    # Everything that can refuse the rerun comes before the first write to the folder.
    previous = _previous_record(run_dir)
    try:
        check_run_settings(cfg)
    except ConfigError as error:
        if not (run_dir / RECORD_NAME).exists():
            # A fresh folder (a sweep's job): its record says it failed and why. A folder that
            # holds a run keeps its record as it was: nothing was tried in it.
            status, message = stop_status(error)
            RunRecord(run_dir, overrides or [], extra=_identity(cfg)).finish(status, error=message)
        raise
    saved = saved_config(run_dir, force=cfg.resume == "force")
    if cfg.resume and previous.get("status") == "completed" and _same_config(saved, cfg):
        log.info("%s already completed: skipped (resume=false trains it again)", run_dir)
        return previous
    resume, changes = _take_over(run_dir, saved, cfg)
    record = RunRecord(run_dir, overrides or [], extra=_identity(cfg))
    if changes:
        log.warning("resume=force: continuing %s with changed settings: %s", run_dir, ", ".join(changes))
        record.note_attempt(resume="force", config_changes=changes)
    record.update()
    quiet_disk_full_in_threads()  # a full disk: one line, not TensorBoard's thread traceback after it
    trainer, loggers = None, []
    try:
        pl.seed_everything(cfg.seed, workers=True)
        net = instantiate(cfg.model)
        params, name = count_parameters(net), model_name(cfg)
        record.update(params=params, model=name)
        check_budget(params, cfg.budget.max_params)
        if resume is not None:
            check_same_model(resume, name, params)
            record.update(resumed_from=str(resume.path))
        run = build(cfg, net=net, extra_callbacks=[record])
        trainer, loggers = run.trainer, run.loggers
        record.config = OmegaConf.to_container(cfg, resolve=True)
        if trainer.is_global_zero:
            # Each attempt's config is kept: a resumed run's earlier epochs may have run another.
            config_file = save_attempt_config(
                run_dir, record.config, record.attempt, any("config" in a for a in record.earlier)
            )
            record.note_attempt(config=config_file, overrides=list(overrides or []))
            _join_log_tree(cfg, run_dir, overrides or [], run)

        # weights_only=True unless the user trusted a file that needs more (trust_checkpoint).
        trainer.fit(
            run.module,
            datamodule=run.datamodule,
            ckpt_path=resume and resume.path,
            weights_only=resume is None or resume.weights_only,
        )
        # trainer.test replaces callback_metrics: keep what fit ended with.
        record.update(**_final(trainer))
        if trainer.interrupted:
            return record.finish("interrupted", error="training was interrupted")
        # The study reports the model after its last epoch, not the best checkpoint.
        trainer.test(run.module, datamodule=run.datamodule, verbose=False)
        record.finish("completed", **_final(trainer), **predictions_summary(trainer))
        log_hparams_with_results(run.loggers, _hparams(cfg, trainer), record.data)
        return record.data
    except BaseException as caught:
        error = caught
        if is_disk_full(caught) and not isinstance(caught, DiskFull):
            # Another writer (TensorBoard, the predictions) found the disk full: the same one line.
            error = DiskFull(
                f"no space left on the device of {run_dir}; free some space there, then rerun to resume"
            )
        signum = stop_signal(trainer)
        status, message = stop_status(error, signum)
        record.finish(status, error=message, **_final(trainer))
        if isinstance(error, SIGTERMException):  # SIGTERM, or a Ctrl-C that finished its step
            raise SystemExit(128 + signum) from error
        if is_ctrl_c(error):
            # A second Ctrl-C, which Lightning turns into exit(1): callers get Ctrl-C's exit 130.
            raise SystemExit(128 + signal.SIGINT) from error
        if error is not caught:
            raise error from None
        raise
    finally:
        finish_trackers(loggers, run_dir)  # pictures to MLflow and W&B; W&B's run closed


def _take_over(
    run_dir: Path, saved: dict[str, Any] | None, cfg: DictConfig
) -> tuple[Resume | None, list[str]]:
    """Check that the run folder may take this run, clean it, and verify what it resumes from.

    Returns the checkpoint to resume (None: start) and the settings ``resume=force`` changed.
    Raises a one-line ConfigError, before anything is written, for a rerun with another config
    (pyramid_lab/runs/folder_config.py) or a checkpoint that cannot be resumed.
    """
    changes = refuse_changed_config(run_dir, saved, cfg)
    cleaner = rank_zero_only.rank == 0  # under DDP rank 0 writes the folder, and cleans it
    if cleaner:
        remove_leftovers(run_dir)  # temporary files of writes a kill interrupted
    # Verified before the record is touched: a damaged checkpoint falls back to an intact one or
    # stops here with one line, and a completed record stays completed.
    explicit = bool(cfg.get("ckpt_path"))
    resume = resume_checkpoint(
        _checkpoint_to_resume(cfg, run_dir),
        explicit=explicit,
        trust=bool(cfg.get("trust_checkpoint", False)),
    )
    if saved is None and resume is not None and not explicit:
        # config.yaml lost, its checkpoint kept: the checkpoint says what trained it.
        changes = refuse_changed_config(run_dir, resume.state.config, cfg)
    if resume is not None:
        refuse_unresumable(run_dir, changes, resume.path)
    if cleaner and resume is not None and not explicit:
        remove_orphan_best(resume)
    return resume, changes


def predictions_summary(trainer: pl.Trainer) -> dict[str, Any]:
    """Per-class test accuracy and the confusion matrix, from the TestPredictions callback."""
    return next((c.summary for c in trainer.callbacks if isinstance(c, TestPredictions)), {})


def stop_status(error: BaseException, signum: signal.Signals = signal.SIGTERM) -> tuple[str, str]:
    """What the run record says when ``error`` stopped a run: ``(status, error message)``;
    ``signum``: the signal behind a ``SIGTERMException`` (pyramid_lab.runs.interrupt)."""
    if isinstance(error, RunStopped):  # diverged, pruned, ...: the run says why itself
        return error.status, str(error)
    if isinstance(error, SIGTERMException):
        return "interrupted", f"stopped by {signum.name}; rerun to resume"
    if isinstance(error, (KeyboardInterrupt, SystemExit)):
        return "interrupted", "training was interrupted; rerun to resume"
    return "failed", f"{type(error).__name__}: {error}"


def _join_log_tree(cfg: DictConfig, run_dir: Path, overrides: list[str], run: Any) -> None:
    """The run's place in the trackers: its link in the TensorBoard tree, its recipe and name in
    the others, its model summary."""
    label = run_label(run_dir, overrides)
    for logger in run.loggers:
        if isinstance(logger, TensorBoardLogger):
            link_into_log_tree(Path(logger.log_dir), Path(cfg.paths.log_dir), cfg.task_name, label)
    log_recipe(run.loggers, _hparams(cfg, run.trainer), label)
    log_model_summary(run.loggers, run.module)


def _hparams(cfg: DictConfig, trainer: pl.Trainer) -> dict[str, Any]:
    """The run's recipe and environment, one flat set for every tracker (pyramid_lab.runs.params)."""
    return run_params(cfg, environment(trainer))


def _previous_record(run_dir: Path) -> dict[str, Any]:
    try:
        return read_record(run_dir)
    except (OSError, ValueError):
        return {}


def _same_config(saved: dict[str, Any] | None, cfg: DictConfig) -> bool:
    """Whether the run folder's saved config is this one in every setting (one that changed
    nothing the run computes, e.g. more epochs or another logger, continues the folder's run)."""
    return saved is not None and saved == OmegaConf.to_container(cfg, resolve=True)


def _checkpoint_to_resume(cfg: DictConfig, run_dir: Path) -> Path | None:
    """An explicit ``ckpt_path``, else the run folder's own last checkpoint when resuming."""
    if cfg.get("ckpt_path"):
        path = Path(cfg.ckpt_path)
        if not path.is_file():
            raise ConfigError(f"ckpt_path={cfg.ckpt_path} does not exist (give a .ckpt file, or null)")
        return path
    last = run_dir / "checkpoints" / LAST
    return last if cfg.resume and last.is_file() else None


def _identity(cfg: DictConfig) -> dict[str, Any]:
    """What the report groups a run by: its task, the study's table and row, and the seed."""
    dataset = cfg.data.get("dataset", {}).get("_target_", "")
    identity = {"task_name": cfg.task_name, "seed": cfg.seed, "dataset": dataset.rsplit(".", 1)[-1] or None}
    for key in ("table", "row"):
        try:
            # A table sweep's `table` is its whole block (name, baseline, the study's numbers): the
            # report reads them from the record (conf/experiment/table1_models.yaml).
            value = OmegaConf.to_container(OmegaConf.create({key: cfg.get(key)}), resolve=True)
            identity[key] = value[key]
        except Exception:  # ${hydra:...} outside a Hydra app (tests composing the config)
            identity[key] = None
    return {**identity, **code_version()}  # which code made the run: version and git commit


def _final(trainer: pl.Trainer | None) -> dict[str, Any]:
    if trainer is None:
        return {}
    metrics = trainer.callback_metrics
    # Every train/*, val/* and test/* metric (accuracies as fractions, not percent).
    final = {name: float(value) for name, value in metrics.items() if "/" in name}
    final["epochs"] = trainer.current_epoch  # epochs completed (fit advances it after each)
    return final
