"""Wide ResNet WRN-d-k for CIFAR (Zagoruyko & Komodakis 2016, "Wide Residual Networks").

The official CIFAR architecture (szagoruyko/wide-residual-networks): a 3x3 stem conv of 16, three
stages of n = (d - 4) / 6 pre-activation basic blocks (BN-act-conv3x3, BN-act-[dropout]-conv3x3)
with 16k, 32k and 64k channels, a 1x1 conv shortcut where the shape changes, then BN-act, global
average pooling and a linear head. WRN-28-10 has 36.5M parameters, WRN-16-4 2.7M (the paper's
Table 4 and Table 6).

Why a file of its own rather than a width argument of ``resnet.ResNet``: the two share no block.
The CIFAR ResNet is post-activation with parameter-free option-A shortcuts; WRN is pre-activation
with 1x1 projection shortcuts, dropout inside the block and a final BN-act. Widening is still an
argument (``widen_factor``), not a class; the conv helpers and the init come from ``layers.py``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pyramid_lab.errors import ConfigError
from pyramid_lab.models.base import ConvNet
from pyramid_lab.models.layers import ActLayer, NormLayer, conv1x1, conv3x3, get_act_layer, init_weights


class WideBasic(nn.Module):
    """Pre-activation basic block: BN-act-conv3x3, BN-act-dropout-conv3x3, add the shortcut.

    Where the shape changes, the 1x1 shortcut conv takes the pre-activated input (BN-act is shared
    by both branches), as the official code does; elsewhere the shortcut is the raw input.

    Args:
        in_chs: input channels.
        out_chs: output channels.
        stride: stride of the first conv and of the shortcut; (N, in_chs, H, W) ->
            (N, out_chs, H / stride, W / stride).
        drop_rate: dropout probability between the two convs (the paper uses 0.3); 0 disables it.
        act_layer: zero-argument constructor of the activation.
        norm_layer: constructor of the norm layer, given the channel count.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int,
        drop_rate: float,
        act_layer: ActLayer,
        norm_layer: NormLayer,
    ) -> None:
        super().__init__()
        self.bn1 = norm_layer(in_chs)
        self.act1 = act_layer()
        self.conv1 = conv3x3(in_chs, out_chs, stride)
        self.bn2 = norm_layer(out_chs)
        self.act2 = act_layer()
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.conv2 = conv3x3(out_chs, out_chs)
        self.shortcut = conv1x1(in_chs, out_chs, stride) if stride != 1 or in_chs != out_chs else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.act1(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(self.drop(self.act2(self.bn2(out))))
        return out + (x if self.shortcut is None else self.shortcut(pre))


class WideResNet(ConvNet):
    """WRN-d-k for 32x32 inputs (Zagoruyko & Komodakis 2016).

    Args:
        depth: d = 6n + 4 with n blocks of two convs per stage (the paper's convention).
        widen_factor: k; stage widths are 16k, 32k, 64k.
        drop_rate: dropout between the convs of every block (the paper uses 0.3); 0 disables it.
        num_classes: outputs of the linear head.
        in_chans: channels of the input images.
        act_layer: activation by name (see ``pyramid_lab.models.layers``) or constructor; used for
            every activation in the network.
        norm_layer: norm layer constructor, given the channel count.

    Shapes:
        (B, in_chans, H, W) -> (B, num_classes) logits; features (B, 64k, H / 4, W / 4).

    Raises:
        ConfigError: for a depth that is not 6n + 4, a width below 1, a dropout outside [0, 1) or
            an unknown activation.
    """

    # The final norm and the classifier were ``head.norm`` and ``head.fc`` before the models shared
    # one head (pyramid_lab 0.1): checkpoints of that time still load.
    legacy_keys = {"head.norm.": "bn_final.", "head.fc.": "fc."}

    def __init__(
        self,
        depth: int,
        widen_factor: int,
        drop_rate: float = 0.0,
        *,
        num_classes: int = 10,
        in_chans: int = 3,
        act_layer: str | ActLayer = "relu",
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__(num_classes, in_chans)
        if not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
            raise ConfigError(
                f"model.depth={depth} is invalid for WideResNet; valid: 6n+4 with n >= 1 "
                "(10, 16, 22, 28, 34, 40, ...)"
            )
        if not isinstance(widen_factor, int) or widen_factor < 1:
            raise ConfigError(f"model.widen_factor={widen_factor} is invalid; valid: an integer >= 1")
        if not 0.0 <= drop_rate < 1.0:
            raise ConfigError(f"model.drop_rate={drop_rate} is invalid; valid: 0 <= p < 1")
        act_layer = get_act_layer(act_layer)
        n = (depth - 4) // 6
        widths = (16 * widen_factor, 32 * widen_factor, 64 * widen_factor)

        # No norm/act after the stem: the first block's pre-activation provides them.
        self.stem = conv3x3(in_chans, 16)
        stages, in_chs = [], 16
        for i, width in enumerate(widths):
            blocks = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(WideBasic(in_chs, width, stride, drop_rate, act_layer, norm_layer))
                in_chs = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        # The last block ends on a conv (pre-activation): BN-act before the pooling, as the official code.
        self.bn_final = norm_layer(in_chs)
        self.act_final = act_layer()
        self._make_head(in_chs)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.act_final(self.bn_final(self.stages(self.stem(x))))


# Zagoruyko & Komodakis 2016, Tables 4-6; the sizes a config names (the others: WideResNet(40, 4)).
def wrn16_4(**kw: Any) -> WideResNet:
    return WideResNet(depth=16, widen_factor=4, **kw)


def wrn28_10(**kw: Any) -> WideResNet:
    return WideResNet(depth=28, widen_factor=10, **kw)
