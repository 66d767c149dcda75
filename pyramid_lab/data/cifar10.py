"""CIFAR-10 through torchvision, with a seeded validation split taken from its 50,000 train images."""

from __future__ import annotations

import os
import urllib.error

import torch

from pyramid_lab.data.splits import ArraySplit, Splits, stratified_split
from pyramid_lab.errors import ConfigError


class CIFAR10:
    """CIFAR-10 (Krizhevsky 2009) as uint8 arrays: torchvision's ``.data`` (HWC) made NCHW once.

    Args:
        root: the folder that holds (or will hold) ``cifar-10-batches-py``.
        download: fetch the archive into ``root`` when it is missing.
        val_size: train images held out for validation (stratified, seeded); train keeps the rest.
        seed: seed of the validation split.
    """

    # Per-channel statistics of the 50,000 train images (the values commonly used for CIFAR-10).
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)

    def __init__(
        self, root: str | os.PathLike, download: bool = False, val_size: int = 5000, seed: int = 0
    ) -> None:
        if int(val_size) != val_size or val_size <= 0:
            raise ConfigError(f"data.dataset.val_size={val_size!r} must be a positive number of train images")
        self.root = os.path.expanduser(os.fspath(root))
        self.download = download
        self.val_size = int(val_size)
        self.seed = seed

    def prepare(self) -> None:
        self._torchvision(train=True)
        self._torchvision(train=False)

    def load(self) -> Splits:
        train_set, test_set = self._torchvision(train=True), self._torchvision(train=False)
        images, labels = _arrays(train_set)
        if self.val_size >= len(labels):
            raise ConfigError(
                f"data.dataset.val_size={self.val_size} must be below the {len(labels)} CIFAR-10 train images"
            )
        train, val = stratified_split(labels.numpy(), self.val_size, self.seed)
        train, val = torch.from_numpy(train), torch.from_numpy(val)
        test_images, test_labels = _arrays(test_set)
        return Splits(
            ArraySplit(images[train], labels[train]),
            ArraySplit(images[val], labels[val]),
            ArraySplit(test_images, test_labels),
            list(train_set.classes),
            self.mean,
            self.std,
        )

    def _torchvision(self, train: bool):
        from torchvision.datasets import CIFAR10 as TorchvisionCIFAR10

        try:
            return TorchvisionCIFAR10(self.root, train=train, download=self.download)
        except RuntimeError as e:  # torchvision: "Dataset not found or corrupted."
            raise ConfigError(
                f"data.dataset.root={self.root} holds no complete cifar-10-batches-py ({e}); set "
                "data.dataset.download=true to fetch it"
            ) from None
        except urllib.error.URLError as e:
            raise ConfigError(
                f"data.dataset.download=true could not fetch CIFAR-10 into "
                f"{self.root} ({e.reason}); download it by hand"
            ) from None


def _arrays(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
    return images, torch.as_tensor(dataset.targets, dtype=torch.int64)
