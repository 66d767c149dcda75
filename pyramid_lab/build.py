"""build(cfg): the data, the network, the LightningModule and the Trainer from a composed config.

The one place where config becomes objects, used by training (pyramid_lab.train), testing and
prediction (pyramid_lab.evaluate). Also the checks that must run before Lightning sees a config:
Lightning's own failures for these are asserts and tracebacks deep in its loops, or silent
changes of behaviour.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, get_args

import pytorch_lightning as pl
from hydra.errors import InstantiationException
from hydra.utils import get_object
from hydra.utils import instantiate as hydra_instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue
from torch import nn

from pyramid_lab.errors import ConfigError
from pyramid_lab.models.budget import count_parameters as count_parameters  # train and evaluate use it
from pyramid_lab.models.budget import over_budget
from pyramid_lab.optim.schedule import check_interval
from pyramid_lab.optim.settings import check_optimizer_numbers
from pyramid_lab.runs.moved_keys import upgrade_config
from pyramid_lab.training.module import Classifier
from pyramid_lab.training.precision import AUTO
from pyramid_lab.training.sam import SAMClassifier, check_sam_precision, is_sam

# Trainer settings that must be whole numbers (None allowed where Lightning allows it).
_INTEGER_TRAINER_SETTINGS = (
    "max_epochs",
    "min_epochs",
    "max_steps",
    "min_steps",
    "num_nodes",
    "log_every_n_steps",
    "num_sanity_val_steps",
    "check_val_every_n_epoch",
    "accumulate_grad_batches",
)
# The callbacks that shape what evaluation computes or how fast: built for mode=test and predict
# too, where the config's other callbacks (checkpoints, curves, progress bars) are not.
EVALUATION_CALLBACKS = ("tta", "compile", "channels_last")


@dataclass
class Built:
    """What a run is made of. ``loggers`` are also the trainer's (an empty list: no logger)."""

    datamodule: pl.LightningDataModule
    net: nn.Module
    module: pl.LightningModule
    trainer: pl.Trainer
    loggers: list[Any]


def build(
    cfg: DictConfig,
    *,
    net: nn.Module | None = None,
    extra_callbacks: list[pl.Callback] | tuple[pl.Callback, ...] = (),
    callbacks: bool = True,
    loggers: bool = True,
    **trainer_kwargs: Any,
) -> Built:
    """Instantiate ``cfg.data``, ``cfg.model`` (unless ``net`` is given), ``cfg.module`` and
    ``cfg.trainer``, after checking the settings Lightning would reject obscurely.

    Args:
        cfg: the composed config (``python -m pyramid_lab`` or a checkpoint's saved one).
        net: an already built network (train() counts its parameters before anything else).
        extra_callbacks: added after the config's ``callbacks`` group.
        callbacks, loggers: whether to build the config's ``callbacks`` and ``logger`` groups
            (testing a checkpoint needs neither: no checkpoints, no curves).
        trainer_kwargs: override ``cfg.trainer`` entries (e.g. ``default_root_dir``).
    """
    cfg = upgrade_config(cfg)  # a checkpoint's config saved with the module's old settings
    optimizer = instantiate(cfg.optimizer)  # the factory (a partial): the module gets this one
    check_trainer_settings(cfg, optimizer)
    datamodule = instantiate(cfg.data)
    net = net if net is not None else instantiate(cfg.model)
    module = instantiate(cfg.module, net=net, optimizer=optimizer, **_module_class(cfg, optimizer))
    built_loggers = instantiate_group(cfg.get("logger")) if loggers else []
    config_callbacks = cfg.get("callbacks") or {}
    if not callbacks:
        config_callbacks = {k: v for k, v in config_callbacks.items() if k in EVALUATION_CALLBACKS}
    all_callbacks = [*instantiate_group(config_callbacks), *extra_callbacks]
    trainer = instantiate(
        cfg.trainer, callbacks=all_callbacks, logger=built_loggers or False, **trainer_kwargs
    )
    return Built(datamodule, net, module, trainer, built_loggers)


def _module_class(cfg: DictConfig, optimizer: object) -> dict[str, str]:
    """SAM trains through its own module (two passes per step): swapped in for the plain one."""
    target = OmegaConf.select(cfg, "module._target_")
    plain = (f"{Classifier.__module__}.{Classifier.__name__}", "pyramid_lab.training.Classifier")
    if is_sam(optimizer) and target in plain:
        return {"_target_": f"{SAMClassifier.__module__}.{SAMClassifier.__name__}"}
    return {}


def model_name(cfg: DictConfig) -> str:
    """The model's name: its builder's or class's (``pyramidnet196_a48``, ``PyramidNet``)."""
    return str(cfg.model._target_).rsplit(".", 1)[-1]


def check_budget(params: int, max_params: int | None) -> None:
    """Refuse a model over ``budget.max_params`` before anything is written (the search's rule too)."""
    reason = over_budget(params, max_params)
    if reason is not None:
        raise ConfigError(reason)


# numpy's seeds (np.random.seed, default_rng as the data splits use it) are unsigned 32-bit.
SEED_RANGE = (0, 2**32 - 1)


def check_run_settings(cfg: DictConfig) -> None:
    """Raise a one-line ConfigError, naming the key and what is valid, for a value no run can use.

    Called before a run writes anything (``train`` records the refusal in a fresh folder only).
    """
    if cfg.get("resume") not in (True, False, "force"):  # force: pyramid_lab.runs.folder_config
        raise ConfigError(f"resume={cfg.get('resume')!r} is unknown; valid: true, false, force")
    seed = cfg.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise ConfigError(f"seed={seed!r} must be an integer in [0, 2**32 - 1] (numpy's seed range)")
    epochs = cfg.trainer.get("max_epochs")
    # Lightning reads -1 as "until stopped"; refused: the schedules (T_max: ${trainer.max_epochs})
    # need a finite length and a run that never ends is never recorded as completed.
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(
            f"trainer.max_epochs={epochs!r} must be an integer >= 1 (-1, until stopped, is not supported)"
        )
    check_precision(cfg.trainer.get("precision"))
    check_optimizer_numbers(cfg.optimizer)
    scheduler = OmegaConf.select(cfg, "scheduler._target_")
    if scheduler is not None:  # before the data loads, where the module would find it
        check_interval(get_object(scheduler), OmegaConf.select(cfg, "module.scheduler_interval"))


def valid_precisions() -> tuple[str | int, ...]:
    """``auto`` (pyramid_lab.training.precision) and every value Lightning's Trainer accepts."""
    from pytorch_lightning.trainer.connectors.accelerator_connector import _PRECISION_INPUT

    return (AUTO, *(value for literal in get_args(_PRECISION_INPUT) for value in get_args(literal)))


def check_precision(precision: object) -> None:
    # Lightning's own refusal reaches the user wrapped in Hydra's multi-line instantiation error.
    valid = valid_precisions()
    if precision is not None and precision not in valid:  # None: Lightning's default
        names = ", ".join(dict.fromkeys(str(value) for value in valid))
        raise ConfigError(f"trainer.precision={precision!r} is unknown; valid: {names}")


def check_trainer_settings(cfg: DictConfig, optimizer: object) -> None:
    """Raise a one-line ConfigError for settings Lightning would reject obscurely or override."""
    trainer = cfg.trainer
    for key in _INTEGER_TRAINER_SETTINGS:
        value = trainer.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"trainer.{key}={value!r} must be an integer")
    check_precision(trainer.get("precision"))
    # On a CPU Lightning silently swaps 16-mixed for bf16-mixed: check what was asked for.
    if is_sam(optimizer):
        check_sam_precision(trainer.get("precision"))


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


def instantiate_group(group: Mapping[str, Any] | None) -> list[Any]:
    """Instantiate every entry of a dict-of-configs group (callbacks, loggers); None entries skip."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if node and "_target_" in node]
