"""train(cfg): build everything from the composed config, fit, test, and write the run record."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.errors import InstantiationException
from hydra.utils import instantiate as hydra_instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException

from pyramid_lab.checkpoint import LAST, check_same_model
from pyramid_lab.checks import check_config
from pyramid_lab.errors import ConfigError
from pyramid_lab.module import DivergedError
from pyramid_lab.record import RunRecord, read_record
from pyramid_lab.tensorboard import (
    link_into_log_tree,
    log_hparams_with_results,
    log_model_summary,
    run_label,
)

log = logging.getLogger(__name__)


def count_parameters(net: pl.LightningModule | Any) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def check_budget(params: int, max_params: int | None) -> None:
    if max_params is not None and params > max_params:
        raise ConfigError(
            f"the model has {params:,} trainable parameters, over budget.max_params={max_params:,}; "
            "choose a smaller model or raise the budget"
        )


def train(cfg: DictConfig, overrides: list[str] | None = None) -> dict[str, Any]:
    """Fit and test the configured model; returns the run record (also in ``metrics.json``).

    With ``resume=true`` (the default) a run folder that already holds a completed record of the
    same config is skipped, and one that holds ``checkpoints/last.ckpt`` continues from it.
    Raises the error that stopped the run (ConfigError for bad input, DivergedError for a loss
    that became NaN or inf) after recording it.
    """
    run_dir = Path(cfg.paths.output_dir)
    previous = _previous_record(run_dir)
    if cfg.resume and previous.get("status") == "completed" and _same_config(run_dir, cfg):
        log.info("%s already completed: skipped (resume=false trains it again)", run_dir)
        return previous
    record = RunRecord(run_dir, overrides or [], extra=_identity(cfg))
    record.update()
    trainer = None
    try:
        pl.seed_everything(cfg.seed, workers=True)
        datamodule = instantiate(cfg.data)
        net = instantiate(cfg.model)
        params, model_name = count_parameters(net), cfg.model._target_.rsplit(".", 1)[-1]
        record.update(params=params, model=model_name)
        check_budget(params, cfg.budget.max_params)
        check_config(cfg, instantiate(cfg.optimizer))
        ckpt_path = _checkpoint_to_resume(cfg, run_dir)
        if ckpt_path is not None:
            check_same_model(ckpt_path, model_name, params)
            record.update(resumed_from=str(ckpt_path))
        module = instantiate(cfg.module, net=net)
        callbacks = [*instantiate_group(cfg.get("callbacks")), record]
        loggers = instantiate_group(cfg.get("logger"))
        trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
        record.config = OmegaConf.to_container(cfg, resolve=True)
        if trainer.is_global_zero:
            OmegaConf.save(record.config, run_dir / "config.yaml")
            _join_log_tree(cfg, run_dir, overrides or [], loggers, module)

        # Our checkpoints hold RNG states (numpy arrays) that weights-only unpickling refuses;
        # a ckpt_path is the user's own file, trusted like the code it runs.
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=False)
        # trainer.test replaces callback_metrics: keep what fit ended with.
        record.update(**_final(trainer))
        if trainer.interrupted:
            return record.finish("interrupted", error="training was interrupted")
        # The study reports the model after its last epoch, not the best checkpoint.
        trainer.test(module, datamodule=datamodule, verbose=False)
        record.finish("completed", **_final(trainer))
        log_hparams_with_results(loggers, _hparams(record.config), record.data)
        return record.data
    except DivergedError as error:
        record.finish("diverged", error=str(error), **_final(trainer))
        raise
    except SIGTERMException as error:
        record.finish("interrupted", error="stopped by SIGTERM; rerun to resume", **_final(trainer))
        raise SystemExit(128 + signal.SIGTERM) from error
    except (KeyboardInterrupt, SystemExit):
        record.finish("interrupted", error="training was interrupted; rerun to resume", **_final(trainer))
        raise
    except Exception as error:
        record.finish("failed", error=f"{type(error).__name__}: {error}", **_final(trainer))
        raise


def _join_log_tree(
    cfg: DictConfig, run_dir: Path, overrides: list[str], loggers: list[Any], module: Any
) -> None:
    label = run_label(run_dir, overrides)
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            link_into_log_tree(Path(logger.log_dir), Path(cfg.paths.log_dir), cfg.task_name, label)
    log_model_summary(loggers, module)


def _hparams(config: dict[str, Any]) -> dict[str, Any]:
    """The settings that distinguish runs (from the resolved config), for TensorBoard's HPARAMS tab."""
    keep = (
        "model",
        "optimizer",
        "scheduler",
        "activation",
        "module",
        "data",
        "trainer",
        "seed",
        "table",
        "row",
    )
    return {key: config[key] for key in keep if key in config}


def _previous_record(run_dir: Path) -> dict[str, Any]:
    try:
        return read_record(run_dir)
    except (OSError, ValueError):
        return {}


def _same_config(run_dir: Path, cfg: DictConfig) -> bool:
    """Whether the run folder's saved config is this one (a changed one, e.g. more epochs,
    continues from the folder's last checkpoint instead of being skipped)."""
    try:
        saved = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"))
    except OSError:
        return False
    return saved == OmegaConf.to_container(cfg, resolve=True)


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
            identity[key] = cfg.get(key)
        except Exception:  # ${hydra:...} outside a Hydra app (tests composing the config)
            identity[key] = None
    return identity


def instantiate(node: DictConfig, **kwargs: Any) -> Any:
    """hydra.utils.instantiate that lets a ConfigError through as itself: Hydra wraps whatever a
    constructor raises, which would turn a one-line message into a multi-line one."""
    try:
        return hydra_instantiate(node, **kwargs)
    except MissingMandatoryValue as error:
        raise ConfigError(
            f"{error.full_key} is required (the config leaves it ???); set it, e.g. {error.full_key}=..."
        ) from None
    except InstantiationException as error:
        cause = error.__cause__
        while isinstance(cause, InstantiationException):
            cause = cause.__cause__
        if isinstance(cause, ConfigError):
            raise cause from None
        raise


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a dict-of-configs group (callbacks, loggers); None entries skip."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if node and "_target_" in node]


def _final(trainer: pl.Trainer | None) -> dict[str, Any]:
    if trainer is None:
        return {}
    metrics = trainer.callback_metrics
    # Every train/*, val/* and test/* metric (accuracies as fractions, not percent).
    final = {name: float(value) for name, value in metrics.items() if "/" in name}
    final["epochs"] = trainer.current_epoch  # epochs completed (fit advances it after each)
    return final
