"""Whole-batch index samplers and the dataset they index: a batch is one uint8 tensor slice.

Used as ``DataLoader(IndexedTensors(...), batch_size=None, sampler=...)``: the sampler yields a
LongTensor of indices per batch and the dataset answers with ``(images[idx], labels[idx])``, so
a batch costs one gather instead of ``batch_size`` Python calls and a collate.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler


class IndexedTensors(Dataset):
    """Aligned ``images [N, ...]`` and ``labels [N]`` indexed by a whole batch of indices at once."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: Tensor) -> tuple[Tensor, Tensor]:
        # index_select copies whole images; ``images[index]`` copies byte by byte (0.5-0.9 ms
        # against 0.03 ms for 256 CIFAR images on one core, python -m pyramid_lab.bench's data row).
        return self.images.index_select(0, index), self.labels.index_select(0, index)


class ConcatIndexed(Dataset):
    """Two ``IndexedTensors`` as one (indices past the first continue into the second), without
    copying either: train + validation merged costs no second copy of the data set."""

    def __init__(self, first: IndexedTensors, second: IndexedTensors) -> None:
        self.first, self.second = first, second

    def __len__(self) -> int:
        return len(self.first) + len(self.second)

    def __getitem__(self, index: Tensor) -> tuple[Tensor, Tensor]:
        in_second = index >= len(self.first)
        images = self.first.images.new_empty((len(index), *self.first.images.shape[1:]))
        labels = self.first.labels.new_empty(len(index))
        for part, mask, offset in ((self.first, ~in_second, 0), (self.second, in_second, len(self.first))):
            images[mask], labels[mask] = part[index[mask] - offset]
        return images, labels


class ShuffledBatchSampler(Sampler[Tensor]):
    """Batches of a fresh permutation every epoch, sharded across DDP ranks.

    The permutation of epoch ``e`` is ``randperm(N)`` from a generator seeded with ``seed + e``,
    the same on every rank; rank ``r`` of ``W`` takes every W-th index of it from position r, so
    the ranks' samples are disjoint and each rank gets the same number of batches (DDP hangs
    otherwise). With ``drop_last`` the permutation is cut to a multiple of ``batch_size * W``
    (a different tail each epoch); without it, it is padded by repeating its start, as
    ``DistributedSampler`` does, and each rank's last batch may be short.

    With ``repeats`` = r an epoch is a permutation of the data set taken r times (each sample
    appears r times at random positions, and is augmented independently each time): an offline
    r-fold enlarged train set without its disk and memory.

    Lightning calls ``set_epoch`` at the start of every training epoch.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        seed: int = 0,
        drop_last: bool = True,
        rank: int = 0,
        world_size: int = 1,
        repeats: int = 1,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.data_size = num_samples
        self.repeats = repeats
        num_samples *= repeats
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _per_rank(self) -> int:
        if self.drop_last:
            return self.num_samples // (self.batch_size * self.world_size) * self.batch_size
        return math.ceil(self.num_samples / self.world_size)

    def __len__(self) -> int:
        return math.ceil(self._per_rank() / self.batch_size)

    def __iter__(self) -> Iterator[Tensor]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.num_samples, generator=g) % self.data_size
        total = self._per_rank() * self.world_size
        if total > self.num_samples:  # pad (drop_last=False only)
            order = torch.cat([order, order[torch.arange(total - self.num_samples) % self.num_samples]])
        yield from order[self.rank : total : self.world_size].split(self.batch_size)


class SequentialBatchSampler(Sampler[Tensor]):
    """Batches of ``0..N-1`` in order, no sample dropped; for validation and test.

    Across ``W`` ranks each rank takes a contiguous block of ``ceil(N / W)`` indices, the last
    block padded from the start as ``DistributedSampler`` does, so ranks run the same number of
    batches; up to ``W - 1`` samples are then counted twice (none when W divides N, and none on
    one device).
    """

    def __init__(self, num_samples: int, batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size

    def _per_rank(self) -> int:
        return math.ceil(self.num_samples / self.world_size)

    def __len__(self) -> int:
        return math.ceil(self._per_rank() / self.batch_size)

    def __iter__(self) -> Iterator[Tensor]:
        start = self.rank * self._per_rank()
        indices = torch.arange(start, start + self._per_rank()) % self.num_samples
        yield from indices.split(self.batch_size)
