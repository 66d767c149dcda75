"""Layers shared by every model family: activations resolved by name in one place."""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
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


NormLayer = Callable[[int], nn.Module]


def conv3x3(in_chs: int, out_chs: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (a norm layer follows or precedes it)."""
    return nn.Conv2d(in_chs, out_chs, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_chs: int, out_chs: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution with no bias."""
    return nn.Conv2d(in_chs, out_chs, kernel_size=1, stride=stride, bias=False)


def init_weights(model: nn.Module) -> None:
    """Initialise as the reference CIFAR codes do (fb.resnet.torch, WRN, DenseNet).

    Convs: He normal with fan_out, std = sqrt(2 / (k * k * out_channels)) (He et al. 2015), the
    ReLU gain whatever the activation, as in the references. Norm layers: weight 1, bias 0.
    Linear: PyTorch's default weights, bias 0.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)


class PreActHead(nn.Module):
    """Norm - act - global average pool - linear: the head of pre-activation networks (WRN,
    DenseNet), whose last block ends on a conv and so still needs normalising and activating.

    (B, C, H, W) -> logits (B, num_classes).
    """

    def __init__(self, in_chs: int, num_classes: int, act_layer: ActLayer, norm_layer: NormLayer) -> None:
        super().__init__()
        self.norm = norm_layer(in_chs)
        self.act = act_layer()
        self.fc = nn.Linear(in_chs, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
