"""A run folder belongs to one config: what a rerun may change, and each attempt's config, kept.

A rerun into a run folder continues its checkpoint (or skips it when completed). That is only right
when the rerun would compute what the folder's earlier attempts computed: the same seed, model,
optimizer, schedule, data, tricks. :func:`config_changes` names the settings in which a rerun's
config differs from the folder's ``config.yaml``, ignoring the settings listed in
:data:`SAFE_TO_CHANGE`; :func:`refuse_changed_config` stops such a rerun with one line unless
``resume=force``. Every key not listed there counts, so a setting added later is compared until
someone argues here why it is safe.

Every attempt's resolved config is kept as ``attempts/<n>/config.yaml`` (``config.yaml`` is the
latest), and ``metrics.json``'s ``attempts`` names each attempt's file.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from pyramid_lab.errors import ConfigError
from pyramid_lab.runs.atomic import atomic_write
from pyramid_lab.runs.moved_keys import upgrade_saved_config

CONFIG_NAME = "config.yaml"
ATTEMPTS_DIR = "attempts"

# Settings (dotted keys; a key covers everything under it) that a rerun may change without
# changing what the run computes, and why each is safe.
SAFE_TO_CHANGE = {
    "mode": "only mode=train runs reach this check",
    "task_name": "a label: the default output folder and the log tree's folder",
    "table": "a label the report groups by, set by the table sweeps",
    "row": "a label the report groups by, set by the table sweeps",
    "ckpt_path": "which checkpoint to start from (one of another model: check_same_model refuses it)",
    "resume": "how a rerun starts, not what it trains",
    "trust_checkpoint": "whether a checkpoint may be loaded, not what it holds",
    "predict": "read by mode=predict only",
    "budget": "a check before training: a run it lets through trains the same",
    "paths": "where files go: a moved or renamed folder holds the same run",
    "logger": "where curves are written",
    "callbacks.progress_bar": "console output",
    "callbacks.images": "TensorBoard images, drawn outside the training step",
    "callbacks.predictions": "files written after the test",
    "callbacks.model_checkpoint": "which best checkpoint is kept; the test uses the last weights",
    "callbacks.last_checkpoint": "where the resumable state is written",
    "callbacks.interrupt_checkpoint": "where the state is written on SIGTERM or Ctrl-C",
    "trainer.default_root_dir": "a path",
    "trainer.enable_progress_bar": "console output",
    "trainer.enable_model_summary": "console output",
    "trainer.log_every_n_steps": "how often curves are logged",
    "data.dataset.root": "where the data set is, not which (its classes and statistics are checked on load)",
    "data.dataset.download": "whether a missing data set is fetched",
    "callbacks.divergence": "how often a non-finite loss is looked for, not the training",
}
# trainer.max_epochs may grow (a longer run continues the folder's checkpoint): it is compared after
# the rerun's value is set back to the saved one, so the settings derived from it (a cosine T_max,
# the snapshot ensemble's length) compare equal too. A smaller max_epochs is a change.
GROWS = "trainer.max_epochs"


def saved_config(run_dir: Path, force: bool = False) -> dict[str, Any] | None:
    """The folder's latest resolved config (``config.yaml``), or None when it has none.

    Raises:
        ConfigError: the file exists but is not a YAML mapping (with ``force``: None).
    """
    path = run_dir / CONFIG_NAME
    if not path.exists():
        return None
    try:  # read as it was written (OmegaConf's YAML), so that equal configs compare equal
        config: Any = OmegaConf.to_container(OmegaConf.load(path))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, OmegaConfBaseException) as error:
        config = error
    if not isinstance(config, dict) or not config:  # empty: cut short, when it was not yet written atomically
        if force:
            return None
        if isinstance(config, Exception):
            reason = str(config).strip().splitlines()[0] if str(config).strip() else type(config).__name__
        else:
            reason = "empty" if not config else "not a mapping of settings"
        raise ConfigError(
            f"{path} cannot be read ({reason}), so the run folder's config cannot be compared; "
            "use a new run folder, or resume=force to continue anyway"
        )
    return upgrade_saved_config(config)  # a folder written before the module's settings moved


def config_changes(saved: dict[str, Any], cfg: DictConfig) -> list[str]:
    """The settings in which ``cfg`` (resolved) differs from ``saved``, apart from
    :data:`SAFE_TO_CHANGE` and a larger ``trainer.max_epochs``, as dotted keys.

    Said the way a user changes them: a setting that only follows another (``data.seed:
    ${seed}``, ``module.optimizer: ${optimizer}``) is left out, and a swapped object (another
    ``_target_``: ``optimizer=adam``, ``tricks=ema``) is named once, not key by key.
    """
    probe = copy.deepcopy(cfg)
    saved_epochs, epochs = _get(saved, GROWS), OmegaConf.select(cfg, GROWS)
    if isinstance(saved_epochs, int) and isinstance(epochs, int) and epochs >= saved_epochs:
        with open_dict(probe):
            OmegaConf.update(probe, GROWS, saved_epochs)
    old, new = _flatten(saved), _flatten(OmegaConf.to_container(probe, resolve=True))
    changed = [
        key
        for key in sorted(old.keys() | new.keys())
        if old.get(key, _ABSENT) != new.get(key, _ABSENT) and not _safe(key) and not _derived(cfg, key)
    ]
    swapped = [key[: -len("._target_")] for key in changed if key.endswith("._target_")]
    return [
        key[: -len("._target_")] if key.endswith("._target_") else key
        for key in changed
        if key.endswith("._target_") or not any(key.startswith(node + ".") for node in swapped)
    ]


def refuse_changed_config(run_dir: Path, saved: dict[str, Any] | None, cfg: DictConfig) -> list[str]:
    """Stop a rerun whose config would compute something else than the folder's; returns the
    changed keys, which ``resume=force`` lets through (the caller records them).

    Raises:
        ConfigError: one line naming the changed keys and the two ways out.
    """
    if saved is None:
        return []
    changes = config_changes(saved, cfg)
    if changes and cfg.resume != "force":
        shown = ", ".join(_describe(key, saved, cfg) for key in changes[:6])
        more = f" and {len(changes) - 6} more" if len(changes) > 6 else ""
        raise ConfigError(
            f"run folder {run_dir} holds a run of another config ({shown}{more}); use a new run folder "
            f"for this config, or resume=force to continue the folder's run with it anyway"
        )
    return changes


# Objects whose state a checkpoint holds and whose class cannot change under it: torch's Adam
# fails on SGD's state (KeyError: 'step'); a scheduler would take another one's attributes.
UNRESUMABLE = ("optimizer", "scheduler")


def refuse_unresumable(run_dir: Path, changes: list[str], checkpoint: Path) -> None:
    """Stop ``resume=force`` from loading ``checkpoint`` into another optimizer or scheduler.

    Raises:
        ConfigError: one line naming the swapped objects.
    """
    swapped = [key for key in changes if key in UNRESUMABLE]
    if swapped:
        raise ConfigError(
            f"resume=force cannot continue {checkpoint} with another {' and '.join(swapped)}: the "
            f"checkpoint holds the state of the one it was trained with; use a new run folder for "
            f"this config (run folder: {run_dir})"
        )


def save_attempt_config(run_dir: Path, config: dict[str, Any], attempt: int, earlier_recorded: bool) -> str:
    """Write ``config`` as attempt ``attempt``'s and as the folder's latest; returns the attempt's
    file, relative to ``run_dir``.

    A ``config.yaml`` left by a version that kept only the latest (``earlier_recorded`` is False
    while no earlier attempt names its file) is kept as ``attempts/before-<attempt>/config.yaml``.
    """
    latest = run_dir / CONFIG_NAME
    if not earlier_recorded and latest.is_file():
        atomic_write(run_dir / ATTEMPTS_DIR / f"before-{attempt}" / CONFIG_NAME, latest.read_bytes())
    text = OmegaConf.to_yaml(OmegaConf.create(config))
    relative = f"{ATTEMPTS_DIR}/{attempt}/{CONFIG_NAME}"
    atomic_write(run_dir / relative, text)
    atomic_write(latest, text)
    return relative


_ABSENT = object()


def _safe(key: str) -> bool:
    return any(key == safe or key.startswith(safe + ".") for safe in SAFE_TO_CHANGE)


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists are compared whole."""
    if not isinstance(node, dict) or not node:
        return {prefix: node} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in node.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _derived(cfg: DictConfig, dotted: str) -> bool:
    """Whether the setting, or a node above it, is an interpolation of another in ``cfg``."""
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, DictConfig) or part not in node:
            return False
        if OmegaConf.is_interpolation(node, part):
            return True
        node = node._get_node(part)
    return False


def _get(config: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(config, dict):
            return None
        config = config.get(part)
    return config


def _describe(key: str, saved: dict[str, Any], cfg: DictConfig) -> str:
    """``seed: 42 -> 1``; ``optimizer: torch.optim.SGD -> torch.optim.Adam`` (values when short)."""
    old, new = _get(saved, key), OmegaConf.select(cfg, key, default=None)
    if isinstance(old, dict) or isinstance(new, DictConfig):  # a swapped object: its targets
        old = old.get("_target_") if isinstance(old, dict) else old
        new = new.get("_target_") if isinstance(new, DictConfig) else new
    if OmegaConf.is_config(new):
        new = OmegaConf.to_container(new, resolve=True)
    # Strings quoted, except dotted names (targets), which read better bare.
    shown = [repr(v) if isinstance(v, str) and "." not in v else str(v) for v in (old, new)]
    if max(len(text) for text in shown) > 40:
        return key
    return f"{key}: {shown[0]} -> {shown[1]}"
