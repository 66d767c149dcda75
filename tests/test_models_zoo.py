"""The comparison models (ResNet, Wide ResNet, DenseNet, VGG) against their papers and references,
and every family's activations (PyramidNet included).

Big models are built on the meta device: their parameters are counted without memory or init cost.
Forward passes use tiny variants.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from functools import partial

import pytest
import torch
from torch import nn

from pyramid_lab.errors import ConfigError
from pyramid_lab.models import densenet, resnet, vgg, wide_resnet
from pyramid_lab.models.densenet import DenseNet
from pyramid_lab.models.layers import ACTIVATION_NAMES, get_act_layer
from pyramid_lab.models.pyramidnet import PyramidNet
from pyramid_lab.models.resnet import ResNet, ShortcutA
from pyramid_lab.models.vgg import VGG
from pyramid_lab.models.wide_resnet import WideResNet

# DenseNet (k=12) of depth 40 without bottleneck or compression (Huang et al. 2017, Table 2).
DENSENET40_K12 = partial(DenseNet, depth=40, growth_rate=12, bottleneck=False, compression=1.0)


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_on_meta(builder: Callable[..., nn.Module], **kw) -> nn.Module:
    with torch.device("meta"):
        return builder(**kw)


# name -> (builder, exact count for 10 classes from the reference implementation, the paper's figure
# in millions as printed). The sizes no config names have no builder: they are built from the
# family's class, which these counts pin at the papers' depths and widths. References:
# akamaster/pytorch_resnet_cifar10 (ResNet, option A), xternalz/WideResNet-pytorch and
# szagoruyko/wide-residual-networks (WRN), bamos/densenet.pytorch (DenseNet-BC),
# kuangliu/pytorch-cifar (VGG). Papers: He et al. 2016 Table 6; Zagoruyko & Komodakis 2016 Tables
# 4-6; Huang et al. 2017 Table 2. VGG's paper has no CIFAR figure, so VGG's is the CIFAR reference's
# count rounded.
COUNTS: dict[str, tuple[Callable[..., nn.Module], int, str]] = {
    "resnet20": (resnet.resnet20, 269_722, "0.27"),
    "resnet32": (partial(ResNet, depth=32), 464_154, "0.46"),
    "resnet44": (partial(ResNet, depth=44), 658_586, "0.66"),
    "resnet56": (partial(ResNet, depth=56), 853_018, "0.85"),
    "resnet110": (resnet.resnet110, 1_727_962, "1.7"),
    "wrn16_4": (wide_resnet.wrn16_4, 2_748_890, "2.7"),
    "wrn16_8": (partial(WideResNet, depth=16, widen_factor=8), 10_961_370, "11.0"),
    "wrn28_10": (wide_resnet.wrn28_10, 36_479_194, "36.5"),
    "wrn40_4": (partial(WideResNet, depth=40, widen_factor=4), 8_949_210, "8.9"),
    "densenet40_k12": (DENSENET40_K12, 1_019_722, "1.0"),
    "densenet_bc100_k12": (densenet.densenet_bc100_k12, 769_162, "0.8"),
    "densenet_bc250_k24": (partial(DenseNet, depth=250, growth_rate=24), 15_324_406, "15.3"),
    "densenet_bc190_k40": (partial(DenseNet, depth=190, growth_rate=40), 25_624_430, "25.6"),
    "densenet100_k12": (
        partial(DenseNet, depth=100, growth_rate=12, bottleneck=False, compression=1.0),
        6_979_642,
        "7.0",
    ),
    "densenet100_k24": (
        partial(DenseNet, depth=100, growth_rate=24, bottleneck=False, compression=1.0),
        27_249_082,
        "27.2",
    ),
    "vgg11_bn": (partial(VGG, depth=11), 9_231_114, "9.2"),
    "vgg13_bn": (partial(VGG, depth=13), 9_416_010, "9.4"),
    "vgg16_bn": (vgg.vgg16_bn, 14_728_266, "14.7"),
    "vgg19_bn": (vgg.vgg19_bn, 20_040_522, "20.0"),
}


def test_every_builder_has_its_reference_count():
    families = {ResNet: resnet, WideResNet: wide_resnet, DenseNet: densenet, VGG: vgg}
    builders = {
        obj
        for cls, module in families.items()
        for obj in vars(module).values()
        if inspect.isfunction(obj) and inspect.signature(obj).return_annotation in (cls.__name__, cls)
    }
    assert builders and builders <= {builder for builder, _, _ in COUNTS.values()}


@pytest.mark.parametrize("name", list(COUNTS))
def test_parameter_count_matches_reference_and_paper(name):
    builder, exact, paper = COUNTS[name]
    n = count(build_on_meta(builder))
    assert n == exact
    decimals = len(paper.split(".")[1])
    assert round(n / 1e6, decimals) == float(paper)


@pytest.mark.parametrize(
    ("builder", "features"),
    [
        (resnet.resnet20, 64),
        (wide_resnet.wrn28_10, 640),
        (densenet.densenet_bc100_k12, 342),
        (vgg.vgg16_bn, 512),
    ],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_num_classes_changes_only_the_head(builder, features):
    grown = count(build_on_meta(builder, num_classes=100)) - count(build_on_meta(builder))
    assert grown == 90 * (features + 1)


# Tiny variants that still have every kind of block (a stride-2 stage, a width change, a
# transition): builder -> number of activation modules it must contain.
TINY: dict[str, tuple[Callable[..., nn.Module], int]] = {
    # 1 per unit (its module is applied twice) + final; one bottleneck unit per stage
    "pyramidnet11b": (partial(PyramidNet, depth=11, alpha=8, bottleneck=True, shakedrop=0.5), 3 + 1),
    # stem + 2 per block
    "resnet8": (partial(ResNet, depth=8), 1 + 2 * 3),
    # 2 per block + head
    "wrn10_2": (partial(WideResNet, depth=10, widen_factor=2, drop_rate=0.3), 2 * 3 + 1),
    # 2 per bottleneck layer + 1 per transition + head
    "densenet_bc16_k4": (partial(DenseNet, depth=16, growth_rate=4), 2 * 6 + 2 + 1),
    # 1 per layer + 1 per transition + head
    "densenet10_k4": (
        partial(DenseNet, depth=10, growth_rate=4, bottleneck=False, compression=1.0),
        6 + 2 + 1,
    ),
    # 1 per conv
    "vgg11_bn": (partial(VGG, depth=11), 8),
}
ACT_TYPES = (nn.ReLU, nn.LeakyReLU, nn.SELU, nn.Hardswish, nn.GELU)


def activations(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, ACT_TYPES)]


@pytest.mark.parametrize("name", list(TINY))
@pytest.mark.parametrize("act", [*ACTIVATION_NAMES, nn.GELU])
def test_act_layer_sets_every_activation(name, act):
    builder, expected = TINY[name]
    want = nn.GELU if act is nn.GELU else type(get_act_layer(act)())
    found = activations(builder(act_layer=act))
    assert len(found) == expected
    assert {type(m) for m in found} == {want}


@pytest.mark.parametrize("name", ["pyramidnet11b", "resnet8", "wrn10_2", "densenet_bc16_k4", "densenet10_k4"])
def test_no_hidden_nonlinearity(name):
    # With identity activations and BN and ShakeDrop in eval mode these networks (average pooling
    # only) are affine maps, so f(x/2 + y/2) = f(x)/2 + f(y)/2 unless some activation is hard-coded.
    torch.manual_seed(0)
    model = TINY[name][0](act_layer=nn.Identity).double().eval()
    x, y = torch.randn(2, 2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model((x + y) / 2), (model(x) + model(y)) / 2)


@pytest.mark.parametrize("name", list(TINY))
def test_forward_backward_finite(name):
    torch.manual_seed(0)
    model = TINY[name][0](num_classes=7, act_layer="leaky_relu")
    x, target = torch.randn(4, 3, 32, 32), torch.randint(0, 7, (4,))
    logits = model(x)
    assert logits.shape == (4, 7)
    nn.functional.cross_entropy(logits, target).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("name", list(TINY))
def test_unknown_activation_raises_config_error(name):
    with pytest.raises(ConfigError, match="activation='swish'.*valid: relu"):
        build_on_meta(TINY[name][0], act_layer="swish")


@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (partial(ResNet, depth=21), r"model\.depth=21 .*ResNet.*6n\+2"),
        (partial(ResNet, depth=2), r"model\.depth=2 .*ResNet.*6n\+2"),
        (partial(WideResNet, depth=27, widen_factor=1), r"model\.depth=27 .*WideResNet.*6n\+4"),
        (partial(WideResNet, depth=4, widen_factor=1), r"model\.depth=4 .*6n\+4"),
        (partial(WideResNet, depth=16, widen_factor=0), r"model\.widen_factor=0 .*>= 1"),
        (partial(WideResNet, 16, 1, drop_rate=1.0), r"model\.drop_rate=1\.0 .*0 <= p < 1"),
        (partial(DenseNet, depth=103, growth_rate=12), r"model\.depth=103 .*bottleneck=True.*6n\+4"),
        (partial(DenseNet, depth=4, growth_rate=12), r"model\.depth=4 .*6n\+4"),
        (
            partial(DenseNet, depth=41, growth_rate=12, bottleneck=False, compression=1.0),
            r"model\.depth=41 .*bottleneck=False.*3n\+4",
        ),
        (partial(DenseNet, depth=16, growth_rate=0), r"model\.growth_rate=0 .*>= 1"),
        (partial(DenseNet, 16, 4, compression=0.0), r"model\.compression=0\.0 .*0 < compression <= 1"),
        (partial(DenseNet, 16, 4, compression=1.5), r"model\.compression=1\.5 .*0 < compression <= 1"),
        (partial(VGG, depth=15), r"model\.depth=15 .*VGG.*valid: 11, 13, 16, 19"),
        (partial(VGG, depth=11, num_classes=0), r"model\.num_classes=0 .*>= 1"),
        (partial(ResNet, depth=8, in_chans=0), r"model\.in_chans=0 .*>= 1"),
    ],
)
def test_bad_setting_raises_one_line_config_error(make, pattern):
    with pytest.raises(ConfigError, match=pattern) as err:
        build_on_meta(make)
    assert "\n" not in str(err.value)


def test_valid_depths_are_accepted():
    # The rules above must accept valid depths (the papers' own are built in COUNTS).
    for depth in (8, 14):
        build_on_meta(ResNet, depth=depth)
    for depth in (10, 22):
        build_on_meta(WideResNet, depth=depth, widen_factor=1)
    for depth in (16, 40):
        build_on_meta(DenseNet, depth=depth, growth_rate=1)
    for depth in (40, 100, 7):
        build_on_meta(DenseNet, depth=depth, growth_rate=1, bottleneck=False, compression=1.0)


def test_option_a_shortcut_subsamples_and_zero_pads():
    x = torch.randn(2, 16, 8, 8)
    out = ShortcutA(16, 32, stride=2)(x)
    assert out.shape == (2, 32, 4, 4)
    torch.testing.assert_close(out[:, 8:24], x[:, :, ::2, ::2])
    assert out[:, :8].abs().sum() == 0 and out[:, 24:].abs().sum() == 0


def test_resnet_has_no_shortcut_parameters():
    # Option A: only the 3x3 convs, norms and head carry weights (He et al. 2016, Sec. 4.2).
    model = resnet.resnet20()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 19 and all(m.kernel_size == (3, 3) for m in convs)


def test_wrn_shortcuts_are_1x1_convs_where_shape_changes():
    model = WideResNet(depth=16, widen_factor=4)
    shortcuts = [b.shortcut for stage in model.stages for b in stage]
    # 16 -> 64, 64 -> 128 (stride 2), 128 -> 256 (stride 2); identity elsewhere.
    assert [s is not None for s in shortcuts] == [True, False, True, False, True, False]
    assert [s.stride for s in shortcuts if s is not None] == [(1, 1), (2, 2), (2, 2)]
    assert WideResNet(depth=16, widen_factor=1).stages[0][0].shortcut is None


def test_wrn_dropout_only_when_asked_and_only_in_training():
    assert not any(isinstance(m, nn.Dropout) for m in WideResNet(10, 1).modules())
    torch.manual_seed(0)
    model = WideResNet(depth=10, widen_factor=1, drop_rate=0.5)
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 3
    x = torch.randn(2, 3, 32, 32)
    assert not torch.equal(model(x), model(x))
    model.eval()
    torch.testing.assert_close(model(x), model(x))


def test_densenet_channel_arithmetic():
    # BC-100-12: stem 24, blocks of 16 layers, compression 0.5: 24+192=216 -> 108, 108+192=300 ->
    # 150, 150+192 = 342 features (Huang et al. 2017). Plain 40-12: stem 16 + 36 * 12 = 448.
    assert build_on_meta(densenet.densenet_bc100_k12).num_features == 342
    assert build_on_meta(DENSENET40_K12).num_features == 448


@pytest.mark.parametrize(
    "make",
    [resnet.resnet20, partial(WideResNet, depth=10, widen_factor=4), partial(DenseNet, 16, 12)],
    ids=["resnet", "wrn", "densenet"],
)
def test_reference_init(make):
    # He normal with fan_out: std = sqrt(2 / (k * k * out_channels)); BN (1, 0); linear bias 0.
    model = make()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    conv = max(convs, key=lambda m: m.weight.numel())
    k = conv.kernel_size[0] * conv.kernel_size[1]
    std = math.sqrt(2 / (k * conv.out_channels))
    assert conv.weight.std().item() == pytest.approx(std, rel=0.05)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
    assert torch.all(model.fc.bias == 0)


def test_vgg_init():
    model = VGG(depth=11)
    conv = model.features[-4]
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (9 * 512)), rel=0.05)
    assert torch.all(conv.bias == 0)
    assert model.fc.weight.std().item() == pytest.approx(0.01, rel=0.1)
    assert torch.all(model.fc.bias == 0)
