"""ShakeDrop's statistics (Yamada et al. 2018): eval expectation, forward mean, gradient scale."""

import pytest
import torch

from pyramid_lab.models.shakedrop import ShakeDrop, linear_drop_probs, shake_drop


def test_eval_uses_the_expectation():
    x = torch.randn(8, 4, 2, 2)
    module = ShakeDrop(0.3).eval()
    torch.testing.assert_close(module(x), x * 0.7)


def test_zero_probability_is_identity_in_training():
    x = torch.randn(8, 4)
    assert torch.equal(shake_drop(x, 0.0, training=True), x)


def test_forward_mean_over_seeds_matches_the_expectation():
    torch.manual_seed(0)
    x = torch.ones(64, 1)
    draws = torch.stack([shake_drop(x, 0.5, training=True) for _ in range(2000)])
    assert draws.mean().item() == pytest.approx(0.5, abs=0.02)
    # Either the whole batch passes unchanged (b = 1) or each sample is scaled by its own alpha.
    unchanged = (draws == 1).all(dim=1).squeeze(-1)
    assert unchanged.float().mean().item() == pytest.approx(0.5, abs=0.05)
    perturbed = draws[~unchanged]
    assert perturbed.min() >= -1 and perturbed.max() <= 1
    assert perturbed.std(dim=1).min() > 0.1  # per-sample alpha, not one per batch
    assert perturbed.var().item() == pytest.approx(1 / 3, abs=0.03)  # U[-1, 1]


def test_gradient_uses_an_independent_beta_in_zero_one():
    torch.manual_seed(1)
    grads, values = [], []
    for _ in range(2000):
        x = torch.ones(32, 1, requires_grad=True)
        y = shake_drop(x, 0.5, training=True)
        y.sum().backward()
        grads.append(x.grad.clone())
        values.append(y.detach())
    grads, values = torch.stack(grads), torch.stack(values)
    perturbed = ~(values == 1).all(dim=1).squeeze(-1)
    assert (grads[~perturbed] == 1).all()
    beta = grads[perturbed]
    assert beta.min() >= 0 and beta.max() <= 1
    assert beta.mean().item() == pytest.approx(0.5, abs=0.02)
    # beta is not alpha: the backward scale differs from the forward one.
    assert not torch.allclose(beta, values[perturbed])


def test_linear_schedule():
    assert linear_drop_probs(0.5, 4) == pytest.approx([0.125, 0.25, 0.375, 0.5])


def test_bad_probability():
    with pytest.raises(ValueError, match="drop_prob=1.5 must be in"):
        ShakeDrop(1.5)
