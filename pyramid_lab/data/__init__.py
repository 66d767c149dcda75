"""Data: sources that return uint8 arrays, the LightningDataModule, device-side augmentation."""

from pyramid_lab.data.augment import BatchAugment
from pyramid_lab.data.cifar10 import CIFAR10
from pyramid_lab.data.cinic10 import CINIC10
from pyramid_lab.data.cutout import Cutout
from pyramid_lab.data.datamodule import ImageDataModule
from pyramid_lab.data.digits import Digits
from pyramid_lab.data.policy import AutoAugment, RandAugment, TrivialAugmentWide
from pyramid_lab.data.splits import ArraySplit, DataSource, Splits
from pyramid_lab.data.synthetic import Synthetic

__all__ = [
    "CIFAR10",
    "CINIC10",
    "ArraySplit",
    "AutoAugment",
    "BatchAugment",
    "Cutout",
    "RandAugment",
    "TrivialAugmentWide",
    "DataSource",
    "Digits",
    "ImageDataModule",
    "Splits",
    "Synthetic",
]
