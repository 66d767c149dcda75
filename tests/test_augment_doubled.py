"""tricks=augment_doubled: the training set is the originals plus one augmented copy of each,
drawn once per run from the seed (pyramid_lab.data.doubling), on the digits data."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from pyramid_lab.data.datamodule import ImageDataModule
from tests.helpers import compose_config, run_app


def datamodule(tmp_path, *overrides: str) -> ImageDataModule:
    cfg = compose_config(["experiment=quickstart", "tricks=augment_doubled", *overrides], tmp_path)
    dm = instantiate(cfg.data, pin_memory=False)
    dm.setup("fit")
    return dm


def training_set(dm: ImageDataModule) -> tuple[torch.Tensor, torch.Tensor]:
    return dm._train[torch.arange(len(dm._train))]


@pytest.fixture(scope="module")
def doubled(tmp_path_factory) -> ImageDataModule:
    return datamodule(tmp_path_factory.mktemp("doubled"))


def test_the_training_set_is_the_originals_then_one_augmented_copy_of_each(doubled):
    train = doubled.splits.train
    n = len(train)
    images, labels = training_set(doubled)
    assert len(doubled._train) == 2 * n and len(doubled.train_dataloader()) == 2 * n // doubled.batch_size
    assert torch.equal(images[:n], train.images) and torch.equal(labels[:n], train.labels)
    assert torch.equal(labels[n:], train.labels)  # each copy keeps its original's class
    changed = (images[n:] != train.images).flatten(1).any(1)
    assert changed.float().mean() > 0.95  # a crop at offset (4, 4) and a 0-degree turn are rare
    # Validation and test are untouched.
    assert len(doubled._val) == len(doubled.splits.val) and len(doubled._test) == len(doubled.splits.test)


def test_the_copy_is_fixed_by_the_seed(doubled, tmp_path):
    n = len(doubled.splits.train)
    copy = training_set(doubled)[0][n:]
    assert torch.equal(training_set(datamodule(tmp_path / "same"))[0][n:], copy)
    # Another seed for the datamodule only (the split stays): another copy of the same originals.
    other = datamodule(tmp_path / "other", "data.seed=7")
    assert torch.equal(other.splits.train.images, doubled.splits.train.images)
    assert not torch.equal(training_set(other)[0][n:], copy)


def test_merged_validation_images_are_doubled_too(tmp_path):
    dm = datamodule(tmp_path, "tricks=[merge_val,augment_doubled]")
    train, val = dm.splits.train, dm.splits.val
    n = len(train) + len(val)
    images, labels = training_set(dm)
    assert len(images) == 2 * n
    assert torch.equal(images[: len(train)], train.images) and torch.equal(images[len(train) : n], val.images)
    assert torch.equal(labels[n:], torch.cat([train.labels, val.labels]))


def test_no_copy_is_made_to_test_a_checkpoint(tmp_path):
    cfg = compose_config(["experiment=quickstart", "tricks=augment_doubled"], tmp_path)
    dm = instantiate(cfg.data, pin_memory=False)
    dm.setup("test")
    assert len(dm._train) == len(dm.splits.train)


@pytest.mark.slow
def test_a_tiny_run_trains_on_the_doubled_set(tmp_path):
    from tests.helpers import TINY

    result = run_app([*TINY, "tricks=augment_doubled"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_rerun_resumed_mid_epoch_gets_the_batches_the_stopped_run_had_left(doubled, tmp_path):
    # What a resumed run rebuilds: a fresh datamodule (the copy drawn again from the seed) whose
    # training loader is handed the checkpoint's sampler state, here 3 batches into epoch 1.
    loader = doubled.train_dataloader()
    loader.sampler.set_epoch(1)
    uninterrupted = list(loader)
    rerun = datamodule(tmp_path).train_dataloader()
    rerun.load_state_dict({"epoch": 1, "batches": 3})
    rerun.sampler.set_epoch(1)
    left = list(rerun)
    assert len(left) == len(uninterrupted) - 3
    for (x, y), (x_resumed, y_resumed) in zip(uninterrupted[3:], left, strict=True):
        assert torch.equal(x, x_resumed) and torch.equal(y, y_resumed)
    # The epoch draws from both halves: copies are trained on, not only counted.
    n = len(doubled.splits.train)
    assert any((idx >= n).any() for idx in loader.sampler) and any((idx < n).any() for idx in loader.sampler)
