"""The scale wins over the search space: ``scale=smoke`` keeps its small batch inside a search.

A trial's sampled values reach its job as command-line overrides, and Hydra applies overrides
after every config file, the scale's included: without this, the space's ``data.batch_size``
(64 to 256) would replace the smoke scale's batch of 8, and smoke trials would take minutes. A
scale says how big a run is, the space what it trains; so every key (or config group) the chosen
scale sets is taken out of ``hydra.sweeper.params`` and given to every trial at the scale's value.
Overrides on the command line still win over both (``scale=smoke 'data.batch_size=choice(8,16)'``
searches the batch size again).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hydra.core.config_loader import ConfigLoader
from omegaconf import DictConfig, ListConfig, OmegaConf

from pyramid_lab.search.space import format_value

GROUP = "scale"


def scale_settings(loader: ConfigLoader, scale: str | None) -> dict[str, str]:
    """``{key or group: value}`` for everything option ``scale`` of the scale group sets.

    Read from the option's file through Hydra's config sources (the search path the run uses), as
    override values: ``{"data": "digits", "data.batch_size": "8", ...}``. Empty for no scale.
    """
    if not scale:
        return {}
    path = f"{GROUP}/{scale}"
    source = next((s for s in loader.get_sources() if s.is_config(path)), None)
    if source is None:
        return {}
    result = source.load_config(path)
    config = OmegaConf.to_container(result.config, resolve=False)
    assert isinstance(config, dict)
    package = result.header.get("package")
    prefix = "" if package == "_global_" else f"{package or GROUP}."
    settings = {}
    for entry in config.pop("defaults", None) or []:
        if isinstance(entry, Mapping):  # {"override /data": "digits"}
            for key, value in entry.items():
                group = str(key).removeprefix("override").strip().lstrip("/").replace("/", ".")
                settings[group] = format_value(value)
    for key, value in _leaves(config):
        settings[prefix + key] = format_value(value)
    return settings


def scale_wins(
    params: Mapping[str, Any] | None, settings: Mapping[str, str]
) -> tuple[dict[str, Any], list[str]]:
    """The space with every parameter the scale sets fixed at the scale's value.

    Returns:
        the new ``params`` and the ``key=value`` of each parameter the scale fixed.
    """
    params = dict(params or {})
    fixed = [f"{key}={settings[key]}" for key in params if key in settings]
    return {key: settings.get(key, value) for key, value in params.items()}, fixed


def _leaves(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, (dict, DictConfig)):
        return [leaf for key, value in node.items() for leaf in _leaves(value, f"{prefix}{key}.")]
    if isinstance(node, (list, ListConfig)):
        return []  # a list is one value of its key, and no search space samples one
    return [(prefix.removesuffix("."), node)]
