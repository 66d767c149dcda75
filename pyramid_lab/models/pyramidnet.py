"""PyramidNet (Han et al. 2017, "Deep Pyramidal Residual Networks") with optional ShakeDrop.

Built exactly as the official PyTorch release builds its CIFAR model (dyhan0920/PyramidNet-PyTorch,
``PyramidNet.py``): same unit count (truncating ``(depth - 2) / 6`` or ``/ 9``), the same additive
widening and its ``int(round(.))`` rounding, pre-activation units without a ReLU before the first
conv, average-pool downsampling with zero-padded shortcut channels, BN-act-pool-linear head and the
same initialisation, so parameter counts and shapes equal the reference's for any depth and alpha.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pyramid_lab.errors import ConfigError
from pyramid_lab.models.layers import ActLayer, conv1x1, conv3x3, get_act_layer
from pyramid_lab.models.shakedrop import ShakeDrop, linear_drop_probs


def add_zero_padded_shortcut(residual: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
    """``residual + [shortcut, 0]``: the shortcut's missing channels are zeros (no projection)."""
    missing = residual.shape[1] - shortcut.shape[1]
    if missing:
        shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, missing))
    return residual + shortcut


class BasicUnit(nn.Module):
    """BN - conv3x3 - BN - act - conv3x3 - BN (Han et al. 2017, Fig. 6(d))."""

    expansion = 1

    def __init__(
        self, in_channels: int, channels: int, stride: int, act_layer: ActLayer, drop_prob: float
    ) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn2 = nn.BatchNorm2d(channels)
        self.act = act_layer()
        self.conv2 = conv3x3(channels, channels)
        self.bn3 = nn.BatchNorm2d(channels)
        self.shake_drop = ShakeDrop(drop_prob) if drop_prob > 0 else nn.Identity()
        self.downsample = _downsample(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.bn1(x))
        out = self.conv2(self.act(self.bn2(out)))
        out = self.shake_drop(self.bn3(out))
        return add_zero_padded_shortcut(out, self.downsample(x))


class BottleneckUnit(nn.Module):
    """BN - conv1x1 - BN - act - conv3x3 - BN - act - conv1x1 (x4) - BN (Han et al. 2017)."""

    expansion = 4

    def __init__(
        self, in_channels: int, channels: int, stride: int, act_layer: ActLayer, drop_prob: float
    ) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = conv1x1(in_channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv2 = conv3x3(channels, channels, stride)
        self.bn3 = nn.BatchNorm2d(channels)
        self.conv3 = conv1x1(channels, channels * self.expansion)
        self.bn4 = nn.BatchNorm2d(channels * self.expansion)
        self.act = act_layer()
        self.shake_drop = ShakeDrop(drop_prob) if drop_prob > 0 else nn.Identity()
        self.downsample = _downsample(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.bn1(x))
        out = self.conv2(self.act(self.bn2(out)))
        out = self.conv3(self.act(self.bn3(out)))
        out = self.shake_drop(self.bn4(out))
        return add_zero_padded_shortcut(out, self.downsample(x))


def _downsample(stride: int) -> nn.Module:
    # The reference halves the shortcut with a 2x2 average pool (ceil_mode) instead of a projection.
    if stride == 1:
        return nn.Identity()
    return nn.AvgPool2d(2, stride=2, ceil_mode=True)


def pyramid_widths(depth: int, alpha: float, bottleneck: bool) -> list[int]:
    """Bottleneck/basic channel count of every unit, by the reference's additive rule.

    The width grows by ``alpha / N`` per unit from 16 (N units in all) and each unit takes
    ``int(round(width))``: Python's round, as in the reference, so halves round to even.
    """
    units_per_stage = (depth - 2) // (9 if bottleneck else 6)
    add_rate = alpha / (3 * units_per_stage)
    width = 16.0
    widths = []
    for _ in range(3 * units_per_stage):
        width += add_rate
        widths.append(int(round(width)))
    return widths


class PyramidNet(nn.Module):
    """PyramidNet for 32x32 images (CIFAR, CINIC-10), additive widening.

    Args:
        depth: total depth; ``(depth - 2) // 6`` basic or ``(depth - 2) // 9`` bottleneck units per
            stage, truncating as the reference does (196 bottleneck -> 21 units per stage).
        alpha: total widening over the network (float allowed), e.g. 48 in the study.
        num_classes: output logits.
        bottleneck: bottleneck units (outputs 4x wider) instead of basic units.
        shakedrop: ShakeDrop perturbation probability of the last unit (``1 - p_L``; 0.5 in
            Yamada et al. 2018 and the study), decaying linearly to the first; 0 disables it.
        act_layer: activation by name (relu, leaky_relu, selu, hardswish) or class.

    Input (B, 3, 32, 32) -> logits (B, num_classes).
    """

    def __init__(
        self,
        depth: int,
        alpha: float,
        num_classes: int = 10,
        bottleneck: bool = False,
        shakedrop: float = 0.0,
        act_layer: str | ActLayer = "relu",
    ) -> None:
        super().__init__()
        unit = BottleneckUnit if bottleneck else BasicUnit
        divisor = 9 if bottleneck else 6
        if (depth - 2) // divisor < 1:
            kind = "bottleneck" if bottleneck else "basic"
            raise ConfigError(
                f"model.depth={depth} is too small for {kind} units: need depth >= {divisor + 2} "
                f"(depth = {divisor}n + 2, n >= 1 units per stage)"
            )
        if alpha < 0:
            raise ConfigError(f"model.alpha={alpha} must be >= 0 (the total widening, e.g. 48)")
        if not 0.0 <= shakedrop <= 1.0:
            raise ConfigError(f"model.shakedrop={shakedrop} must be in [0, 1] (0.5 in the study)")
        if num_classes < 1:
            raise ConfigError(f"model.num_classes={num_classes} must be >= 1")
        act = get_act_layer(act_layer)
        self.depth, self.alpha, self.bottleneck = depth, alpha, bottleneck

        widths = pyramid_widths(depth, alpha, bottleneck)
        drop_probs = linear_drop_probs(shakedrop, len(widths))
        units_per_stage = len(widths) // 3
        self.conv1 = conv3x3(3, 16)
        self.bn1 = nn.BatchNorm2d(16)
        units, in_channels = [], 16
        for i, (width, drop_prob) in enumerate(zip(widths, drop_probs)):
            stride = 2 if i in (units_per_stage, 2 * units_per_stage) else 1
            units.append(unit(in_channels, width, stride, act, drop_prob))
            in_channels = width * unit.expansion
        self.units = nn.Sequential(*units)
        self.bn_final = nn.BatchNorm2d(in_channels)
        self.act_final = act()
        self.fc = nn.Linear(in_channels, num_classes)
        self.num_features = in_channels
        self._init_weights()

    def _init_weights(self) -> None:
        # As the reference: convs N(0, sqrt(2 / (k*k*out))) (He et al. 2015, fan-out), BN (1, 0);
        # the linear head keeps PyTorch's default initialisation, as the reference does.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> pooled features (B, num_features)."""
        x = self.units(self.bn1(self.conv1(x)))
        x = self.act_final(self.bn_final(x))
        # Global average pooling: the reference's AvgPool2d(8) on 32x32 inputs, for any size.
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))


# The study's variants (PAPER.md, Tables 2 and 8) and the PyramidNet paper's own.
def pyramidnet110_a48(**kwargs) -> PyramidNet:
    return PyramidNet(depth=110, alpha=48, bottleneck=False, **kwargs)


def pyramidnet110_a4_75(**kwargs) -> PyramidNet:
    return PyramidNet(depth=110, alpha=4.75, bottleneck=False, **kwargs)


def pyramidnet128_a64(**kwargs) -> PyramidNet:
    # Bottleneck: 1,970,726 parameters, inside the study's 2M budget (basic units: 3,053,137).
    return PyramidNet(depth=128, alpha=64, bottleneck=True, **kwargs)


def pyramidnet164_a48(**kwargs) -> PyramidNet:
    return PyramidNet(depth=164, alpha=48, bottleneck=True, **kwargs)


def pyramidnet196_a48(**kwargs) -> PyramidNet:
    return PyramidNet(depth=196, alpha=48, bottleneck=True, **kwargs)


def pyramidnet272_a200(**kwargs) -> PyramidNet:
    return PyramidNet(depth=272, alpha=200, bottleneck=True, **kwargs)
