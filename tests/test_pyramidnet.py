"""PyramidNet against the reference code's parameter counts and the papers' figures."""

import inspect

import pytest
import torch
from torch import nn

from pyramid_lab.errors import ConfigError
from pyramid_lab.models import pyramidnet
from pyramid_lab.models.pyramidnet import (
    PyramidNet,
    pyramid_widths,
    pyramidnet110_a48,
    pyramidnet196_a48,
    pyramidnet272_a200,
)

# Counts from running the official release (dyhan0920/PyramidNet-PyTorch, PyramidNet.py) for 10
# classes; our module must build exactly the same tensors.
REFERENCE_COUNTS = {
    (110, 48, False): 1_772_706,
    (110, 4.75, False): 337_133,
    (128, 64, False): 3_053_137,
    (128, 64, True): 1_970_726,
    (164, 48, True): 1_715_442,
    (196, 48, True): 1_996_512,
    (272, 200, True): 26_210_842,
    (29, 7.3, True): 65_462,
    (47, 13.5, False): 207_469,
}


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def on_meta(builder, *args, **kw) -> nn.Module:
    # Counting needs no memory and no initialisation.
    with torch.device("meta"):
        return builder(*args, **kw)


@pytest.mark.parametrize(("depth", "alpha", "bottleneck"), list(REFERENCE_COUNTS))
def test_parameter_count_equals_reference(depth, alpha, bottleneck):
    model = on_meta(PyramidNet, depth, alpha, bottleneck=bottleneck, truncate_depth=True)
    assert count(model) == REFERENCE_COUNTS[(depth, alpha, bottleneck)]


# Each builder's variant (depth, alpha, bottleneck units), pinned to the reference's count above.
BUILT = {
    "pyramidnet110_a48": (110, 48, False),
    "pyramidnet110_a4_75": (110, 4.75, False),
    "pyramidnet128_a64": (128, 64, True),
    "pyramidnet164_a48": (164, 48, True),
    "pyramidnet196_a48": (196, 48, True),
    "pyramidnet272_a200": (272, 200, True),
}
BUILDERS = sorted(
    name
    for name, obj in vars(pyramidnet).items()
    if inspect.isfunction(obj) and inspect.signature(obj).return_annotation in ("PyramidNet", PyramidNet)
)


@pytest.mark.parametrize("name", BUILDERS)
def test_every_builder_builds_the_references_network(name):
    # A builder added without its reference count fails here (KeyError) rather than going unchecked.
    assert count(on_meta(getattr(pyramidnet, name))) == REFERENCE_COUNTS[BUILT[name]]


def test_paper_figures():
    # Han et al. 2017, Table 4: 110/alpha 48 basic 1.7M; 272/alpha 200 bottleneck 26.0M (the
    # official code builds 26.2M); the study: 196/alpha 48 just under the 2M budget.
    assert count(on_meta(pyramidnet110_a48)) == pytest.approx(1.7e6, rel=0.05)
    assert count(on_meta(pyramidnet272_a200)) == pytest.approx(26.0e6, rel=0.01)
    assert count(on_meta(pyramidnet196_a48)) < 2_000_000


def test_units_truncate_like_the_reference():
    # 196 fits neither 6n+2 nor 9n+2: the reference truncates to 21 bottleneck units per stage.
    model = on_meta(pyramidnet196_a48)
    assert len(model.units) == 63
    assert model.num_features == (16 + 48) * 4


def test_widths_grow_additively_with_round_half_even():
    widths = pyramid_widths(depth=20, alpha=6, bottleneck=False)  # 3 units/stage, +2/3 per unit
    assert widths == [round(16 + 2 / 3 * (i + 1)) for i in range(9)]
    assert widths[-1] == 22
    # Python's round, as the reference: 16.5 -> 16 (half to even), not 17.
    assert pyramid_widths(depth=8, alpha=1.5, bottleneck=False) == [16, 17, 18]


def test_shortcut_pads_channels_and_pools():
    model = PyramidNet(depth=20, alpha=12).eval()
    x = torch.randn(2, 3, 32, 32)
    assert model.forward_features(x).shape == (2, 28, 8, 8)
    assert model(x).shape == (2, 10)
    assert not any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in model.modules())


def test_initialisation_follows_reference():
    model = PyramidNet(depth=20, alpha=12)
    conv = model.units[0].conv1
    expected_std = (2.0 / (3 * 3 * conv.out_channels)) ** 0.5
    assert conv.weight.std().item() == pytest.approx(expected_std, rel=0.15)
    bn = model.units[0].bn1
    assert torch.equal(bn.weight, torch.ones_like(bn.weight))
    assert torch.equal(bn.bias, torch.zeros_like(bn.bias))
    # The reference leaves the linear layer at PyTorch's default, U(-b, b) with b = 1/sqrt(fan_in),
    # bias included (unlike ResNet, WRN, DenseNet and VGG, whose references zero it).
    bound = model.fc.in_features**-0.5
    assert model.fc.bias.abs().max() <= bound and model.fc.bias.abs().min() > 0
    assert model.fc.weight.std().item() == pytest.approx(bound / 3**0.5, rel=0.15)


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "selu", "hardswish"])
def test_activation_by_name_reaches_every_unit(act):
    model = PyramidNet(depth=20, alpha=6, act_layer=act)
    kinds = {type(m) for m in model.modules() if not isinstance(m, (nn.Conv2d, nn.BatchNorm2d))}
    expected = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "selu": nn.SELU, "hardswish": nn.Hardswish}
    assert expected[act] in kinds
    assert not (kinds & (set(expected.values()) - {expected[act]}))
    if act == "leaky_relu":
        assert all(m.negative_slope == 0.01 for m in model.modules() if isinstance(m, nn.LeakyReLU))


def test_shakedrop_schedule_is_linear_to_the_last_unit():
    model = PyramidNet(depth=20, alpha=6, shakedrop=0.5)
    probs = [unit.shake_drop.drop_prob for unit in model.units]
    assert probs == pytest.approx([0.5 * (i + 1) / 9 for i in range(9)])
    assert all(isinstance(u.shake_drop, nn.Identity) for u in PyramidNet(20, 6).units)


def test_trains_one_step_with_finite_gradients():
    model = PyramidNet(depth=11, alpha=8, bottleneck=True, shakedrop=0.5)
    loss = nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(depth=7, alpha=48), "model.depth=7 is too small for basic units: need depth >= 8"),
        (dict(depth=10, alpha=48, bottleneck=True), "need depth >= 11"),
        (dict(depth=20, alpha=-1), "model.alpha=-1 must be >= 0"),
        (
            dict(depth=15, alpha=4),
            "model.depth=15 cannot be built with basic units: depth must be 6n + 2; nearest valid: 14, 20",
        ),
        (dict(depth=196, alpha=48, bottleneck=True), "nearest valid: 191, 200"),
        (
            dict(depth=20, alpha=4, act_layer="gelu"),
            "activation='gelu' is unknown; valid: relu, leaky_relu, selu, hardswish",
        ),
        (dict(depth=20, alpha=4, shakedrop=1.5), "model.shakedrop=1.5 must be in [0, 1]"),
    ],
)
def test_bad_settings_raise_one_line(kwargs, message):
    with pytest.raises(ConfigError) as info:
        PyramidNet(**kwargs)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
