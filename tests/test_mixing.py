"""MixUp and CutMix: soft targets, CutMix's area, the switch, label smoothing on mixed targets."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pyramid_lab.errors import ConfigError
from pyramid_lab.training.mixing import MixCut, dominant_label

K = 10


def _batch(b: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    # Image i is the constant i + 1 and has label i % K: a pixel says where it came from.
    x = (torch.arange(b, dtype=torch.float32) + 1).view(b, 1, 1, 1).expand(b, 3, 32, 32).clone()
    return x, torch.arange(b) % K


def _lambda(targets: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # The share of each image's own label (its partner, the previous image, has another label).
    return targets.gather(1, y[:, None]).squeeze(1)


def test_mixup_mixes_images_and_targets_with_one_lambda() -> None:
    torch.manual_seed(0)
    x, y = _batch()
    mixed, targets = MixCut(K, mixup_alpha=1.0)(x, y)
    assert targets.shape == (16, K) and targets.dtype == torch.float32
    torch.testing.assert_close(targets.sum(1), torch.ones(16))
    lam = _lambda(targets, y)
    assert torch.allclose(lam, lam[0]) and 0 < lam[0] < 1  # one lambda per batch
    torch.testing.assert_close(mixed, lam[0] * x + (1 - lam[0]) * x.roll(1, 0))


@pytest.mark.parametrize("seed", range(5))
def test_cutmix_area_matches_its_lambda(seed: int) -> None:
    torch.manual_seed(seed)
    x, y = _batch()
    mixed, targets = MixCut(K, cutmix_alpha=1.0)(x, y)
    torch.testing.assert_close(targets.sum(1), torch.ones(16))
    own = (mixed == x).flatten(1).float().mean(1)  # fraction of each image still its own
    pasted = (mixed == x.roll(1, 0)).flatten(1).float().mean(1)
    torch.testing.assert_close(own + pasted, torch.ones(16))  # nothing else: a pasted box
    torch.testing.assert_close(own, _lambda(targets, y))


def test_the_switch_picks_cutmix_with_its_probability() -> None:
    torch.manual_seed(0)
    x, y = _batch()
    kinds = []
    for _ in range(200):
        mixed, _ = MixCut(K, mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=0.3)(x, y)
        kinds.append(bool(((mixed == x) | (mixed == x.roll(1, 0))).all()))  # CutMix pastes pixels
    assert 0.2 < sum(kinds) / len(kinds) < 0.4
    for _ in range(20):
        mixed, _ = MixCut(K, mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=1.0)(x, y)
        assert ((mixed == x) | (mixed == x.roll(1, 0))).all()


def test_prob_leaves_some_batches_unmixed_with_one_hot_targets() -> None:
    torch.manual_seed(0)
    x, y = _batch()
    unmixed = 0
    for _ in range(100):
        mixed, targets = MixCut(K, mixup_alpha=1.0, prob=0.5)(x, y)
        if torch.equal(mixed, x):
            unmixed += 1
            assert torch.equal(targets, F.one_hot(y, K).float())
    assert 30 < unmixed < 70


def test_label_smoothing_combines_with_mixed_targets() -> None:
    torch.manual_seed(0)
    x, y = _batch()
    _, targets = MixCut(K, mixup_alpha=1.0)(x, y)
    logits = torch.randn(16, K)
    eps = 0.1
    smoothed = targets * (1 - eps) + eps / K
    expected = -(smoothed * logits.log_softmax(1)).sum(1).mean()
    torch.testing.assert_close(F.cross_entropy(logits, targets, label_smoothing=eps), expected)
    # The module's criterion (nn.CrossEntropyLoss(label_smoothing=...)) takes them as they are.
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=eps)
    torch.testing.assert_close(criterion(logits, targets), expected)


def test_dominant_label_is_the_larger_share() -> None:
    torch.manual_seed(0)
    x, y = _batch()
    _, targets = MixCut(K, mixup_alpha=1.0)(x, y)
    lam = _lambda(targets, y)[0]
    expected = y if lam > 0.5 else y.roll(1, 0)
    assert torch.equal(dominant_label(targets), expected)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"mixup_alpha": -1.0},
        {"mixup_alpha": 1.0, "switch_prob": 2.0},
        {"cutmix_alpha": 1.0, "prob": -0.1},
    ],
)
def test_bad_settings_name_the_setting(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match=r"module\.mixing"):
        MixCut(K, **kwargs)
