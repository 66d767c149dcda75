"""Layers shared by every model family: activations resolved by name in one place."""

from __future__ import annotations

from functools import partial
from typing import Callable

from torch import nn

from pyramid_lab.errors import ConfigError

ActLayer = Callable[[], nn.Module]

# The study's four activations (PAPER.md, Table 5). LeakyReLU uses PyTorch's default slope 0.01,
# the value the study names.
_ACTIVATIONS: dict[str, ActLayer] = {
    "relu": partial(nn.ReLU, inplace=True),
    "leaky_relu": partial(nn.LeakyReLU, negative_slope=0.01, inplace=True),
    "selu": partial(nn.SELU, inplace=True),
    "hardswish": partial(nn.Hardswish, inplace=True),
}

ACTIVATION_NAMES = tuple(_ACTIVATIONS)


def get_act_layer(act_layer: str | ActLayer) -> ActLayer:
    """Resolve an activation given by name or by class to a zero-argument constructor.

    Args:
        act_layer: one of ``relu``, ``leaky_relu``, ``selu``, ``hardswish``, or a callable that
            returns an ``nn.Module`` (e.g. ``nn.GELU``).

    Raises:
        ConfigError: for an unknown name, listing the valid ones.
    """
    if callable(act_layer):
        return act_layer
    try:
        return _ACTIVATIONS[act_layer]
    except KeyError:
        raise ConfigError(
            f"activation={act_layer!r} is unknown; valid: {', '.join(ACTIVATION_NAMES)}"
        ) from None


def create_act(act_layer: str | ActLayer) -> nn.Module:
    """A new activation module for ``act_layer`` (see :func:`get_act_layer`)."""
    return get_act_layer(act_layer)()
