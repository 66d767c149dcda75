"""Random images of any size, for benchmarks: the speed of the pipeline without a disk."""

from __future__ import annotations

import math

import torch

from pyramid_lab.data.splits import ArraySplit, Splits
from pyramid_lab.errors import ConfigError

# Uniform 0..255 pixels, in [0, 1] units: mean 127.5 / 255, std sqrt((256^2 - 1) / 12) / 255.
_MEAN = 0.5
_STD = math.sqrt((256**2 - 1) / 12) / 255


class Synthetic:
    """Uniformly random uint8 images and labels; nothing to learn, everything to time.

    Args:
        num_train, num_val, num_test: images per split.
        num_classes: labels are uniform in ``[0, num_classes)``.
        seed: seed of the generator.
    """

    def __init__(
        self,
        num_train: int = 10_000,
        num_val: int = 1_000,
        num_test: int = 1_000,
        num_classes: int = 10,
        seed: int = 0,
    ) -> None:
        for name, value in (
            ("num_train", num_train),
            ("num_val", num_val),
            ("num_test", num_test),
            ("num_classes", num_classes),
        ):
            if value <= 0:
                raise ConfigError(f"data.dataset.{name}={value} must be a positive integer")
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.num_classes = num_classes
        self.seed = seed

    def prepare(self) -> None:
        """Nothing to do: the images are generated in ``load``."""

    def load(self) -> Splits:
        g = torch.Generator().manual_seed(self.seed)
        splits = {
            name: ArraySplit(
                torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8),
                torch.randint(0, self.num_classes, (n,), generator=g, dtype=torch.int64),
            )
            for name, n in self.sizes.items()
        }
        return Splits(
            splits["train"],
            splits["val"],
            splits["test"],
            [f"class_{i}" for i in range(self.num_classes)],
            (_MEAN,) * 3,
            (_STD,) * 3,
        )
