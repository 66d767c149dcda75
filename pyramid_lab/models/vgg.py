"""VGG with batch norm for CIFAR (Simonyan & Zisserman 2015, "Very Deep Convolutional Networks").

The convolutional part is the paper's configurations A, B, D and E (Table 1): 3x3 convs, each
followed by BN and the activation, and five 2x2 max pools. On 32x32 inputs the last pool leaves a
512x1x1 map, so the head is the common CIFAR one (e.g. kuangliu/pytorch-cifar): the 512 features
(pooling a 1x1 map changes nothing), then one Linear(512, num_classes) instead of the paper's three
fully connected layers of 4096.
VGG-16 is 14.7M parameters.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pyramid_lab.errors import ConfigError
from pyramid_lab.models.base import ConvNet
from pyramid_lab.models.layers import ActLayer, NormLayer, get_act_layer, init_weights

# Output channels of each 3x3 conv, "M" for a 2x2 max pool (Simonyan & Zisserman 2015, Table 1).
VGG_CFGS: dict[int, list[int | str]] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [
        64, 64, "M",
        128, 128, "M",
        256, 256, 256, 256, "M",
        512, 512, 512, 512, "M",
        512, 512, 512, 512, "M",
    ],
}  # fmt: skip


class VGG(ConvNet):
    """VGG-BN for 32x32 inputs.

    Args:
        depth: 11, 13, 16 or 19 weighted layers (configurations A, B, D, E).
        num_classes: outputs of the linear head.
        in_chans: channels of the input images.
        act_layer: activation by name (see ``pyramid_lab.models.layers``) or constructor; used for
            every activation in the network.
        norm_layer: norm layer constructor, given the channel count.

    Shapes:
        (B, in_chans, H, W) -> (B, num_classes) logits; features (B, 512, H / 32, W / 32), so H and
        W must be at least 32 (on 32x32 the head's pooling of a 1x1 map changes nothing).

    Raises:
        ConfigError: for a depth without a configuration, or an unknown activation.
    """

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
        if depth not in VGG_CFGS:
            raise ConfigError(
                f"model.depth={depth} is invalid for VGG; valid: {', '.join(map(str, VGG_CFGS))}"
            )
        act_layer = get_act_layer(act_layer)
        layers: list[nn.Module] = []
        in_chs = in_chans
        for v in VGG_CFGS[depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                # The conv keeps its bias before BN, as torchvision's vgg*_bn and the common CIFAR
                # VGG do: redundant, but it is what the 14.7M of VGG-16 counts.
                layers += [nn.Conv2d(in_chs, v, 3, padding=1), norm_layer(v), act_layer()]
                in_chs = v
        self.features = nn.Sequential(*layers)
        self._make_head(in_chs)
        init_weights(self, linear_std=0.01)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # Post-activation: every conv is followed by norm and activation, then the max pool.
        return self.features(x)


# Simonyan & Zisserman 2015, Table 1 (configurations D and E) with batch norm; the sizes a config
# names (A and B: VGG(depth=11), VGG(depth=13)).
def vgg16_bn(**kw: Any) -> VGG:
    return VGG(depth=16, **kw)


def vgg19_bn(**kw: Any) -> VGG:
    return VGG(depth=19, **kw)
