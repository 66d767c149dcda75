"""The study's parameter budget (2,000,000 trainable parameters, ``budget.max_params``): counted one
way and refused with one message, by ``train`` before a run writes anything (pyramid_lab.build)
and by the search before it launches a trial (pyramid_lab.search.budget)."""

from __future__ import annotations

from torch import nn


def count_parameters(net: nn.Module) -> int:
    """Trainable parameters: what the study's budget counts (frozen ones are not trained)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def over_budget(params: int, max_params: int | None) -> str | None:
    """Why a model of ``params`` trainable parameters is not trained under ``budget.max_params``
    (None: no budget), or None when it fits."""
    if max_params is None or params <= max_params:
        return None
    return (
        f"the model has {params:,} trainable parameters, over budget.max_params={max_params:,}: "
        "not trained; choose a smaller model or raise the budget"
    )
