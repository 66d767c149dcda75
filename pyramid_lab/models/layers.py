"""Parts shared by every model family: activations by name, conv helpers, the one weight init."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn

from pyramid_lab.errors import ConfigError

ActLayer = Callable[[], nn.Module]
NormLayer = Callable[[int], nn.Module]

# The study's four activations (docs/study.md, Table 5). LeakyReLU uses PyTorch's default slope 0.01,
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


def conv3x3(in_chs: int, out_chs: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (a norm layer follows or precedes it)."""
    return nn.Conv2d(in_chs, out_chs, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_chs: int, out_chs: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution with no bias."""
    return nn.Conv2d(in_chs, out_chs, kernel_size=1, stride=stride, bias=False)


def init_weights(model: nn.Module, *, linear_std: float | None = None, linear_zero_bias: bool = True) -> None:
    """Initialise a model as the reference CIFAR codes do; the families differ only in the linear head.

    Convs: He normal with fan_out, std = sqrt(2 / (k * k * out_channels)) (He et al. 2015), the
    ReLU gain whatever the activation, as every reference does; conv biases (VGG's) 0. Norm layers:
    weight 1, bias 0. Linear layers, per family:

    - PyramidNet (dyhan0920/PyramidNet-PyTorch): untouched, PyTorch's default weight and bias
      (``linear_zero_bias=False``): the reference's init loop visits only convs and BN.
    - ResNet, Wide ResNet, DenseNet (fb.resnet.torch, szagoruyko/wide-residual-networks,
      bamos/densenet.pytorch): PyTorch's default weight, bias 0 (the defaults).
    - VGG (torchvision's vgg*_bn; Simonyan & Zisserman 2015, Sec. 3.1): weight N(0, 0.01), bias 0
      (``linear_std=0.01``).

    Args:
        model: initialised in place, every submodule.
        linear_std: draw Linear weights from N(0, linear_std); None keeps PyTorch's default.
        linear_zero_bias: set Linear biases to 0; False keeps PyTorch's default.
    """
    if all(p.is_meta for p in model.parameters()):
        # Built on the meta device (to count parameters): no values to draw, and normal_ on meta
        # tensors would import torch._dynamo (seconds) for nothing.
        return
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            if linear_std is not None:
                nn.init.normal_(m.weight, 0.0, linear_std)
            if linear_zero_bias and m.bias is not None:
                nn.init.zeros_(m.bias)
