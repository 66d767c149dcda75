"""train(cfg): build everything from the composed config, fit, test, and write the run record."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.errors import InstantiationException
from hydra.utils import instantiate as hydra_instantiate
from omegaconf import DictConfig, OmegaConf

from pyramid_lab.errors import ConfigError
from pyramid_lab.module import DivergedError
from pyramid_lab.record import RunRecord

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

    Raises the error that stopped the run (ConfigError for bad input, DivergedError for a loss
    that became NaN or inf) after recording it; an interrupted run returns its record.
    """
    run_dir = Path(cfg.paths.output_dir)
    record = RunRecord(run_dir, overrides or [], extra=_identity(cfg))
    record.update()
    trainer = None
    try:
        pl.seed_everything(cfg.seed, workers=True)
        datamodule = instantiate(cfg.data)
        net = instantiate(cfg.model)
        params = count_parameters(net)
        record.update(params=params, model=cfg.model._target_.rsplit(".", 1)[-1])
        check_budget(params, cfg.budget.max_params)
        module = instantiate(cfg.module, net=net)
        callbacks = [*instantiate_group(cfg.get("callbacks")), record]
        loggers = instantiate_group(cfg.get("logger"))
        trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
        for logger in loggers:
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)

        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        # trainer.test replaces callback_metrics: keep what fit ended with.
        record.update(**_final(trainer))
        if trainer.interrupted:
            return record.finish("interrupted", error="training was interrupted")
        # The study reports the model after its last epoch, not the best checkpoint.
        trainer.test(module, datamodule=datamodule, verbose=False)
        return record.finish("completed", **_final(trainer))
    except DivergedError as error:
        record.finish("diverged", error=str(error), **_final(trainer))
        raise
    except (KeyboardInterrupt, SystemExit):
        record.finish("interrupted", error="training was interrupted", **_final(trainer))
        raise
    except Exception as error:
        record.finish("failed", error=f"{type(error).__name__}: {error}", **_final(trainer))
        raise


def _identity(cfg: DictConfig) -> dict[str, Any]:
    """What the report groups a run by: its task, the study's table and row, and the seed."""
    identity = {"task_name": cfg.task_name, "seed": cfg.seed}
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
