"""Training: the LightningModule, its callbacks and the compile wrapper. Knows Lightning, not Hydra."""

from pyramid_lab.training.compile import CompileFallback
from pyramid_lab.training.ema import EMA
from pyramid_lab.training.image_logging import ImageLogger
from pyramid_lab.training.mixing import MixCut
from pyramid_lab.training.module import Classifier
from pyramid_lab.training.predictions import TestPredictions
from pyramid_lab.training.snapshot_ensemble import SnapshotEnsemble

__all__ = [
    "EMA",
    "Classifier",
    "CompileFallback",
    "ImageLogger",
    "MixCut",
    "SnapshotEnsemble",
    "TestPredictions",
]
