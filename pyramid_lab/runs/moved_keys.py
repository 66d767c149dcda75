"""Settings that moved, and the configs saved before they did.

Since the LightningModule was reduced to the training step (issue 22), the module's speed-ups,
divergence detection and TTA are callbacks, label smoothing is part of the loss and the lr warm-up
part of the scheduler factory. ``MOVED_MODULE_KEYS`` names the new key of each old override (the
command line stops with one line naming it); :func:`upgrade_saved_config` rewrites a config saved
in an older checkpoint or run folder so that ``mode=test``/``predict`` and resumes still read it.
"""

from __future__ import annotations

import copy
from typing import Any

from omegaconf import DictConfig, OmegaConf

# Old key -> new key (a longer old key first: module.compile_mode before module.compile).
MOVED_MODULE_KEYS = {
    "module.label_smoothing": "module.loss.label_smoothing",
    "module.warmup_epochs": "module.scheduler.warmup_epochs",
    "module.warmup_start_factor": "module.scheduler.warmup_start_factor",
    "module.divergence_check_every": "callbacks.divergence.check_every",
    "module.compile_backend": "callbacks.compile.backend",
    "module.compile_mode": "callbacks.compile.mode",
    "module.compile": "callbacks.compile.enabled",
    "module.channels_last": "callbacks.channels_last.enabled",
    "module.tta": "tricks=tta (callbacks.tta)",
}
_OLD_MODULE_SETTINGS = {key.split(".", 1)[1] for key in MOVED_MODULE_KEYS}


def moved_key(key: str) -> str | None:
    """The new name of an override's key (``module.tta`` -> ``tricks=tta (callbacks.tta)``), or None."""
    for old, new in MOVED_MODULE_KEYS.items():
        if key == old or key.startswith(old + "."):
            return new
    return None


def upgrade_saved_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` (a resolved config as a container) in today's layout: a copy, when it was saved
    with the module's old settings (``module.label_smoothing``, ``module.tta``, ...), else itself."""
    module = config.get("module")
    if not isinstance(module, dict) or not _OLD_MODULE_SETTINGS & module.keys():
        return config
    config = copy.deepcopy(config)
    module = config["module"]
    callbacks = config.setdefault("callbacks", {}) or {}
    config["callbacks"] = callbacks
    module["loss"] = {
        "_target_": "pyramid_lab.training.CrossEntropy",
        "label_smoothing": module.pop("label_smoothing", 0.0),
    }
    module["scheduler"] = {
        "_target_": "pyramid_lab.optim.warmup.with_warmup",
        "scheduler": module.get("scheduler"),
        "warmup_epochs": module.pop("warmup_epochs", 0),
        "warmup_start_factor": module.pop("warmup_start_factor", 0.1),
    }
    callbacks["divergence"] = {
        "_target_": "pyramid_lab.training.divergence.DivergenceWatch",
        "check_every": module.pop("divergence_check_every", 100),
    }
    callbacks["compile"] = {
        "_target_": "pyramid_lab.training.compile.Compile",
        "enabled": module.pop("compile", False),
        "backend": module.pop("compile_backend", "inductor"),
        "mode": module.pop("compile_mode", "default"),
    }
    callbacks["channels_last"] = {
        "_target_": "pyramid_lab.training.compile.ChannelsLast",
        "enabled": module.pop("channels_last", False),
    }
    if module.pop("tta", False):
        callbacks["tta"] = {"_target_": "pyramid_lab.training.tta.TTA"}
    return config


def upgrade_config(cfg: DictConfig) -> DictConfig:
    """:func:`upgrade_saved_config` for a DictConfig (a checkpoint's config): ``cfg`` itself when
    it is already in today's layout."""
    module = cfg.get("module")
    if not isinstance(module, DictConfig) or not _OLD_MODULE_SETTINGS & set(module.keys()):
        return cfg
    return OmegaConf.create(upgrade_saved_config(OmegaConf.to_container(cfg)))
