"""VGG with batch norm for CIFAR (Simonyan & Zisserman 2015, "Very Deep Convolutional Networks").

The convolutional part is the paper's configurations A, B, D and E (Table 1): 3x3 convs, each
followed by BN and the activation, and five 2x2 max pools. On 32x32 inputs the last pool leaves a
512x1x1 map, so the head is the common CIFAR one (e.g. kuangliu/pytorch-cifar): flatten 512, then
one Linear(512, num_classes) instead of the paper's three fully connected layers of 4096.
VGG-16 is 14.7M parameters.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pyramid_lab.errors import ConfigError
from pyramid_lab.models.layers import ActLayer, NormLayer, get_act_layer

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


class VGG(nn.Module):
    """VGG-BN for 32x32 inputs.

    Args:
        depth: 11, 13, 16 or 19 weighted layers (configurations A, B, D, E).
        num_classes: outputs of the linear head.
        act_layer: activation by name (see ``pyramid_lab.models.layers``) or constructor; used for
            every activation in the network.
        norm_layer: norm layer constructor, given the channel count.

    Shapes:
        (N, 3, 32, 32) -> (N, num_classes) logits. The head expects exactly 512 features, so the
        input must be 32x32.

    Raises:
        ConfigError: for a depth without a configuration, or an unknown activation.
    """

    def __init__(
        self,
        depth: int = 16,
        num_classes: int = 10,
        act_layer: str | ActLayer = "relu",
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if depth not in VGG_CFGS:
            raise ConfigError(
                f"model.depth={depth} is invalid for VGG; valid: {', '.join(map(str, VGG_CFGS))}"
            )
        act_layer = get_act_layer(act_layer)
        layers: list[nn.Module] = []
        in_chs = 3
        for v in VGG_CFGS[depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                # The conv keeps its bias before BN, as torchvision's vgg*_bn and the common CIFAR
                # VGG do: redundant, but it is what the 14.7M of VGG-16 counts.
                layers += [nn.Conv2d(in_chs, v, 3, padding=1), norm_layer(v), act_layer()]
                in_chs = v
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(in_chs, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's VGG init: He normal (fan_out) convs; the linear layer N(0, 0.01) as in the
        # VGG paper (Sec. 3.1); all biases 0; BN weight 1.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.features(x), 1))


def vgg11_bn(**kw: Any) -> VGG:
    return VGG(depth=11, **kw)


def vgg13_bn(**kw: Any) -> VGG:
    return VGG(depth=13, **kw)


def vgg16_bn(**kw: Any) -> VGG:
    return VGG(depth=16, **kw)


def vgg19_bn(**kw: Any) -> VGG:
    return VGG(depth=19, **kw)
