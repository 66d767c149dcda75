"""Checks of the composed config that must run before Lightning sees it: Lightning's own failures
for these are asserts and tracebacks deep in its loops, or silent changes of behaviour."""

from __future__ import annotations

from omegaconf import DictConfig

from pyramid_lab.errors import ConfigError
from pyramid_lab.module import is_sam, check_sam_precision

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


def check_config(cfg: DictConfig, optimizer: object) -> None:
    """Raise a one-line ConfigError for settings Lightning would reject obscurely or override."""
    trainer = cfg.trainer
    for key in _INTEGER_TRAINER_SETTINGS:
        value = trainer.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"trainer.{key}={value!r} must be an integer")
    # On a CPU Lightning silently swaps 16-mixed for bf16-mixed: check what was asked for.
    check_sam_precision(is_sam(optimizer), trainer.get("precision"))
