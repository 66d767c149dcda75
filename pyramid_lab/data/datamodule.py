"""The LightningDataModule: uint8 batches on the host, augmentation and normalisation on device."""

from __future__ import annotations

from collections.abc import Sequence

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler

from pyramid_lab.data.augment import BatchAugment
from pyramid_lab.data.cutout import Cutout
from pyramid_lab.data.doubling import augmented_copy, copy_generator
from pyramid_lab.data.policy import PolicyAugment
from pyramid_lab.data.sampler import (
    ConcatIndexed,
    IndexedTensors,
    ResumableLoader,
    SequentialBatchSampler,
    ShuffledBatchSampler,
)
from pyramid_lab.data.splits import DataSource, Splits
from pyramid_lab.errors import ConfigError


def _as_is(batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    # The default collate would turn the (images, labels) tuple into a list.
    return batch


def normalisation(
    mean: Sequence[float], std: Sequence[float], device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """``(scale, shift)`` with ``normalised = x * scale + shift`` for uint8 (0..255) or float
    ([0, 1]) images ``[B, 3, H, W]``: ``(x / 255 - mean) / std`` as one multiply-add."""
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    pixel = 255.0 if dtype == torch.uint8 else 1.0
    return 1.0 / (pixel * std_t), -mean_t / std_t


def normalise(x: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """Float32 ``x * scale + shift`` (see :func:`normalisation`); ``x`` is not modified."""
    # In place on a fresh copy: ``addcmul`` with the [1, C, 1, 1] broadcasts took 2-3x as long on
    # a CPU (python -m pyramid_lab.bench's data row).
    return x.to(torch.float32, copy=True).mul_(scale).add_(shift)


class ImageDataModule(pl.LightningDataModule):
    """Any data source as train/val/test loaders of whole uint8 batches.

    Batches leave the loader as ``(uint8 [B, 3, H, W], int64 [B])`` slices of the source's
    arrays. After the transfer to the device, ``on_after_batch_transfer`` augments training
    batches (``augment``'s crop/flip, then ``policy``, each image with its own draw), adds
    ``augment``'s Gaussian noise, normalises with the data set's mean/std, and applies ``cutout``
    to training batches (AutoAugment's order: crop/flip, policy, Cutout).

    Training batches come from a fresh permutation per epoch (seeded by ``seed + epoch``),
    sharded by ``trainer.global_rank`` / ``trainer.world_size``, so the trainer must run with
    ``use_distributed_sampler=False``; the training loader is resumable (a checkpoint written
    mid-epoch continues the epoch's permutation where it stopped). Validation and test batches
    are sequential, never dropped and never augmented; under DDP each rank takes an equal
    contiguous block (padded from the start like ``DistributedSampler``, so up to
    ``world_size - 1`` images count twice).

    Args:
        dataset: a data source (``Digits``, ``CINIC10``, ``CIFAR10``, ``Synthetic``, ...).
        num_classes: must equal the number of classes of ``dataset``; checked in ``setup``.
        batch_size: training images per batch per device (the study: 256).
        eval_batch_size: validation/test images per batch; ``None`` = ``2 * batch_size``.
        merge_val: train on train + validation (the study's Table 7, its best single trick).
            The validation loop still runs on the validation images, so ``val/*`` metrics are
            then measured on training data and are not held-out estimates; ``test/*`` remains
            the honest number. (They are kept rather than dropped so curves and checkpointing on
            ``val/*`` keep working.)
        augment: the training augmentation; ``None`` = none (the study's baseline).
        policy: per-image policy augmentation of training batches (``AutoAugment``,
            ``RandAugment``, ``TrivialAugmentWide`` of ``pyramid_lab.data.policy``), after
            ``augment``'s crop/flip and before normalisation; ``None`` = none.
        cutout: Cutout of training batches after normalisation (``pyramid_lab.data.cutout``: the
            square takes the mean colour); ``None`` = none.
        seed: seed of the per-epoch shuffling.
        pin_memory: pin host batches when training on a CUDA device.
        drop_last: drop the incomplete last training batch of each epoch.
        train_repeats: times each training image is seen per epoch, each time with its own
            augmentation draw: 2 is the study's "train set doubled by augmentation" (Table 6)
            without storing the copies. An epoch then has ``train_repeats`` times the steps.
        augmented_copy: the other reading of that doubled train set (``tricks=augment_doubled``):
            the training set becomes the originals followed by one copy of each image augmented
            by this ``BatchAugment`` (its geometric part), drawn once per run from the seed
            (``pyramid_lab.data.doubling``) and then fixed; ``augment`` still applies per batch
            to both halves. With ``merge_val`` the validation images are doubled as well (they
            are training images then). ``None`` = no copy.
    """

    def __init__(
        self,
        dataset: DataSource,
        num_classes: int,
        batch_size: int = 256,
        eval_batch_size: int | None = None,
        merge_val: bool = False,
        augment: BatchAugment | None = None,
        seed: int = 0,
        pin_memory: bool = True,
        drop_last: bool = True,
        train_repeats: int = 1,
        policy: PolicyAugment | None = None,
        cutout: Cutout | None = None,
        augmented_copy: BatchAugment | None = None,
    ) -> None:
        super().__init__()
        if batch_size <= 0:
            raise ConfigError(f"data.batch_size={batch_size} must be a positive integer")
        if eval_batch_size is not None and eval_batch_size <= 0:
            raise ConfigError(
                f"data.eval_batch_size={eval_batch_size} must be a positive integer "
                "or null (= 2 x data.batch_size)"
            )
        self.dataset = dataset
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or 2 * batch_size
        self.merge_val = merge_val
        self.augment = augment
        self.seed = seed
        self.pin_memory = pin_memory
        self.drop_last = drop_last
        if int(train_repeats) != train_repeats or train_repeats < 1:
            raise ConfigError(
                f"data.train_repeats={train_repeats!r} must be an integer >= 1 "
                "(2 = each training image twice per epoch)"
            )
        self.train_repeats = int(train_repeats)
        self.policy, self.cutout = policy, cutout
        self.augmented_copy = augmented_copy
        self._doubled = False  # whether _train holds the augmented copy (made for fitting only)
        self.splits: Splits | None = None
        self._stats: dict[tuple[torch.device, bool], tuple[Tensor, Tensor]] = {}

    def prepare_data(self) -> None:
        self.dataset.prepare()

    def setup(self, stage: str | None = None) -> None:
        if self.splits is None:
            self._load()
        # The copy only when fitting: testing or predicting from a checkpoint never trains on it.
        if self.augmented_copy is not None and stage in (None, "fit") and not self._doubled:
            generator = copy_generator(self.seed)  # one stream through train, then val if merged
            copies = [
                IndexedTensors(augmented_copy(part.images, self.augmented_copy, generator), part.labels)
                for part in self._originals
            ]
            self._train = ConcatIndexed(*self._originals, *copies)
            self._doubled = True

    def _load(self) -> None:
        splits = self.dataset.load()
        if len(splits.classes) != self.num_classes:
            raise ConfigError(
                f"data.num_classes={self.num_classes} but {type(self.dataset).__name__} has "
                f"{len(splits.classes)} classes; set data.num_classes={len(splits.classes)}"
            )
        self.splits = splits
        train = splits.train
        self._val = IndexedTensors(splits.val.images, splits.val.labels)
        self._originals = [
            IndexedTensors(train.images, train.labels),
            *([self._val] if self.merge_val else []),
        ]
        self._train = ConcatIndexed(*self._originals) if self.merge_val else self._originals[0]
        self._test = IndexedTensors(splits.test.images, splits.test.labels)

    def state_dict(self) -> dict[str, object]:
        # Saved in checkpoints: what predicting on new images needs without the data set.
        if self.splits is None:
            return {}
        return {
            "classes": list(self.splits.classes),
            "mean": list(self.splits.mean),
            "std": list(self.splits.std),
        }

    def train_dataloader(self) -> DataLoader:
        rank, world_size = self._rank()
        sampler = ShuffledBatchSampler(
            len(self._train), self.batch_size, self.seed, self.drop_last, rank, world_size, self.train_repeats
        )
        if len(sampler) == 0:
            per = f" per device across {world_size} devices" if world_size > 1 else ""
            raise ConfigError(
                f"data.batch_size={self.batch_size}{per} is more than the "
                f"{len(self._train)} training images; lower data.batch_size"
            )
        # Resumable: a run stopped mid-epoch continues this epoch's shuffle where it stopped.
        return self._loader(self._train, sampler, ResumableLoader)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self._val)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self._test)

    def on_after_batch_transfer(
        self, batch: tuple[Tensor, Tensor], dataloader_idx: int
    ) -> tuple[Tensor, Tensor]:
        """``(uint8 [B, 3, H, W], labels)`` -> ``(float32 [B, 3, H, W] normalised, labels)``."""
        x, y = batch
        augment, trainer = self.augment, self.trainer
        training = trainer is not None and trainer.training
        if training and augment is not None:
            x = augment(x)  # crops and flips the uint8 images before they become floats
        if training and self.policy is not None:
            x = self.policy(x)  # per image, after crop/flip, on pixel values (AutoAugment's order)
        if augment is not None and trainer is not None:
            evaluating = trainer.validating or trainer.testing or trainer.sanity_checking
            if training or (augment.noise_at_eval and evaluating):
                x = augment.add_noise(x)  # in pixel units, before normalising
        x = normalise(x, *self._norm_stats(x.device, x.dtype))
        if training and self.cutout is not None:
            x = self.cutout(x)  # normalised: 0 is the data set's mean colour (DeVries & Taylor)
        return x, y

    def _norm_stats(self, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        # Cached per device: building them per batch would be a host-to-device copy each step.
        key = (device, dtype == torch.uint8)
        if key not in self._stats:
            assert self.splits is not None, "setup() must run before batches arrive"
            self._stats[key] = normalisation(self.splits.mean, self.splits.std, device, dtype)
        return self._stats[key]

    def _eval_loader(self, data: IndexedTensors) -> DataLoader:
        rank, world_size = self._rank()
        return self._loader(data, SequentialBatchSampler(len(data), self.eval_batch_size, rank, world_size))

    def _loader(
        self, data: IndexedTensors, sampler: Sampler[Tensor], loader: type[DataLoader] = DataLoader
    ) -> DataLoader:
        # num_workers=0: a batch is one gather from memory, cheaper than a worker round trip.
        # A generator of its own: each iter() of a DataLoader draws a worker seed from the
        # global generator otherwise (workers or not), and a run resumed mid-epoch iterates its
        # loader once more than an uninterrupted one: augmentation and ShakeDrop would then draw
        # other numbers from there on.
        return loader(
            data,
            batch_size=None,
            sampler=sampler,
            num_workers=0,
            collate_fn=_as_is,
            pin_memory=self._pin(),
            generator=torch.Generator(),
        )

    def _rank(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        world_size = self.trainer.world_size
        connector = getattr(self.trainer, "_accelerator_connector", None)
        if world_size > 1 and getattr(connector, "use_distributed_sampler", False):
            # Lightning would swap our batch sampler for a per-sample DistributedSampler.
            raise ConfigError(
                "trainer.use_distributed_sampler=true replaces ImageDataModule's "
                "sharded batch sampler; set trainer.use_distributed_sampler=false"
            )
        return self.trainer.global_rank, world_size

    def _pin(self) -> bool:
        if not self.pin_memory:
            return False
        root_device = getattr(getattr(self.trainer, "strategy", None), "root_device", None)
        if root_device is not None:
            return root_device.type == "cuda"
        return torch.cuda.is_available()
