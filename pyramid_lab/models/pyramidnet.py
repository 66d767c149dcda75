"""PyramidNet (Han et al. 2017, "Deep Pyramidal Residual Networks") with optional ShakeDrop.

Built exactly as the official PyTorch release builds its CIFAR model (dyhan0920/PyramidNet-PyTorch,
``PyramidNet.py``): same unit count (truncating ``(depth - 2) / 6`` or ``/ 9``), the same additive
widening and its ``int(round(.))`` rounding, pre-activation units without a ReLU before the first
conv, average-pool downsampling with zero-padded shortcut channels, BN-act-pool-linear head and the
same initialisation, so parameter counts and shapes equal the reference's for any depth and alpha.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pyramid_lab.errors import ConfigError
from pyramid_lab.models.base import ConvNet
from pyramid_lab.models.layers import ActLayer, NormLayer, conv1x1, conv3x3, get_act_layer, init_weights
from pyramid_lab.models.shakedrop import ShakeDrop, linear_drop_probs


def add_zero_padded_shortcut(residual: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
    """``residual + [shortcut, 0]``: the shortcut's missing channels are zeros (no projection)."""
    missing = residual.shape[1] - shortcut.shape[1]
    if missing:
        shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, missing))
    return residual + shortcut


class BasicUnit(nn.Module):
    """BN - conv3x3 - BN - act - conv3x3 - BN (Han et al. 2017, Fig. 6(d)).

    Args:
        in_chs: input channels.
        width: the unit's channels; it outputs ``width * expansion`` of them.
        stride: stride of the first conv and of the shortcut's pooling.
        drop_prob: ShakeDrop probability of this unit; 0 disables it.
        act_layer: zero-argument constructor of the activation.
        norm_layer: constructor of the norm layer, given the channel count.
    """

    expansion = 1

    def __init__(
        self,
        in_chs: int,
        width: int,
        stride: int,
        drop_prob: float,
        act_layer: ActLayer,
        norm_layer: NormLayer,
    ) -> None:
        super().__init__()
        self.bn1 = norm_layer(in_chs)
        self.conv1 = conv3x3(in_chs, width, stride)
        self.bn2 = norm_layer(width)
        self.act = act_layer()
        self.conv2 = conv3x3(width, width)
        self.bn3 = norm_layer(width)
        self.shake_drop = ShakeDrop(drop_prob) if drop_prob > 0 else nn.Identity()
        self.downsample = _downsample(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.bn1(x))
        out = self.conv2(self.act(self.bn2(out)))
        out = self.shake_drop(self.bn3(out))
        return add_zero_padded_shortcut(out, self.downsample(x))


class BottleneckUnit(nn.Module):
    """BN - conv1x1 - BN - act - conv3x3 - BN - act - conv1x1 (x4) - BN (Han et al. 2017).

    Args: as :class:`BasicUnit`; the output has ``4 * width`` channels.
    """

    expansion = 4

    def __init__(
        self,
        in_chs: int,
        width: int,
        stride: int,
        drop_prob: float,
        act_layer: ActLayer,
        norm_layer: NormLayer,
    ) -> None:
        super().__init__()
        self.bn1 = norm_layer(in_chs)
        self.conv1 = conv1x1(in_chs, width)
        self.bn2 = norm_layer(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn3 = norm_layer(width)
        self.conv3 = conv1x1(width, width * self.expansion)
        self.bn4 = norm_layer(width * self.expansion)
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


class PyramidNet(ConvNet):
    """PyramidNet for 32x32 images (CIFAR, CINIC-10), additive widening.

    Args:
        depth: total depth: ``6n + 2`` for basic units, ``9n + 2`` for bottleneck units (n units per
            stage); any other depth is refused unless ``truncate_depth``.
        alpha: total widening over the network (float allowed), e.g. 48 in the study.
        bottleneck: bottleneck units (outputs 4x wider) instead of basic units.
        truncate_depth: build a depth that fits neither form as the reference does, with
            ``(depth - 2) // 6`` or ``// 9`` units per stage (196 bottleneck -> 21 units, 191
            layers: the study's PyramidNet-196). Off by default: ``model.depth=15`` silently
            building 14 layers is a typo nobody sees.
        shakedrop: ShakeDrop perturbation probability of the last unit (``1 - p_L``; 0.5 in
            Yamada et al. 2018 and the study), decaying linearly to the first; 0 disables it.
        num_classes: outputs of the linear head.
        in_chans: channels of the input images.
        act_layer: activation by name (relu, leaky_relu, selu, hardswish) or class; used for every
            activation in the network.
        norm_layer: norm layer constructor, given the channel count.

    Shapes:
        (B, in_chans, H, W) -> logits (B, num_classes); features (B, num_features, H / 4, W / 4).

    Raises:
        ConfigError: for a depth too small for one unit per stage or not of the unit's form
            (naming the nearest valid depths), a negative alpha, a ShakeDrop
            probability outside [0, 1] or an unknown activation.
    """

    def __init__(
        self,
        depth: int,
        alpha: float,
        bottleneck: bool = False,
        shakedrop: float = 0.0,
        *,
        truncate_depth: bool = False,
        num_classes: int = 10,
        in_chans: int = 3,
        act_layer: str | ActLayer = "relu",
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__(num_classes, in_chans)
        unit = BottleneckUnit if bottleneck else BasicUnit
        divisor = 9 if bottleneck else 6
        if (depth - 2) // divisor < 1:
            kind = "bottleneck" if bottleneck else "basic"
            raise ConfigError(
                f"model.depth={depth} is too small for {kind} units: need depth >= {divisor + 2} "
                f"(depth = {divisor}n + 2, n >= 1 units per stage)"
            )
        if (depth - 2) % divisor and not truncate_depth:
            kind = "bottleneck" if bottleneck else "basic"
            below = depth - (depth - 2) % divisor
            raise ConfigError(
                f"model.depth={depth} cannot be built with {kind} units: depth must be {divisor}n + 2; "
                f"nearest valid: {below}, {below + divisor} (model.truncate_depth=true truncates as "
                "the reference code does)"
            )
        if alpha < 0:
            raise ConfigError(f"model.alpha={alpha} must be >= 0 (the total widening, e.g. 48)")
        if not 0.0 <= shakedrop <= 1.0:
            raise ConfigError(f"model.shakedrop={shakedrop} must be in [0, 1] (0.5 in the study)")
        act_layer = get_act_layer(act_layer)
        self.depth, self.alpha, self.bottleneck = depth, alpha, bottleneck

        widths = pyramid_widths(depth, alpha, bottleneck)
        drop_probs = linear_drop_probs(shakedrop, len(widths))
        units_per_stage = len(widths) // 3
        self.conv1 = conv3x3(in_chans, 16)
        self.bn1 = norm_layer(16)
        units, in_chs = [], 16
        for i, (width, drop_prob) in enumerate(zip(widths, drop_probs, strict=True)):
            stride = 2 if i in (units_per_stage, 2 * units_per_stage) else 1
            units.append(unit(in_chs, width, stride, drop_prob, act_layer, norm_layer))
            in_chs = width * unit.expansion
        self.units = nn.Sequential(*units)
        # The units end on a norm without activation (pre-activation): the reference adds BN-ReLU.
        self.bn_final = norm_layer(in_chs)
        self.act_final = act_layer()
        self._make_head(in_chs)
        init_weights(self, linear_zero_bias=False)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.units(self.bn1(self.conv1(x)))
        return self.act_final(self.bn_final(x))


# The study's variants (docs/study.md, Tables 2 and 8) and the PyramidNet paper's own. Each is defined
# here only: conf/model/<name>.yaml points to the builder and does not repeat depth or alpha.
def pyramidnet110_a48(**kw: Any) -> PyramidNet:
    return PyramidNet(depth=110, alpha=48, bottleneck=False, **kw)


def pyramidnet110_a4_75(**kw: Any) -> PyramidNet:
    return PyramidNet(depth=110, alpha=4.75, bottleneck=False, **kw)


def pyramidnet128_a64(**kw: Any) -> PyramidNet:
    # Bottleneck: 1,970,726 parameters, inside the study's 2M budget (basic units: 3,053,137).
    return PyramidNet(depth=128, alpha=64, bottleneck=True, **kw)


def pyramidnet164_a48(**kw: Any) -> PyramidNet:
    return PyramidNet(depth=164, alpha=48, bottleneck=True, **kw)


def pyramidnet196_a48(**kw: Any) -> PyramidNet:
    # 196 is not 9n + 2: the study's network is what the reference code builds from it (191 layers).
    return PyramidNet(depth=196, alpha=48, bottleneck=True, truncate_depth=True, **kw)


def pyramidnet272_a200(**kw: Any) -> PyramidNet:
    return PyramidNet(depth=272, alpha=200, bottleneck=True, **kw)
