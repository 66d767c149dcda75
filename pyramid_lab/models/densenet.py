"""DenseNet and DenseNet-BC for CIFAR (Huang et al. 2017, "Densely Connected Conv. Networks").

A 3x3 stem conv, three dense blocks at 32x32, 16x16 and 8x8 joined by transitions (BN-act-conv1x1,
2x2 average pool), then BN-act, global average pooling and a linear head. Every layer of a dense
block adds ``growth_rate`` (k) channels to the running concatenation. DenseNet-BC adds the
bottleneck (BN-act-conv1x1 to 4k before the BN-act-conv3x3 to k) and compression 0.5 at the
transitions. DenseNet-BC (L=100, k=12) has 0.8M parameters, DenseNet (L=40, k=12) 1.0M (Table 2).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from pyramid_lab.errors import ConfigError
from pyramid_lab.models.base import ConvNet
from pyramid_lab.models.layers import ActLayer, NormLayer, conv1x1, conv3x3, get_act_layer, init_weights


class DenseLayer(nn.Module):
    """One composite layer: [BN-act-conv1x1 to 4k,] BN-act-conv3x3 to k, concatenated to its input.

    Args:
        in_chs: input channels.
        growth_rate: k, the channels this layer adds; (N, C, H, W) -> (N, C + k, H, W).
        bottleneck: prepend the 1x1 conv to 4k channels (the "B" of DenseNet-BC).
        act_layer: zero-argument constructor of the activation.
        norm_layer: constructor of the norm layer, given the channel count.
    """

    def __init__(
        self,
        in_chs: int,
        growth_rate: int,
        bottleneck: bool,
        act_layer: ActLayer,
        norm_layer: NormLayer,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if bottleneck:
            # 4k bottleneck channels (Huang et al. 2017, Sec. 3, "Bottleneck layers").
            layers += [norm_layer(in_chs), act_layer(), conv1x1(in_chs, 4 * growth_rate)]
            in_chs = 4 * growth_rate
        layers += [norm_layer(in_chs), act_layer(), conv3x3(in_chs, growth_rate)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], dim=1)


class Transition(nn.Sequential):
    """BN-act-conv1x1-avgpool2x2 between dense blocks: (N, C, H, W) -> (N, C', H / 2, W / 2)."""

    def __init__(self, in_chs: int, out_chs: int, act_layer: ActLayer, norm_layer: NormLayer) -> None:
        super().__init__(
            norm_layer(in_chs),
            act_layer(),
            conv1x1(in_chs, out_chs),
            nn.AvgPool2d(kernel_size=2, stride=2),
        )


class DenseNet(ConvNet):
    """DenseNet(-BC) for 32x32 inputs (Huang et al. 2017).

    The stem conv has 2k channels for DenseNet-BC (bottleneck and compression < 1) and 16
    otherwise, as the paper's Sec. 3 says and its Table 2 counts: with 16, DenseNet L=100 k=24 is
    the table's 27.2M; with 2k (what some ports use for every variant) it would be 28.1M.

    Args:
        depth: L, counting the stem, every conv of the dense layers, the two transition convs and
            the head: 3n + 4 for plain layers, 6n + 4 with the bottleneck (n layers per block).
        growth_rate: k, channels added by each dense layer.
        bottleneck: use bottleneck layers (DenseNet-B).
        compression: theta in (0, 1]: a transition keeps floor(theta * C) channels (DenseNet-C for
            theta < 1; 0.5 in DenseNet-BC).
        num_classes: outputs of the linear head.
        in_chans: channels of the input images.
        act_layer: activation by name (see ``pyramid_lab.models.layers``) or constructor; used for
            every activation in the network.
        norm_layer: norm layer constructor, given the channel count.

    Shapes:
        (B, in_chans, H, W) -> (B, num_classes) logits; features (B, num_features, H / 4, W / 4).

    Raises:
        ConfigError: for a depth that does not fit, a growth rate below 1, a compression outside
            (0, 1] or an unknown activation.
    """

    # The final norm and the classifier were ``head.norm`` and ``head.fc`` before the models shared
    # one head (pyramid_lab 0.1): checkpoints of that time still load.
    legacy_keys = {"head.norm.": "bn_final.", "head.fc.": "fc."}

    def __init__(
        self,
        depth: int,
        growth_rate: int,
        bottleneck: bool = True,
        compression: float = 0.5,
        *,
        num_classes: int = 10,
        in_chans: int = 3,
        act_layer: str | ActLayer = "relu",
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__(num_classes, in_chans)
        step = 6 if bottleneck else 3  # 3 blocks of n layers, each of 2 convs or 1
        if not isinstance(depth, int) or depth < step + 4 or (depth - 4) % step:
            rule = "6n+4 with n >= 1, e.g. 100" if bottleneck else "3n+4 with n >= 1, e.g. 40"
            raise ConfigError(
                f"model.depth={depth} is invalid for DenseNet with bottleneck={bottleneck}; valid: {rule}"
            )
        if not isinstance(growth_rate, int) or growth_rate < 1:
            raise ConfigError(f"model.growth_rate={growth_rate} is invalid; valid: an integer >= 1")
        if not 0.0 < compression <= 1.0:
            raise ConfigError(f"model.compression={compression} is invalid; valid: 0 < compression <= 1")
        act_layer = get_act_layer(act_layer)
        n = (depth - 4) // step

        chs = 2 * growth_rate if bottleneck and compression < 1.0 else 16
        self.stem = conv3x3(in_chans, chs)
        features: list[nn.Module] = []
        for i in range(3):
            for _ in range(n):
                features.append(DenseLayer(chs, growth_rate, bottleneck, act_layer, norm_layer))
                chs += growth_rate
            if i < 2:
                out_chs = math.floor(compression * chs)
                features.append(Transition(chs, out_chs, act_layer, norm_layer))
                chs = out_chs
        self.features = nn.Sequential(*features)
        # The last dense layer ends on a conv (pre-activation): BN-act before the pooling.
        self.bn_final = norm_layer(chs)
        self.act_final = act_layer()
        self._make_head(chs)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.act_final(self.bn_final(self.features(self.stem(x))))


# Huang et al. 2017, Table 2; the size a config names (the others: DenseNet(250, 24), ...).
def densenet_bc100_k12(**kw: Any) -> DenseNet:
    return DenseNet(depth=100, growth_rate=12, **kw)
