"""Every conf/data/*.yaml instantiates into an ImageDataModule with the intended settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate

from pyramid_lab.data import CIFAR10, CINIC10, Digits, ImageDataModule, Synthetic
from tests.helpers import compose_config


def build(name: str, tmp_path: Path, *overrides: str) -> ImageDataModule:
    cfg = compose_config([f"data={name}", "seed=7", *overrides], tmp_path)
    return instantiate(cfg.data)


@pytest.mark.parametrize(
    "name, source", [("cinic10", CINIC10), ("cifar10", CIFAR10), ("digits", Digits), ("synthetic", Synthetic)]
)
def test_data_configs_instantiate(tmp_path, name, source):
    dm = build(name, tmp_path)
    assert isinstance(dm, ImageDataModule) and isinstance(dm.dataset, source)
    assert dm.num_classes == 10 and dm.seed == 7 and dm.merge_val is False
    # The study's baseline trains without augmentation: a BatchAugment with every part off.
    augment = dm.augment
    assert (augment.crop_padding, augment.flip, augment.scale, augment.rotate_degrees, augment.noise_std) == (
        0,
        False,
        None,
        0.0,
        0.0,
    )
    assert dm.batch_size == (64 if name == "digits" else 256)


def test_paths_and_interpolations(tmp_path):
    assert build("cinic10", tmp_path).dataset.root == tmp_path / "data" / "cinic10"
    synthetic = build("synthetic", tmp_path, "data.num_classes=4").dataset
    assert synthetic.num_classes == 4 and synthetic.seed == 7


def test_augment_override(tmp_path):
    dm = build("digits", tmp_path, "tricks=[augment,gaussian_noise]", "data.augment.scale=[0.9,1.1]")
    assert dm.augment.crop_padding == 4 and dm.augment.scale == (0.9, 1.1)
    dm.setup("fit")
    assert len(dm.splits.train) == 1257
