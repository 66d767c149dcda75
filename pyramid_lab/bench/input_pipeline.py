"""Input-pipeline throughput, the host-to-device copy included, in two comparisons.

``bench_data``: our uint8 index batches + on-device ``BatchAugment`` against torchvision's
per-image PIL transforms, like for like: the same images, batch size, augmentations
(:data:`CROP_PADDING`, :data:`FLIP`, built for both sides by :func:`our_augment` and
:func:`torchvision_transform`), normalisation, number of DataLoader workers, and on a CPU the same
number of torch threads (:data:`CPU_THREADS`).

``bench_policies``: our pipeline as training sees it with each policy augmentation (AutoAugment,
RandAugment, TrivialAugmentWide per image on the device, ``pyramid_lab.data.policy``; Cutout)
against the same pipeline without it, windows interleaved so each ratio is paired against the same
machine state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from pyramid_lab.bench.interleave import Clock, Windows, against_the_first
from pyramid_lab.bench.timing import Record
from pyramid_lab.data import BatchAugment, ImageDataModule, Synthetic
from pyramid_lab.data.cutout import Cutout
from pyramid_lab.data.policy import AutoAugment, RandAugment, TrivialAugmentWide

CROP_PADDING = 4  # the CIFAR recipe: zero-pad 4 pixels, crop back to 32x32
FLIP = True  # random left-right flips, p = 0.5
# One torch thread each on a CPU: torchvision's per-image work runs in one thread anyway (PIL, and
# tensors below ATen's parallel grain), and ours with more threads gains little on an idle CPU
# but collapses when other jobs hold the cores (OpenMP workers wait for each other): with 2 threads
# ours read 12-30x torchvision's on the project's idle 2-core EPYC and 5-7x with one busy process
# beside it; with 1 thread and that process, 12-18x (README, Speed).
CPU_THREADS = 1


def our_augment() -> BatchAugment:
    """Our side's augmentation: batched, on the device, after the transfer."""
    return BatchAugment(crop_padding=CROP_PADDING, flip=FLIP)


def torchvision_transform(mean: tuple[float, ...], std: tuple[float, ...]) -> Callable[[Any], Tensor]:
    """The reference's per-image transform: the same crop, flip and normalisation."""
    from torchvision import transforms

    return transforms.Compose(
        [
            transforms.RandomCrop(32, padding=CROP_PADDING),
            transforms.RandomHorizontalFlip(0.5 if FLIP else 0.0),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )


def policies() -> dict[str, dict[str, Any]]:
    """The configurations ``bench_policies`` measures: name -> ``ImageDataModule`` keyword
    arguments (the tricks' settings: conf/tricks/{autoaugment,randaugment,trivialaugment,cutout}.yaml)."""
    return {
        "none": {},
        "autoaugment": {"policy": AutoAugment("cifar10")},
        "randaugment": {"policy": RandAugment(num_ops=2, magnitude=9)},
        "trivialaugment": {"policy": TrivialAugmentWide()},
        "cutout": {"cutout": Cutout(size=16)},
    }


@contextmanager
def torch_threads(device: torch.device, threads: int = CPU_THREADS) -> Iterator[int]:
    """``threads`` torch threads inside the block on a CPU (restored after it); the count in use."""
    before = torch.get_num_threads()
    if device.type != "cpu":
        yield before
        return
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)


class PILImages(Dataset):
    """The torchvision way: a list of PIL images, a per-image transform, a default collate.

    The images are converted to PIL once, up front (torchvision's CIFAR10 converts from a numpy
    array in every ``__getitem__``; ImageFolder decodes a PNG), so the reference is, if anything,
    faster than its usual form.
    """

    def __init__(self, images: Tensor, labels: Tensor, transform: Callable[[Any], Tensor]) -> None:
        from PIL import Image

        self.images = [Image.fromarray(a) for a in images.permute(0, 2, 3, 1).numpy()]
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.transform(self.images[i]), self.labels[i]


def synthetic_data(device: torch.device, batch_size: int, num_images: int, **extra: Any) -> ImageDataModule:
    """Our ``ImageDataModule`` over ``num_images`` synthetic uint8 images with the study's crop +
    flip on the device (and ``extra``: a policy, Cutout)."""
    synthetic = Synthetic(num_train=num_images, num_val=batch_size, num_test=batch_size)
    return ImageDataModule(
        synthetic, 10, batch_size, augment=our_augment(), pin_memory=device.type == "cuda", **extra
    )


def our_pipeline(
    device: torch.device, batch_size: int, num_images: int, **extra: Any
) -> tuple[ImageDataModule, DataLoader, Callable[[Any], Any]]:
    """``synthetic_data``, its training loader, and its training step: the copy to ``device``,
    then ``on_after_batch_transfer`` (crop + flip, ``extra``, normalisation) as training runs it."""
    dm = synthetic_data(device, batch_size, num_images, **extra)
    dm.setup("fit")
    loader = dm.train_dataloader()
    # on_after_batch_transfer augments only while a trainer is training; no Trainer here.
    dm.trainer = SimpleNamespace(
        training=True, validating=False, testing=False, sanity_checking=False, predicting=False
    )

    def step(batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        x, y = (t.to(device, non_blocking=True) for t in batch)
        return dm.on_after_batch_transfer((x, y), 0)

    return dm, loader, step


def timed_loop(loader: DataLoader, step: Callable[[Any], Any]) -> Callable[[Clock], None]:
    """A configuration for ``interleave``: ``step`` over ``loader``'s batches, epoch after epoch,
    until the clock has its windows."""

    def run(clock: Clock) -> None:
        while True:
            for batch in loader:
                if not clock.step_starts():
                    return
                step(batch)

    return run


def _with_workers(loader: DataLoader, num_workers: int) -> DataLoader:
    # ImageDataModule always loads in the main process; the same dataset and sampler here.
    if not num_workers:
        return loader
    return DataLoader(
        loader.dataset,
        batch_size=None,
        sampler=loader.sampler,
        num_workers=num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
    )


def bench_data(
    device: torch.device, batch_size: int, num_workers: int, windows: Windows
) -> tuple[Record, Record]:
    """Time both pipelines in ``windows``: interleaved in the main process; one after the other
    with workers (which would prefetch while waiting their turn). On a CPU both run with
    :data:`CPU_THREADS` torch threads.

    Returns:
        (ours, torchvision); ours carries the ratio to torchvision.
    """
    dm, ours_loader, ours_step = our_pipeline(device, batch_size, batch_size * 64)
    train, pin = dm.splits.train, device.type == "cuda"
    reference_loader = DataLoader(
        PILImages(train.images, train.labels, torchvision_transform(dm.splits.mean, dm.splits.std)),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=num_workers,
        pin_memory=pin,
    )

    def reference_step(batch: tuple[Tensor, Tensor]) -> list[Tensor]:
        return [t.to(device, non_blocking=True) for t in batch]

    runs = {
        f"data/torchvision/workers{num_workers}": timed_loop(reference_loader, reference_step),
        f"data/ours/workers{num_workers}": timed_loop(_with_workers(ours_loader, num_workers), ours_step),
    }
    with torch_threads(device) as threads:
        reference, ours = against_the_first(
            runs,
            device,
            windows,
            batch_size,
            group=f"data/workers{num_workers}",
            interleaved=num_workers == 0,
            num_workers=num_workers,
            torch_threads=threads,
            augment=f"crop (pad {CROP_PADDING}) + flip {FLIP} + normalise",
        )
    return ours, reference


def bench_policies(device: torch.device, batch_size: int, windows: Windows) -> list[Record]:
    """Images/s of the training data pipeline with each policy, and without (the reference).

    Args:
        device: where the batches go and are augmented (``cuda``: the training device).
        batch_size: images per batch (256: the study's).
        windows: timing plan (``pyramid_lab.bench.interleave.Windows``).

    Returns:
        One ``Record`` per configuration, named ``data/policy/<name>``, the reference first; the
        others carry ``ratio`` (< 1: slower than the pipeline without the policy) paired window by
        window with the reference.
    """
    runs = {}
    for name, extra in policies().items():  # the reference, none, first
        _, loader, step = our_pipeline(device, batch_size, batch_size * 16, **extra)
        runs[f"data/policy/{name}"] = timed_loop(loader, step)
    records = against_the_first(runs, device, windows, batch_size, group="data/policy", crop_flip=True)
    for record in records:
        record.details["policy"] = record.name.rsplit("/", 1)[-1]
    return records
