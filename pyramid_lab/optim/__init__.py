"""Optimizers and LR schedules beyond torch.optim: SAM, BatchNorm freezing for SAM's second pass,
and the study's scheduler builders. Knows nothing of Lightning or Hydra."""

from pyramid_lab.optim.bn import frozen_bn_stats
from pyramid_lab.optim.sam import SAM
from pyramid_lab.optim.schedulers import (
    PeriodicCosine,
    WarmupPlateau,
    cosine_periodic,
    multistep,
    snapshot_epochs,
)

__all__ = [
    "SAM",
    "PeriodicCosine",
    "WarmupPlateau",
    "cosine_periodic",
    "frozen_bn_stats",
    "multistep",
    "snapshot_epochs",
]
