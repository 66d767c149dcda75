"""The parameter budget as a constraint of the search: counted before any training.

The sweeper builds each sampled model from the trial's composed config on the CPU (under a
second for PyramidNet-196/48; PyTorch's ``meta`` device is slower here, its weight initialisers
go through reference implementations) and counts its trainable parameters as ``train()`` does. A
model over ``budget.max_params`` is pruned without launching its job, with the message ``train()``
would stop with (pyramid_lab.models.budget.over_budget). The count is also told to the sampler as
a constraint (``params - max_params``, feasible when <= 0; Optuna's ``Trial.set_constraint``,
which constrained TPE reads, after Gardner et al. 2014), so that trials over the budget rank below
every feasible one and the sampler learns where the budget line lies.
"""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig

# The budget a trial ran under (user attribute, next to its parameter count), and the name of its
# constraint in the study.
MAX_PARAMS = "max_params"
CONSTRAINT = "params_over_budget"


def count_model_parameters(cfg: DictConfig) -> int:
    """Trainable parameters of ``cfg.model`` (built once on the CPU, then dropped), counted as
    ``train()`` counts them (pyramid_lab.models.budget)."""
    # Imported here: the report reads MAX_PARAMS from this module and imports no torch.
    from pyramid_lab.models.budget import count_parameters

    return count_parameters(instantiate(cfg.model))
