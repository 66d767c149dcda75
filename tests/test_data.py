"""ImageDataModule and its samplers: epochs, DDP shards, merge_val, the on-device batch hook."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from pyramid_lab.data import ArraySplit, BatchAugment, Digits, ImageDataModule, Splits, Synthetic
from pyramid_lab.data.sampler import SequentialBatchSampler, ShuffledBatchSampler
from pyramid_lab.errors import ConfigError


class FixedSource:
    """A data source with given sizes and statistics; images encode their own index."""

    def __init__(
        self, n_train=50, n_val=20, n_test=30, num_classes=10, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)
    ):
        self.sizes = (n_train, n_val, n_test)
        self.num_classes = num_classes
        self.mean, self.std = mean, std

    def prepare(self):
        pass

    def load(self) -> Splits:
        def split(n, offset):
            images = torch.randint(
                0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(offset)
            )
            return ArraySplit(images, torch.arange(offset, offset + n) % self.num_classes)

        n_train, n_val, n_test = self.sizes
        return Splits(
            split(n_train, 0),
            split(n_val, 1000),
            split(n_test, 2000),
            [str(i) for i in range(self.num_classes)],
            self.mean,
            self.std,
        )


def batches(loader):
    return [(x, y) for x, y in loader]


def sampler_indices(sampler, epoch=0):
    sampler.set_epoch(epoch)
    return [b for b in sampler]


# --- samplers --------------------------------------------------------------------------------


def test_shuffled_sampler_covers_every_sample_once_and_reshuffles_per_epoch():
    sampler = ShuffledBatchSampler(100, 10, seed=3)
    epochs = [torch.cat(sampler_indices(sampler, e)) for e in range(3)]
    for order in epochs:
        assert len(order) == 100 and torch.equal(order.sort().values, torch.arange(100))
    assert not torch.equal(epochs[0], epochs[1]) and not torch.equal(epochs[1], epochs[2])
    # The order is a function of seed + epoch alone: a new sampler replays it (resume, ranks).
    assert torch.equal(torch.cat(sampler_indices(ShuffledBatchSampler(100, 10, seed=3), 1)), epochs[1])
    assert len(sampler) == 10 and all(
        len(b) == 10 and b.dtype == torch.int64 for b in sampler_indices(sampler)
    )


def test_shuffled_sampler_drop_last():
    sampler = ShuffledBatchSampler(105, 10, drop_last=True)
    assert len(sampler) == 10 and [len(b) for b in sampler] == [10] * 10
    # A different tail is dropped each epoch, so over epochs every sample is seen.
    seen = torch.cat([torch.cat(sampler_indices(sampler, e)) for e in range(10)]).unique()
    assert len(seen) == 105
    kept = ShuffledBatchSampler(105, 10, drop_last=False)
    assert [len(b) for b in kept] == [10] * 10 + [5]


@pytest.mark.parametrize("drop_last", [True, False])
@pytest.mark.parametrize("n", [100, 103])
def test_shuffled_sampler_shards_disjointly_across_two_ranks(n, drop_last):
    ranks = [ShuffledBatchSampler(n, 8, seed=1, drop_last=drop_last, rank=r, world_size=2) for r in range(2)]
    for epoch in (0, 1):
        per_rank = [sampler_indices(s, epoch) for s in ranks]
        assert len(per_rank[0]) == len(per_rank[1]) == len(ranks[0])  # DDP needs equal counts
        a, b = (torch.cat(p) for p in per_rank)
        if drop_last:
            assert len(a) == len(b) == n // 16 * 8
            assert not set(a.tolist()) & set(b.tolist())
        else:
            union = torch.cat([a, b])
            assert len(union) == 2 * -(-n // 2)
            assert set(union.tolist()) == set(range(n))  # every sample, padding repeats <= 1
    # Per-epoch reshuffling on both ranks.
    assert not torch.equal(torch.cat(sampler_indices(ranks[0], 0)), torch.cat(sampler_indices(ranks[0], 1)))


def test_repeats_show_every_sample_that_many_times_per_epoch_at_random_places():
    sampler = ShuffledBatchSampler(50, 10, seed=3, repeats=2)
    assert len(sampler) == 10  # twice the steps of one pass
    epoch = torch.cat(sampler_indices(sampler, 0))
    assert torch.equal(epoch.bincount(minlength=50), torch.full((50,), 2))
    first_half = set(epoch[:50].tolist())
    assert len(first_half) < 50  # not two plain passes one after the other


def test_sequential_sampler_keeps_order_and_every_sample():
    batches_ = list(SequentialBatchSampler(25, 10))
    assert [len(b) for b in batches_] == [10, 10, 5]
    assert torch.equal(torch.cat(batches_), torch.arange(25))
    ranks = [list(SequentialBatchSampler(25, 4, rank=r, world_size=2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1])
    assert set(torch.cat([torch.cat(r) for r in ranks]).tolist()) == set(range(25))


# --- the data module -------------------------------------------------------------------------


def make_dm(source=None, **kw) -> ImageDataModule:
    kw.setdefault("num_classes", 10)
    kw.setdefault("batch_size", 8)
    dm = ImageDataModule(source or FixedSource(), **kw)
    dm.setup("fit")
    return dm


def test_loaders_yield_uint8_slices_of_the_splits():
    dm = make_dm(pin_memory=False)
    train = batches(dm.train_dataloader())
    assert len(train) == 50 // 8
    x, y = train[0]
    assert x.dtype == torch.uint8 and x.shape == (8, 3, 32, 32) and y.dtype == torch.int64
    seen = torch.cat([y for _, y in train])
    assert len(seen) == 48
    val = batches(dm.val_dataloader())
    assert [len(y) for _, y in val] == [16, 4]  # eval_batch_size = 2 x batch_size, no drop
    assert torch.equal(torch.cat([x for x, _ in val]), dm.splits.val.images)
    test = batches(dm.test_dataloader())
    assert torch.equal(torch.cat([y for _, y in test]), dm.splits.test.labels)


def test_train_loader_reshuffles_when_lightning_sets_the_epoch():
    from lightning_fabric.utilities.data import _set_sampler_epoch  # what the fit loop calls

    dm = make_dm(pin_memory=False)
    loader = dm.train_dataloader()
    orders = []
    for epoch in range(2):
        _set_sampler_epoch(loader, epoch)
        orders.append(torch.cat([y for _, y in loader]))
    assert not torch.equal(orders[0], orders[1])


def test_train_loader_shards_by_trainer_rank():
    dm = make_dm(source=FixedSource(n_train=64), pin_memory=False)
    labels = []
    for rank in range(2):
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2, training=True)
        # Images are unique, so compare them to check the two ranks' samples are disjoint.
        labels.append({tuple(x.flatten()[:16].tolist()) for xb, _ in dm.train_dataloader() for x in xb})
    assert len(labels[0]) == len(labels[1]) == 32 and not labels[0] & labels[1]
    # Lightning's own DistributedSampler would replace the batch sampler: refuse that set-up.
    dm.trainer = SimpleNamespace(
        global_rank=0,
        world_size=2,
        training=True,
        _accelerator_connector=SimpleNamespace(use_distributed_sampler=True),
    )
    with pytest.raises(ConfigError, match="trainer.use_distributed_sampler=false"):
        dm.train_dataloader()


def test_merge_val_trains_on_train_plus_validation():
    digits = Digits(seed=0)
    dm = make_dm(digits, batch_size=64, merge_val=True, drop_last=False, pin_memory=False)
    splits = dm.splits
    train = batches(dm.train_dataloader())
    assert sum(len(y) for _, y in train) == len(splits.train) + len(splits.val) == 1797 - 270
    # Every train and val image is among the training batches, exactly once.
    got = torch.cat([x for x, _ in train]).flatten(1)
    want = torch.cat([splits.train.images, splits.val.images]).flatten(1)
    assert torch.equal(got[_lex_order(got)], want[_lex_order(want)])
    # The validation loop still runs on (only) the validation images.
    assert torch.equal(torch.cat([x for x, _ in dm.val_dataloader()]), splits.val.images)

    plain = make_dm(digits, batch_size=64, drop_last=False, pin_memory=False)
    assert sum(len(y) for _, y in plain.train_dataloader()) == len(splits.train)


def _lex_order(rows: torch.Tensor) -> torch.Tensor:
    order = torch.arange(len(rows))
    for col in reversed(range(rows.shape[1])):  # stable sorts, last key first
        order = order[rows[order, col].argsort(stable=True)]
    return order


def test_batch_hook_normalises_with_the_dataset_stats_and_augments_only_training():
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 0.125)
    augment = BatchAugment(crop_padding=4, flip=True, noise_std=0.5)
    dm = make_dm(FixedSource(mean=mean, std=std), augment=augment, pin_memory=False)
    x8, y = next(iter(dm.val_dataloader()))
    expected = (x8.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)

    dm.trainer = fake_trainer(validating=True)
    x, y_out = dm.on_after_batch_transfer((x8, y), 0)
    assert x.dtype == torch.float32 and x.shape == x8.shape and y_out is y
    torch.testing.assert_close(x, expected)

    dm.trainer = fake_trainer(training=True)
    torch.manual_seed(0)
    x_train, _ = dm.on_after_batch_transfer((x8, y), 0)
    assert x_train.dtype == torch.float32 and x_train.shape == x8.shape
    assert not torch.allclose(x_train, expected)
    # No trainer (a notebook calling the hook by hand) counts as evaluation.
    dm.trainer = None
    torch.testing.assert_close(dm.on_after_batch_transfer((x8, y), 0)[0], expected)


def fake_trainer(**stage: bool) -> SimpleNamespace:
    """What on_after_batch_transfer reads of a Trainer: its stage flags, rank and world size."""
    flags = {"training": False, "validating": False, "testing": False, "sanity_checking": False}
    return SimpleNamespace(**{**flags, **stage}, global_rank=0, world_size=1)


@pytest.mark.parametrize("noise_at_eval", [False, True])
def test_noise_is_in_pixel_units_and_reaches_evaluation_only_when_asked(noise_at_eval):
    std = (0.5, 0.5, 0.5)
    augment = BatchAugment(crop_padding=0, flip=False, noise_std=0.1, noise_at_eval=noise_at_eval)
    dm = make_dm(FixedSource(std=std), augment=augment, pin_memory=False)
    x8 = torch.full((256, 3, 32, 32), 128, dtype=torch.uint8)
    y = torch.zeros(256, dtype=torch.int64)
    clean = (128 / 255 - 0.5) / 0.5
    dm.trainer = fake_trainer(training=True)
    x, _ = dm.on_after_batch_transfer((x8, y), 0)
    # 0.1 in [0, 1] pixel units is 0.1 / std = 0.2 after normalising.
    assert abs((x - clean).std().item() - 0.2) < 0.005
    for stage in ("validating", "testing"):
        dm.trainer = fake_trainer(**{stage: True})
        x, _ = dm.on_after_batch_transfer((x8, y), 0)
        assert ((x - clean).std().item() > 0.1) is noise_at_eval


def test_config_errors():
    with pytest.raises(ConfigError, match="data.batch_size=0"):
        ImageDataModule(FixedSource(), num_classes=10, batch_size=0)
    with pytest.raises(ConfigError, match="data.eval_batch_size=-1"):
        ImageDataModule(FixedSource(), num_classes=10, eval_batch_size=-1)
    with pytest.raises(ConfigError, match=r"data.num_classes=100 .* 10 classes"):
        make_dm(num_classes=100)
    dm = make_dm(batch_size=64)  # 50 training images
    with pytest.raises(ConfigError, match="data.batch_size=64"):
        dm.train_dataloader()


def test_synthetic_through_the_module():
    dm = make_dm(
        Synthetic(num_train=40, num_val=8, num_test=8, num_classes=4), num_classes=4, pin_memory=False
    )
    assert len(dm.train_dataloader()) == 5
    assert int(torch.cat([y for _, y in dm.train_dataloader()]).max()) < 4


def test_with_a_real_trainer(tmp_path):
    import pytorch_lightning as pl

    class Probe(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
            self.train_batches, self.val_batches = [], []

        def training_step(self, batch, batch_idx):
            x, y = batch
            self.train_batches.append((x.dtype, x.shape, int(self.current_epoch), y.clone()))
            return nn.functional.cross_entropy(self.net(x), y)

        def validation_step(self, batch, batch_idx):
            x, _ = batch
            self.val_batches.append(x.clone())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    dm = ImageDataModule(Digits(), num_classes=10, batch_size=64, augment=BatchAugment(noise_std=0.1))
    model = Probe()
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=dm)
    n = len(dm.splits.train) // 64
    assert len(model.train_batches) == 2 * n
    assert all(dt == torch.float32 and tuple(s) == (64, 3, 32, 32) for dt, s, _, _ in model.train_batches)
    epoch0 = torch.cat([y for *_, e, y in model.train_batches if e == 0])
    epoch1 = torch.cat([y for *_, e, y in model.train_batches if e == 1])
    assert not torch.equal(epoch0, epoch1)  # set_epoch reached the sampler
    # Validation batches were normalised but not augmented: both epochs saw identical inputs.
    torch.testing.assert_close(model.val_batches[0], model.val_batches[1])
    x8 = dm.splits.val.images[:128]
    mean = torch.tensor(dm.splits.mean).view(1, 3, 1, 1)
    std = torch.tensor(dm.splits.std).view(1, 3, 1, 1)
    torch.testing.assert_close(model.val_batches[0], (x8.float() / 255 - mean) / std)


def test_merged_train_and_val_are_indexed_without_a_copy():
    from pyramid_lab.data.sampler import ConcatIndexed, IndexedTensors

    first = IndexedTensors(torch.arange(5, dtype=torch.uint8).view(5, 1), torch.arange(5))
    second = IndexedTensors(torch.arange(10, 13, dtype=torch.uint8).view(3, 1), torch.arange(10, 13))
    merged = ConcatIndexed(first, second)
    assert len(merged) == 8
    images, labels = merged[torch.tensor([6, 0, 5, 4, 7])]
    assert images.flatten().tolist() == [11, 0, 10, 4, 12] and labels.tolist() == [11, 0, 10, 4, 12]

    dm = make_dm(Digits(seed=0), batch_size=64, merge_val=True, pin_memory=False)
    first, second = dm._train.parts
    assert first.images.data_ptr() == dm.splits.train.images.data_ptr()
    assert second.images.data_ptr() == dm.splits.val.images.data_ptr()


def test_concatenated_parts_answer_a_batch_that_crosses_all_of_them():
    from pyramid_lab.data.sampler import ConcatIndexed, IndexedTensors

    parts = [
        IndexedTensors(torch.arange(a, b, dtype=torch.uint8).view(-1, 1), torch.arange(a, b))
        for a, b in ((0, 2), (10, 13), (20, 21))
    ]
    merged = ConcatIndexed(*parts)
    assert len(merged) == 6
    images, labels = merged[torch.tensor([5, 0, 3, 2, 1, 4])]
    assert images.flatten().tolist() == [20, 0, 11, 10, 1, 12] and labels.tolist() == [20, 0, 11, 10, 1, 12]
