"""A run's recipe as one flat set of params, the same for every tracker: TensorBoard's HPARAMS tab,
MLflow's params, W&B's config and the CSV logger's hparams.yaml.

From the composed config, resolved, flattened with ``/`` (``optimizer/lr``, ``model/depth``):

- a ``_target_`` becomes its class's name under the node's own key (``optimizer: SGD``,
  ``model: PyramidNet``), so the optimizer and model families stay visible; ``_partial_`` is dropped;
- a value that only repeats another key (``module.optimizer: ${optimizer}``, ``data.seed: ${seed}``)
  is dropped: the key it points to is there;
- where a run writes (``paths``, file locations under them), how it is logged (``logger``,
  ``hydra``), saved or shown (checkpoints, progress bar, pictures: ``SAVE_OR_SHOW``) and how it is
  started (``mode``, ``resume``, ...) are not part of the recipe;
- ``trainer/precision`` is the precision the run used (``auto`` resolved), and the run's
  environment (device, versions: pyramid_lab.runs.environment) is added under ``env/``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from omegaconf import Container, DictConfig, ListConfig, OmegaConf

Param = bool | int | float | str | None

# Top-level keys that say where and how a run is started, logged or stored, not what it trains.
NOT_RECIPE = ("paths", "logger", "hydra", "predict", "mode", "ckpt_path", "resume", "trust_checkpoint")
_REFERENCE = re.compile(r"^\$\{[\w.]+\}$")  # ${optimizer}, ${data.num_classes}: another key's value
# Classes that save or show a run (checkpoints, progress bar, pictures), whatever their settings:
# not what it trains. Their settings would be a third of the params and none of the recipe.
SAVE_OR_SHOW = (
    "AtomicCheckpointIO",
    "ImageLogger",
    "InterruptCheckpoint",
    "ModelCheckpoint",
    "RichProgressBar",
    "TestPredictions",
    "TQDMProgressBar",
)


def run_params(cfg: DictConfig, environment: Mapping[str, Any] | None = None) -> dict[str, Param]:
    """The run's recipe, flat and clean (see the module's docstring).

    Args:
        cfg: the composed config (unresolved: interpolations show which values repeat others).
        environment: the run's environment (``environment(trainer)``); its ``precision`` replaces
            ``trainer/precision`` and the rest is added as ``env/<field>``.
    """
    places = _places(cfg)
    params: dict[str, Param] = {}
    for key in cfg:
        if key not in NOT_RECIPE:
            _flatten(str(key), cfg, key, places, params)
    for field, value in (environment or {}).items():
        params["trainer/precision" if field == "precision" else f"env/{field}"] = value
    return params


def _places(cfg: DictConfig) -> tuple[str, ...]:
    """The run's folders (``paths.*``): a value under one of them is a file location."""
    try:
        paths = OmegaConf.to_container(cfg.paths, resolve=True) if "paths" in cfg else {}
    except Exception:
        return ()
    return tuple(str(p) for p in paths.values() if isinstance(p, str) and p)


def _flatten(name: str, parent: Container, key: Any, places: tuple[str, ...], out: dict[str, Param]) -> None:
    """``parent[key]`` into ``out`` under ``name``, node by node: a value that cannot be resolved
    (``${hydra:...}`` outside a Hydra app, a trick's reference to a missing key) is left out alone."""
    node = parent._get_node(key)
    if OmegaConf.is_interpolation(parent, key) and _REFERENCE.match(str(node._value())):
        return
    try:
        value = parent[key]
    except Exception:
        return
    if isinstance(value, DictConfig):
        if _class_name(value) in SAVE_OR_SHOW:
            return
        for child in value:
            if child == "_target_":
                out[name] = _class_name(value)
            elif child != "_partial_":
                _flatten(f"{name}/{child}", value, child, places, out)
    elif isinstance(value, ListConfig):
        if any(OmegaConf.is_config(value._get_node(i)) for i in range(len(value))):
            for index in range(len(value)):
                _flatten(f"{name}/{index}", value, index, places, out)
        else:
            try:  # [32, 64]: one param, as every tracker shows it
                out[name] = str(OmegaConf.to_container(value, resolve=True))
            except Exception:
                return
    elif not (isinstance(value, str) and places and value.startswith(places)):
        out[name] = value


def _class_name(node: DictConfig) -> str | None:
    target = node.get("_target_")
    return None if target is None else str(target).rsplit(".", 1)[-1]
