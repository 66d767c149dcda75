"""The search space: Hydra's sweep syntax (as in hydra-optuna-sweeper) -> Optuna distributions.

``interval(a, b)`` is uniform (integers when both ends are), ``tag(log, interval(a, b))`` log-uniform,
``choice(x, y, ...)`` categorical, ``range(start, stop, step)`` the integers (or floats) of Python's
``range`` (``stop`` excluded); anything else is a fixed override passed to every trial. A
parameter listed in ``conditions`` is sampled only when another one has one of the given values
(``optimizer.rho: optimizer=sam``), so that SGD trials never receive SAM's ``rho``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep, Transformer
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from pyramid_lab.errors import ConfigError


@dataclass
class SearchSpace:
    """What every trial samples (in order) and what it is given as is.

    Attributes:
        distributions: parameter (a config key or group) -> its distribution, parents first.
        fixed: overrides passed unchanged to every trial (``experiment=...``, ``scale=smoke``).
        conditions: parameter -> (parent parameter, the parent's values that enable it).
    """

    distributions: dict[str, BaseDistribution]
    fixed: list[str] = field(default_factory=list)
    conditions: dict[str, tuple[str, tuple[Any, ...]]] = field(default_factory=dict)

    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        """Suggest every enabled parameter in ``trial``; returns ``{parameter: value}``."""
        values: dict[str, Any] = {}
        for name, distribution in self.distributions.items():
            condition = self.conditions.get(name)
            if condition is not None and values.get(condition[0]) not in condition[1]:
                continue
            values[name] = suggest(trial, name, distribution)
        return values

    def overrides(self, values: Mapping[str, Any]) -> list[str]:
        """The trial's command-line overrides: the fixed ones, then ``key=value`` per parameter."""
        return [*self.fixed, *(f"{name}={format_value(value)}" for name, value in values.items())]


def parse_space(
    params: Mapping[str, Any] | None,
    arguments: Sequence[str] = (),
    conditions: Mapping[str, str] | None = None,
) -> SearchSpace:
    """Read ``hydra.sweeper.params`` and the command line's overrides (which win) into a space.

    Args:
        params: ``{key: "interval(...)" | "choice(...)" | ... | a fixed value}`` from the YAML.
        arguments: the command line's task overrides, e.g. ``["scale=smoke", "model.depth=8"]``.
        conditions: ``{parameter: "parent=value[,value...]"}``.
    """
    lines = [f"{key}={value}" for key, value in (params or {}).items()] + list(arguments)
    distributions: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides(lines):
        key = override.get_key_element()
        distributions.pop(key, None)
        fixed.pop(key, None)
        if override.is_sweep_override():
            distributions[key] = to_distribution(override)
        else:
            fixed[key] = override.input_line or f"{key}={override.get_value_element_as_str()}"
    parsed: dict[str, tuple[str, tuple[Any, ...]]] = {}
    for name, text in (conditions or {}).items():
        if name not in distributions:
            continue  # fixed on the command line, or not searched
        parent, values = _parse_condition(name, text, [*distributions, *fixed])
        if parent in fixed:  # a fixed parent decides once: always sampled, or never
            if _value_of(fixed[parent]) not in values:
                del distributions[name]
            continue
        parsed[name] = (parent, values)
    # Parents before the parameters they enable, otherwise the YAML's order.
    order = sorted(distributions, key=lambda name: name in parsed)
    return SearchSpace({name: distributions[name] for name in order}, list(fixed.values()), parsed)


def to_distribution(override: Override) -> BaseDistribution:
    """One sweep override (``choice``, ``range``, ``interval``, ``tag(log, interval)``) as a distribution."""
    value = override.value()
    key = override.get_key_element()
    if isinstance(value, ChoiceSweep) or (isinstance(value, RangeSweep) and value.shuffle):
        return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.identity)))
    if isinstance(value, RangeSweep):
        values = list(override.sweep_iterator(transformer=Transformer.identity))
        if not values:
            raise ConfigError(f"hydra.sweeper.params.{key}: {override.input_line} is empty")
        step = value.step if value.step is not None else 1
        if all(isinstance(v, int) for v in (value.start, value.stop, step)):
            return IntDistribution(int(values[0]), int(values[-1]), step=int(step))
        return FloatDistribution(float(values[0]), float(values[-1]), step=float(step))
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    raise ConfigError(
        f"hydra.sweeper.params.{key}={override.input_line}: use choice(...), range(...), interval(...) "
        "or tag(log, interval(...))"
    )


def suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    """``trial.suggest_*`` for a distribution object (Optuna's public way to sample one)."""
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    if isinstance(distribution, FloatDistribution):
        return trial.suggest_float(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    raise TypeError(f"unsupported distribution {distribution!r}")


def format_value(value: Any) -> str:
    """A sampled value as Hydra's override grammar reads it back to the same value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if text and all(ch.isalnum() or ch in "_-./" for ch in text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _parse_condition(name: str, text: str, parameters: Sequence[str]) -> tuple[str, tuple[Any, ...]]:
    parent, sep, values = str(text).partition("=")
    parent = parent.strip()
    if not sep or parent not in parameters or parent == name:
        raise ConfigError(
            f"hydra.sweeper.conditions.{name}={text}: write 'PARENT=VALUE[,VALUE...]' where PARENT is "
            f"another parameter of the search ({', '.join(p for p in parameters if p != name) or 'none'})"
        )
    parsed = OverridesParser.create().parse_override(f"{parent}={values}")
    wanted = parsed.sweep_iterator() if parsed.is_sweep_override() else [parsed.value()]
    return parent, tuple(wanted)


def _value_of(line: str) -> Any:
    return OverridesParser.create().parse_override(line).value()
