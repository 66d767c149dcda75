"""Data pipeline throughput: our uint8 index batches + on-device ``BatchAugment`` against
torchvision's per-image PIL transforms, both with random crop (pad 4), flip and normalisation.

Like for like: the same images, batch size, augmentations (:data:`CROP_PADDING`, :data:`FLIP`,
built for both sides by :func:`our_augment` and :func:`torchvision_transform`), normalisation,
number of DataLoader workers, and on a CPU the same number of torch threads (:data:`CPU_THREADS`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from pyramid_lab.bench.interleave import Clock, Windows, compare, interleave, to_record
from pyramid_lab.bench.timing import Record
from pyramid_lab.data import BatchAugment, ImageDataModule, Synthetic

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


def _forever(loader: DataLoader) -> Iterator[Any]:
    while True:
        yield from loader


def _loop(loader: DataLoader, step: Callable[[Any], Any]) -> Callable[[Clock], None]:
    def run(clock: Clock) -> None:
        for batch in _forever(loader):
            if not clock.step_starts():
                return
            step(batch)

    return run


def _data_module(batch_size: int, num_images: int, device: torch.device) -> ImageDataModule:
    dm = ImageDataModule(
        Synthetic(num_train=num_images, num_val=batch_size, num_test=batch_size),
        num_classes=10,
        batch_size=batch_size,
        augment=our_augment(),
        pin_memory=device.type == "cuda",
    )
    dm.setup("fit")
    return dm


def bench_data(
    device: torch.device, batch_size: int, num_workers: int, windows: Windows
) -> tuple[Record, Record]:
    """Time both pipelines, the host-to-device copy included, in ``windows``: interleaved in the
    main process; one after the other with workers (which would prefetch while waiting their turn).
    On a CPU both run with :data:`CPU_THREADS` torch threads.

    Returns:
        (ours, torchvision); ours carries the ratio to torchvision.
    """
    dm = _data_module(batch_size, batch_size * 64, device)
    pin = device.type == "cuda"
    ours_loader = dm.train_dataloader()
    if num_workers:
        # ImageDataModule always loads in the main process; the same dataset and sampler here.
        ours_loader = DataLoader(
            ours_loader.dataset,
            batch_size=None,
            sampler=ours_loader.sampler,
            num_workers=num_workers,
            collate_fn=ours_loader.collate_fn,
            pin_memory=pin,
        )
    # on_after_batch_transfer augments only while a trainer is training; no Trainer here.
    dm.trainer = SimpleNamespace(
        training=True, validating=False, testing=False, sanity_checking=False, predicting=False
    )

    def ours_step(batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        x, y = (t.to(device, non_blocking=True) for t in batch)
        return dm.on_after_batch_transfer((x, y), 0)

    def reference_step(batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        return tuple(t.to(device, non_blocking=True) for t in batch)  # type: ignore[return-value]

    splits = dm.splits
    reference_loader = DataLoader(
        PILImages(splits.train.images, splits.train.labels, torchvision_transform(splits.mean, splits.std)),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=num_workers,
        pin_memory=pin,
    )
    names = {
        "torchvision": f"data/torchvision/workers{num_workers}",
        "ours": f"data/ours/workers{num_workers}",
    }
    interleaved = num_workers == 0
    with torch_threads(device) as threads:
        results = interleave(
            {
                names["torchvision"]: _loop(reference_loader, reference_step),
                names["ours"]: _loop(ours_loader, ours_step),
            },
            device,
            windows,
            interleaved=interleaved,
        )
    reference, ours = (
        to_record(
            name,
            device,
            results[name],
            batch_size,
            group=f"data/workers{num_workers}",
            interleaved=interleaved,
            num_workers=num_workers,
            torch_threads=threads,
            augment=f"crop (pad {CROP_PADDING}) + flip {FLIP} + normalise",
        )
        for name in names.values()
    )
    return compare(ours, reference), reference
