"""The model zoo: one file per family (PyramidNet, ResNet, Wide ResNet, DenseNet, VGG).

Every model is a :class:`ConvNet` and follows one contract. Its constructor takes the family's
own arguments (``depth``, then ``alpha``, ``widen_factor``, ``growth_rate``, ...; positional), then,
keyword-only and with the same defaults everywhere, ``num_classes=10``, ``in_chans=3``,
``act_layer="relu"`` (a name, ``relu``, ``leaky_relu``, ``selu``, ``hardswish``, or a class, used for
every activation) and ``norm_layer=nn.BatchNorm2d`` (called with the channel count, used for every
norm). It exposes ``num_features``, ``forward_features(x)``: (B, in_chans, H, W) -> the unpooled
(B, num_features, h, w) map, after the final norm and activation; ``forward_head(f)``: global
average pooling, then the linear classifier ``fc`` -> (B, num_classes) logits (``pre_logits=True``:
the pooled (B, num_features)); and
``forward(x) = forward_head(forward_features(x))``. Weights are initialised by
``layers.init_weights``, as each family's reference does. A variant (depth, alpha, ...) is defined
once, by its builder here (``pyramidnet196_a48(**kw)``); conf/model/<name>.yaml names the builder
(``_target_: pyramid_lab.models.<name>``) and does not repeat it. Only the sizes a config names have
a builder (tests/test_models_contract.py); the papers' other sizes are the class with its arguments
(``ResNet(depth=56)``, ``WideResNet(40, 4)``). This package imports neither Lightning nor Hydra.
"""

from pyramid_lab.models.base import ConvNet
from pyramid_lab.models.densenet import DenseNet, densenet_bc100_k12
from pyramid_lab.models.layers import ACTIVATION_NAMES, get_act_layer, init_weights
from pyramid_lab.models.pyramidnet import (
    PyramidNet,
    pyramidnet110_a4_75,
    pyramidnet110_a48,
    pyramidnet128_a64,
    pyramidnet164_a48,
    pyramidnet196_a48,
    pyramidnet272_a200,
)
from pyramid_lab.models.resnet import ResNet, resnet20, resnet110
from pyramid_lab.models.shakedrop import ShakeDrop, shake_drop
from pyramid_lab.models.vgg import VGG, vgg16_bn, vgg19_bn
from pyramid_lab.models.wide_resnet import WideResNet, wrn16_4, wrn28_10

__all__ = [
    "ConvNet",
    "DenseNet",
    "densenet_bc100_k12",
    "PyramidNet",
    "pyramidnet110_a4_75",
    "pyramidnet110_a48",
    "pyramidnet128_a64",
    "pyramidnet164_a48",
    "pyramidnet196_a48",
    "pyramidnet272_a200",
    "ACTIVATION_NAMES",
    "get_act_layer",
    "init_weights",
    "ResNet",
    "resnet20",
    "resnet110",
    "ShakeDrop",
    "shake_drop",
    "VGG",
    "vgg16_bn",
    "vgg19_bn",
    "WideResNet",
    "wrn16_4",
    "wrn28_10",
]
