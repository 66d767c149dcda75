"""CIFAR ResNet (He et al. 2016, "Deep Residual Learning for Image Recognition", Sec. 4.2).

Three stages of ``n`` basic blocks at 32x32, 16x16 and 8x8 with 16, 32 and 64 channels, a 3x3 stem
conv of 16, global average pooling and a linear head: 6n + 2 weighted layers. Shortcuts are the
paper's option A (identity; stride-2 subsampling and zero-padded channels where the shape changes),
so shortcuts add no parameters: ResNet-20 has 0.27M and ResNet-110 1.7M (the paper's Table 6).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pyramid_lab.errors import ConfigError
from pyramid_lab.models.base import ConvNet
from pyramid_lab.models.layers import ActLayer, NormLayer, conv3x3, get_act_layer, init_weights


class ShortcutA(nn.Module):
    """Option-A shortcut (He et al. 2016, Sec. 4.2): subsample by ``stride``, zero-pad channels.

    Parameter-free, which is why the CIFAR ResNets are as small as the paper's Table 6 says.

    Args:
        in_chs: input channels.
        out_chs: output channels (>= ``in_chs``); the extra ones are zeros, split on both sides.
        stride: spatial subsampling factor.
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.pad = out_chs - in_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        # F.pad's last pair of a 4-D tensor's padding is the channel dim: (W, W, H, H, C, C).
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad_channels={self.pad}"


class BasicBlock(nn.Module):
    """conv3x3-BN-act-conv3x3-BN, add the shortcut, act (the original post-activation block).

    Args:
        in_chs: input channels.
        out_chs: output channels.
        stride: stride of the first conv; the block maps (N, in_chs, H, W) to
            (N, out_chs, H / stride, W / stride).
        act_layer: zero-argument constructor of the activation.
        norm_layer: constructor of the norm layer, given the channel count.
    """

    def __init__(
        self, in_chs: int, out_chs: int, stride: int, act_layer: ActLayer, norm_layer: NormLayer
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_chs, out_chs, stride)
        self.bn1 = norm_layer(out_chs)
        self.act1 = act_layer()
        self.conv2 = conv3x3(out_chs, out_chs)
        self.bn2 = norm_layer(out_chs)
        self.shortcut = (
            ShortcutA(in_chs, out_chs, stride) if stride != 1 or in_chs != out_chs else nn.Identity()
        )
        self.act2 = act_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class ResNet(ConvNet):
    """CIFAR ResNet-(6n+2) with option-A shortcuts (He et al. 2016, Sec. 4.2).

    Args:
        depth: 6n + 2 weighted layers, n basic blocks per stage (20, 32, 44, 56, 110 in the paper).
        num_classes: outputs of the linear head.
        in_chans: channels of the input images.
        act_layer: activation by name (see ``pyramid_lab.models.layers``) or constructor; used for
            every activation in the network.
        norm_layer: norm layer constructor, given the channel count.

    Shapes:
        (B, in_chans, H, W) -> (B, num_classes) logits; features (B, 64, H / 4, W / 4).

    Raises:
        ConfigError: for a depth that is not 6n + 2, or an unknown activation.
    """

    widths = (16, 32, 64)

    def __init__(
        self,
        depth: int,
        *,
        num_classes: int = 10,
        in_chans: int = 3,
        act_layer: str | ActLayer = "relu",
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__(num_classes, in_chans)
        if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ConfigError(
                f"model.depth={depth} is invalid for ResNet; valid: 6n+2 with n >= 1 "
                "(8, 14, 20, 32, 44, 56, 110, ...)"
            )
        act_layer = get_act_layer(act_layer)
        n = (depth - 2) // 6

        self.stem = nn.Sequential(conv3x3(in_chans, self.widths[0]), norm_layer(self.widths[0]), act_layer())
        stages, in_chs = [], self.widths[0]
        for i, width in enumerate(self.widths):
            blocks = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(BasicBlock(in_chs, width, stride, act_layer, norm_layer))
                in_chs = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self._make_head(in_chs)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # Post-activation blocks: the features already end on the activation.
        return self.stages(self.stem(x))


# He et al. 2016, Table 6: ResNet-(6n+2); the sizes a config names (the others: ResNet(depth=56)).
def resnet20(**kw: Any) -> ResNet:
    return ResNet(depth=20, **kw)


def resnet110(**kw: Any) -> ResNet:
    return ResNet(depth=110, **kw)
