"""The one model contract (see pyramid_lab/models/__init__.py), checked on every conf/model option.

Each option is instantiated as the app does (hydra.utils.instantiate on its YAML, with num_classes
and act_layer filled in by interpolation). Full-size options are built on the meta device (no
memory, no init); forward passes use a small member of each family, on CPU, batch 2.
"""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest
import torch
from hydra._internal.utils import _locate
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

import pyramid_lab.models as models
from pyramid_lab.models import VGG, ConvNet, DenseNet, PyramidNet, ResNet, WideResNet
from tests.helpers import CONFIG_DIR

CONF = CONFIG_DIR / "model"
OPTIONS = sorted(p.stem for p in CONF.glob("*.yaml"))
# Settings for the options that take any depth (their YAML leaves depth and alpha as ???).
SMALL = {"pyramidnet": {"depth": 11, "alpha": 8, "bottleneck": True, "shakedrop": 0.5}}
# A small member of every family, for the forward passes: ResNet-8, WRN-10-1, DenseNet-BC-16-4, ...
TINY = {
    PyramidNet: dict(depth=11, alpha=8, bottleneck=True, shakedrop=0.5),
    ResNet: dict(depth=8),
    WideResNet: dict(depth=10, widen_factor=1, drop_rate=0.3),
    DenseNet: dict(depth=16, growth_rate=4),
    VGG: dict(depth=11),
}
ACT_TYPES = (nn.ReLU, nn.LeakyReLU, nn.SELU, nn.Hardswish, nn.GELU)
# The constructor arguments of a variant: set by its builder, never by its YAML.
VARIANT_KEYS = {"depth", "alpha", "bottleneck", "widen_factor", "growth_rate", "compression", "layers"}


def option_config(option: str, num_classes: int = 7, act: str = "selu") -> DictConfig:
    """conf/model/<option>.yaml with the app's interpolations filled in (and SMALL's settings)."""
    cfg = OmegaConf.create(
        {
            "data": {"num_classes": num_classes},
            "activation": {"name": act},
            "model": OmegaConf.load(CONF / f"{option}.yaml"),
        }
    )
    for key, value in SMALL.get(option, {}).items():
        cfg.model[key] = value
    return cfg.model


def build_on_meta(cfg: DictConfig, **kw) -> nn.Module:
    with torch.device("meta"):
        return instantiate(cfg, **kw)


class MarkedNorm(nn.BatchNorm2d):
    """A norm layer to inject: every norm of the model must be one."""


def test_models_import_neither_lightning_nor_hydra():
    heavy = ("pytorch_lightning", "lightning", "hydra", "omegaconf")
    code = f"import sys, pyramid_lab.models; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


FAMILIES = [models.pyramidnet, models.resnet, models.wide_resnet, models.densenet, models.vgg]


def builders() -> set[str]:
    """The builder functions of every family file: those annotated to return a model class."""
    classes = {cls.__name__ for cls in TINY}
    return {
        name
        for module in FAMILIES
        for name, obj in vars(module).items()
        if inspect.isfunction(obj) and inspect.signature(obj).return_annotation in classes
    }


def named_by_options() -> set[str]:
    return {OmegaConf.load(CONF / f"{option}.yaml")._target_.rpartition(".")[2] for option in OPTIONS}


def test_every_builder_and_model_is_a_package_level_name():
    classes = {cls.__name__ for cls in TINY}
    found = builders() | {
        name
        for module in FAMILIES
        for name, obj in vars(module).items()
        if inspect.isclass(obj) and issubclass(obj, ConvNet) and obj is not ConvNet
    }
    assert classes | named_by_options() <= found  # what the YAMLs name is found: the search works
    assert found <= set(models.__all__)


# Every model target a released conf/model option named, in both spellings the options have used
# (the package's name, and before it the family module's). A checkpoint's saved config carries it,
# and mode=test and mode=predict rebuild the model from that config: a target renamed or dropped
# (a builder, or a family module) orphans those checkpoints, so a new option joins this list and a
# name on it stays.
SAVED_MODELS = {
    "pyramidnet": [
        "PyramidNet",
        "pyramidnet110_a48",
        "pyramidnet110_a4_75",
        "pyramidnet128_a64",
        "pyramidnet164_a48",
        "pyramidnet196_a48",
        "pyramidnet272_a200",
    ],
    "resnet": ["resnet20", "resnet110"],
    "wide_resnet": ["wrn16_4", "wrn28_10"],
    "densenet": ["densenet_bc100_k12"],
    "vgg": ["vgg16_bn", "vgg19_bn"],
}
SAVED_TARGETS = [
    f"pyramid_lab.models{package_or_module}.{name}"
    for module, names in SAVED_MODELS.items()
    for name in names
    for package_or_module in ("", f".{module}")
]


@pytest.mark.parametrize("target", SAVED_TARGETS)
def test_a_target_a_checkpoint_may_name_still_resolves(target):
    assert callable(_locate(target))  # the resolver instantiate uses


def test_every_option_target_is_one_checkpoints_may_name():
    assert {OmegaConf.load(CONF / f"{option}.yaml")._target_ for option in OPTIONS} <= set(SAVED_TARGETS)


def test_every_builder_is_named_by_an_option():
    # A builder no conf/model option names is dead code only tests reach: a size without an option
    # is built from its class (ResNet(depth=56)); one users need gets a YAML.
    assert builders() <= named_by_options()


@pytest.mark.parametrize("option", OPTIONS)
def test_option_targets_a_package_level_name_and_defines_its_variant_once(option):
    cfg = OmegaConf.load(CONF / f"{option}.yaml")
    prefix, _, name = cfg._target_.rpartition(".")
    assert prefix == "pyramid_lab.models" and name in models.__all__
    target = getattr(models, name)
    if inspect.isclass(target):
        # Any depth: the user gives depth and alpha; no default could pass for a variant.
        assert OmegaConf.is_missing(cfg, "depth") and OmegaConf.is_missing(cfg, "alpha")
    else:
        # A variant: its builder holds depth, alpha, width, ...; the YAML repeats none of them.
        assert not VARIANT_KEYS & set(cfg)


@pytest.mark.parametrize("option", OPTIONS)
def test_option_takes_num_classes_act_layer_and_norm_layer(option):
    model = build_on_meta(option_config(option, num_classes=7, act="selu"), norm_layer=MarkedNorm)
    assert type(model) is family(option) and isinstance(model, ConvNet)
    assert model.fc.in_features == model.num_features and model.fc.out_features == 7
    assert [m for m in model.modules() if isinstance(m, nn.Linear)] == [model.fc]
    # act_layer="selu" reaches every activation of the network, whatever the family.
    assert {type(m) for m in model.modules() if isinstance(m, ACT_TYPES)} == {nn.SELU}
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))]
    assert norms and all(type(m) is MarkedNorm for m in norms)


def family(option: str) -> type:
    """The class an option builds: its target, or the class its builder is annotated to return."""
    target = getattr(models, OmegaConf.load(CONF / f"{option}.yaml")._target_.rpartition(".")[2])
    return target if inspect.isclass(target) else getattr(models, inspect.signature(target).return_annotation)


def test_every_family_has_a_small_member_here():
    assert {family(option) for option in OPTIONS} == set(TINY)


def tiny_models() -> list:
    return [pytest.param(lambda: instantiate(option_config("pyramidnet")), id="pyramidnet.yaml")] + [
        pytest.param(lambda cls=cls, kw=kw: cls(**kw, num_classes=7, act_layer="selu"), id=cls.__name__)
        for cls, kw in TINY.items()
    ]


@pytest.mark.parametrize("make", tiny_models())
def test_forward_is_head_of_features(make):
    torch.manual_seed(0)
    model = make().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = model.forward_features(x)
        logits = model.forward_head(features)
        pooled = model.forward_head(features, pre_logits=True)
        assert features.dim() == 4 and features.shape[:2] == (2, model.num_features)
        assert logits.shape == (2, 7) and pooled.shape == (2, model.num_features)
        torch.testing.assert_close(pooled, features.mean(dim=(2, 3)))
        torch.testing.assert_close(model(x), logits, rtol=0, atol=0)


@pytest.mark.parametrize("cls", list(TINY), ids=lambda cls: cls.__name__)
def test_in_chans_sets_the_input_channels(cls):
    model = cls(**TINY[cls], in_chans=1, num_classes=3).eval()
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == 1
    with torch.no_grad():
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 3)


@pytest.mark.parametrize("cls", list(TINY), ids=lambda cls: cls.__name__)
def test_group_norm_injection_trains(cls):
    # A norm layer with no running statistics: the network must use it, not a hard-coded BN.
    model = cls(**TINY[cls], norm_layer=lambda chs: nn.GroupNorm(1, chs))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    loss = model(torch.randn(2, 3, 32, 32)).logsumexp(dim=1).sum()
    loss.backward()
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert norms and all(m.weight.grad is not None for m in norms)


@pytest.mark.parametrize("cls", [WideResNet, DenseNet], ids=lambda cls: cls.__name__)
def test_checkpoints_with_the_old_head_keys_still_load(cls):
    # Before the shared head these two kept their final norm and classifier in `head.norm` and
    # `head.fc`; a LightningModule holds the network as `net`.
    torch.manual_seed(0)
    source = cls(**TINY[cls]).eval()
    renamed = {"bn_final.": "head.norm.", "fc.": "head.fc."}
    old_state = {}
    for key, value in source.state_dict().items():
        for new, old in renamed.items():
            if key.startswith(new):
                key = old + key[len(new) :]
        old_state["net." + key] = value
    assert "net.head.fc.weight" in old_state
    holder = nn.Module()
    holder.net = cls(**TINY[cls]).eval()
    holder.load_state_dict(old_state)  # strict
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(holder.net(x), source(x), rtol=0, atol=0)
