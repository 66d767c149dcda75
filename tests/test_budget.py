"""The parameter budget has one rule and one message, whoever applies it: train() stops a run with
it, the search prunes a trial with it (pyramid_lab.models.budget)."""

from __future__ import annotations

import pytest
from torch import nn

from pyramid_lab.build import check_budget
from pyramid_lab.errors import ConfigError
from pyramid_lab.models.budget import count_parameters, over_budget


def test_frozen_parameters_are_not_counted():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))  # 16 + 8 trainable, BN's buffers not
    assert count_parameters(net) == 24
    net[0].requires_grad_(False)
    assert count_parameters(net) == 8


def test_a_model_at_the_budget_fits_and_one_over_it_is_refused_with_one_message():
    assert over_budget(2_000_000, 2_000_000) is None and over_budget(10**9, None) is None
    check_budget(2_000_000, 2_000_000)
    reason = over_budget(2_000_001, 2_000_000)
    assert reason == (
        "the model has 2,000,001 trainable parameters, over budget.max_params=2,000,000: "
        "not trained; choose a smaller model or raise the budget"
    )
    with pytest.raises(ConfigError) as refused:
        check_budget(2_000_001, 2_000_000)
    assert str(refused.value) == reason
