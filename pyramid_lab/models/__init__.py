"""The model zoo: one file per family; every model takes ``num_classes`` and ``act_layer``."""

from pyramid_lab.models.densenet import (
    DenseNet,
    densenet40_k12,
    densenet_bc100_k12,
    densenet_bc190_k40,
    densenet_bc250_k24,
)
from pyramid_lab.models.layers import ACTIVATION_NAMES, create_act, get_act_layer
from pyramid_lab.models.pyramidnet import (
    PyramidNet,
    pyramidnet110_a4_75,
    pyramidnet110_a48,
    pyramidnet128_a64,
    pyramidnet164_a48,
    pyramidnet196_a48,
    pyramidnet272_a200,
)
from pyramid_lab.models.resnet import ResNet, resnet20, resnet32, resnet44, resnet56, resnet110
from pyramid_lab.models.shakedrop import ShakeDrop, shake_drop
from pyramid_lab.models.vgg import VGG, vgg11_bn, vgg13_bn, vgg16_bn, vgg19_bn
from pyramid_lab.models.wide_resnet import WideResNet, wrn16_4, wrn16_8, wrn28_10, wrn40_4

__all__ = [
    "DenseNet",
    "densenet40_k12",
    "densenet_bc100_k12",
    "densenet_bc190_k40",
    "densenet_bc250_k24",
    "PyramidNet",
    "pyramidnet110_a4_75",
    "pyramidnet110_a48",
    "pyramidnet128_a64",
    "pyramidnet164_a48",
    "pyramidnet196_a48",
    "pyramidnet272_a200",
    "ACTIVATION_NAMES",
    "create_act",
    "get_act_layer",
    "ResNet",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
    "ShakeDrop",
    "shake_drop",
    "VGG",
    "vgg11_bn",
    "vgg13_bn",
    "vgg16_bn",
    "vgg19_bn",
    "WideResNet",
    "wrn16_4",
    "wrn16_8",
    "wrn28_10",
    "wrn40_4",
]
