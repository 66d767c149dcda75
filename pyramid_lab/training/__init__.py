"""Training: the LightningModule, its callbacks and the compile wrapper. Knows Lightning, not Hydra."""

from pyramid_lab.training.compile import ChannelsLast, Compile, CompileFallback
from pyramid_lab.training.divergence import DivergenceWatch
from pyramid_lab.training.ema import EMA
from pyramid_lab.training.image_logging import ImageLogger
from pyramid_lab.training.mixing import MixCut
from pyramid_lab.training.module import Classifier, CrossEntropy
from pyramid_lab.training.predictions import TestPredictions
from pyramid_lab.training.sam import SAMClassifier
from pyramid_lab.training.snapshot_ensemble import SnapshotEnsemble
from pyramid_lab.training.tta import TTA

__all__ = [
    "EMA",
    "TTA",
    "ChannelsLast",
    "Classifier",
    "Compile",
    "CrossEntropy",
    "CompileFallback",
    "DivergenceWatch",
    "ImageLogger",
    "MixCut",
    "SAMClassifier",
    "SnapshotEnsemble",
    "TestPredictions",
]
