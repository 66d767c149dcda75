"""scikit-learn's 8x8 handwritten digits as a 3x32x32 data set: real images, no network."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from pyramid_lab.data.splits import (
    ArraySplit,
    Splits,
    channel_stats,
    check_fraction,
    stratified_split,
)
from pyramid_lab.errors import ConfigError


class Digits:
    """The 1,797 digits of ``sklearn.datasets.load_digits`` (UCI optdigits test set), up-sampled.

    Pixels 0..16 are scaled to 0..255, up-sampled 8x8 -> 32x32 (bilinear, no antialias: the
    images only get bigger) and repeated to 3 channels, so every model built for CIFAR-sized
    inputs runs on them unchanged. The split is stratified and seeded; mean/std come from the
    train split.

    Args:
        seed: seed of the train/val/test split.
        val_fraction: part of all images held out for validation, in (0, 1).
        test_fraction: part of all images held out for testing, in (0, 1).
    """

    classes: ClassVar[tuple[str, ...]] = tuple(str(d) for d in range(10))

    def __init__(self, seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15) -> None:
        self.seed = seed
        self.val_fraction = check_fraction("data.dataset.val_fraction", val_fraction)
        self.test_fraction = check_fraction("data.dataset.test_fraction", test_fraction)
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ConfigError(
                f"data.dataset.val_fraction={val_fraction} + data.dataset.test_fraction="
                f"{test_fraction} must be below 1 to leave training images"
            )

    def prepare(self) -> None:
        """Nothing to do: scikit-learn ships the images."""

    def split_indices(self) -> dict[str, np.ndarray]:
        """Sorted indices into ``load_digits()`` of the ``train``, ``val`` and ``test`` splits."""
        from sklearn.datasets import load_digits

        target = load_digits().target
        rest, test = stratified_split(target, self.test_fraction, self.seed)
        # val_fraction is of all images, so rescale it to the part left after the test split.
        val_of_rest = self.val_fraction / (1.0 - self.test_fraction)
        train, val = (rest[i] for i in stratified_split(target[rest], val_of_rest, self.seed))
        return {"train": train, "val": val, "test": test}

    def load(self) -> Splits:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.from_numpy(digits.images.astype(np.float32) * (255.0 / 16.0))[:, None]
        images = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False, antialias=False)
        images = images.round_().clamp_(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
        labels = torch.from_numpy(digits.target.astype(np.int64))
        splits = {
            name: ArraySplit(images[torch.from_numpy(idx)], labels[torch.from_numpy(idx)])
            for name, idx in self.split_indices().items()
        }
        mean, std = channel_stats(splits["train"].images)
        return Splits(splits["train"], splits["val"], splits["test"], list(self.classes), mean, std)
