"""Policy augmentation and Cutout: torchvision's output per op, per-image draws, the paper's Cutout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.v2 as T

from pyramid_lab.data.cutout import Cutout, cutout
from pyramid_lab.data.policy import (
    OPS,
    AutoAugment,
    PolicyAugment,
    RandAugment,
    TrivialAugmentWide,
    apply_ops,
)
from pyramid_lab.errors import ConfigError

_REFERENCE = T.AutoAugment()


def _reference(image: torch.Tensor, name: str, magnitude: float) -> torch.Tensor:
    # The exact path torchvision's v2 auto-augment transforms take from (op, magnitude) to
    # torchvision.transforms.v2.functional (shear as degrees(atan(m)) about the corner, int()
    # translations, solarize at bound * m, ...), on one image.
    return _REFERENCE._apply_image_or_video_transform(
        image, name, magnitude, interpolation=_REFERENCE.interpolation, fill=_REFERENCE._fill
    )


def _images(dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 32, 32, generator=g)
    x[1] = torch.linspace(0, 1, 32).view(1, 1, 32)  # a ramp: exercises rounding and histograms
    x[2] = 0.5  # a flat image: the degenerate cases of autocontrast and equalize
    return (x * 255).round().to(torch.uint8) if dtype == torch.uint8 else x


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("transform", [T.AutoAugment, T.RandAugment, T.TrivialAugmentWide])
def test_every_op_and_bin_matches_torchvision(transform: type, dtype: torch.dtype) -> None:
    # Every (op, magnitude bin, sign) of the policy's space, each on one of the test images, in one
    # batch: bit-exact against torchvision on the same image with the same magnitude.
    images = _images(dtype)
    policy = PolicyAugment(transform, num_bins=10 if transform is T.AutoAugment else 31)
    values, signed = policy.magnitudes(32, 32, images.device)
    cases = []
    for name in transform._AUGMENTATION_SPACE:
        k = OPS.index(name)
        magnitudes = sorted(set(values[k].tolist()))
        cases += [(k, m) for m in magnitudes] + ([(k, -m) for m in magnitudes if m] if signed[k] else [])
    x = images[torch.arange(len(cases)) % len(images)]
    ops = torch.tensor([k for k, _ in cases])
    out = apply_ops(x, ops, torch.tensor([m for _, m in cases], dtype=torch.float64))
    assert out.dtype == x.dtype and out.shape == x.shape
    for i, (k, m) in enumerate(cases):
        torch.testing.assert_close(
            out[i], _reference(x[i], OPS[k], m), rtol=0, atol=0, msg=f"{OPS[k]} magnitude {m}"
        )
    assert len(cases) > 100


def test_drawn_batches_match_torchvision_and_both_paths_agree() -> None:
    x = _images(torch.uint8).repeat(8, 1, 1, 1)  # 32 images, each with its own op
    (op1, m1), (op2, m2) = RandAugment(num_ops=2).draw(32, 32, 32, x.device, torch.Generator().manual_seed(1))
    grouped = apply_ops(apply_ops(x, op1, m1, grouped=True), op2, m2, grouped=True)
    # The accelerator path (every op on the whole batch, selected with torch.where):
    selected = apply_ops(apply_ops(x, op1, m1, grouped=False), op2, m2, grouped=False)
    assert torch.equal(grouped, selected)
    for i in range(len(x)):
        expected = _reference(_reference(x[i], OPS[op1[i]], float(m1[i])), OPS[op2[i]], float(m2[i]))
        assert torch.equal(grouped[i], expected), (OPS[op1[i]], OPS[op2[i]])


@pytest.mark.parametrize("policy", [AutoAugment(), RandAugment(), TrivialAugmentWide()], ids=repr)
def test_each_image_gets_its_own_draw(policy: PolicyAugment) -> None:
    g = torch.Generator().manual_seed(0)
    stages = policy.draw(64, 32, 32, torch.device("cpu"), g)
    assert len(stages) == {"AutoAugment": 2, "RandAugment": 2, "TrivialAugmentWide": 1}[type(policy).__name__]
    op, _ = stages[0]
    assert op.unique().numel() > 3  # different ops for images of one batch
    # The same image 64 times comes out in many different ways, dtype and shape kept.
    x = _images(torch.uint8)[:1].expand(64, -1, -1, -1).contiguous()
    out = policy(x, generator=g)
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert out.flatten(1).unique(dim=0).shape[0] > 5


def test_autoaugment_draws_follow_the_cifar10_policy() -> None:
    policy = AutoAugment("cifar10")
    g = torch.Generator().manual_seed(0)
    (op1, m1), (op2, _) = policy.draw(20_000, 32, 32, torch.device("cpu"), g)
    subs = T.AutoAugment(T.AutoAugmentPolicy.CIFAR10)._policies
    # Each sub-policy's first op applies with its probability: overall, the mean of those.
    expected = np.mean([sub[0][1] for sub in subs])
    applied = (op1 != 0).float().mean().item()
    assert abs(applied - expected) < 4 * np.sqrt(expected * (1 - expected) / 20_000)
    # Only the policy's ops, and a signed op's magnitude is negative about half the time.
    allowed = {OPS.index(name) for sub in subs for name, _, _ in sub} | {0}
    assert set(op1.unique().tolist()) | set(op2.unique().tolist()) <= allowed
    rotate = m1[op1 == OPS.index("Rotate")]
    assert 0.4 < (rotate < 0).float().mean().item() < 0.6


def test_randaugment_uses_its_magnitude_bin_and_all_its_ops() -> None:
    policy = RandAugment(num_ops=3, magnitude=5)
    stages = policy.draw(5_000, 32, 32, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert len(stages) == 3
    op, magnitude = stages[0]
    assert set(op.unique().tolist()) == set(policy.ops.tolist())  # 14 ops, Identity included
    rotate = magnitude[op == OPS.index("Rotate")].abs().unique()
    assert rotate.tolist() == [pytest.approx(30.0 * 5 / 30)]  # bin 5 of linspace(0, 30, 31)


@pytest.mark.parametrize(
    "make",
    [
        lambda: RandAugment(magnitude=31),
        lambda: RandAugment(num_ops=-1),
        lambda: AutoAugment("cifar100"),
        lambda: Cutout(size=-2),
    ],
)
def test_bad_settings_name_the_setting(make) -> None:
    with pytest.raises(ConfigError, match=r"data\.\w+\.\w+="):
        make()


def _paper_mask(h: int, w: int, length: int, y: int, x: int) -> np.ndarray:
    # DeVries & Taylor 2017, github.com/uoguelph-mlrg/Cutout util/cutout.py
    mask = np.ones((h, w), np.float32)
    y1, y2 = np.clip(y - length // 2, 0, h), np.clip(y + length // 2, 0, h)
    x1, x2 = np.clip(x - length // 2, 0, w), np.clip(x + length // 2, 0, w)
    mask[y1:y2, x1:x2] = 0.0
    return mask


def test_cutout_is_the_papers_mask_per_image() -> None:
    x = torch.randn(64, 3, 32, 32)
    out = cutout(x, 16, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)  # the same centre draws, in the same order
    cy, cx = torch.randint(0, 32, (64, 1), generator=g), torch.randint(0, 32, (64, 1), generator=g)
    for i in range(64):
        mask = torch.from_numpy(_paper_mask(32, 32, 16, int(cy[i]), int(cx[i])))
        torch.testing.assert_close(out[i], x[i] * mask)
    erased = (out == 0).flatten(1).float().mean(1)
    assert erased.max() == 0.25 and erased.min() < 0.25  # clipped at the border sometimes
    assert erased.unique().numel() > 3  # one square per image, each its own


def test_cutout_size_zero_is_a_no_op() -> None:
    x = torch.randn(2, 3, 8, 8)
    assert Cutout(size=0)(x) is x
