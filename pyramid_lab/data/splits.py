"""The in-memory form every data source returns: uint8 image arrays and their labels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from pyramid_lab.errors import ConfigError

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class ArraySplit:
    """One split as two aligned tensors.

    Args:
        images: uint8 ``[N, 3, H, W]`` (32x32 for every data set here), pixel values 0..255.
        labels: int64 ``[N]``, class indices into ``Splits.classes``.
    """

    images: Tensor
    labels: Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(
                f"images must be uint8 [N, 3, H, W], got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(
                f"labels must be int64 [{len(self.images)}], got {self.labels.dtype} "
                f"{tuple(self.labels.shape)}"
            )

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Splits:
    """A data set's train, validation and test splits, its class names and its pixel statistics.

    Args:
        mean, std: per-channel statistics in [0, 1] pixel units (after dividing by 255), used to
            normalise every batch.
    """

    train: ArraySplit
    val: ArraySplit
    test: ArraySplit
    classes: list[str]
    mean: RGB
    std: RGB


class DataSource(Protocol):
    """What ``ImageDataModule`` needs from a data set: ``prepare`` (download, decode and cache;
    run once per node, idempotent) and ``load`` (return the arrays; run on every process)."""

    def prepare(self) -> None: ...

    def load(self) -> Splits: ...


def channel_stats(images: Tensor) -> tuple[RGB, RGB]:
    """Per-channel mean and std of uint8 ``[N, 3, H, W]`` images, in [0, 1] pixel units."""
    x = images.to(torch.float64).div_(255)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3), unbiased=False)
    return tuple(mean.tolist()), tuple(std.tolist())  # type: ignore[return-value]


def stratified_split(labels: np.ndarray, size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(rest, held_out)`` of a seeded split that keeps the class proportions.

    Args:
        labels: int ``[N]``.
        size: the held-out part, a count (int) or a fraction of N (float).
    """
    from sklearn.model_selection import train_test_split  # scikit-learn is slow to import

    rest, held_out = train_test_split(
        np.arange(len(labels)), test_size=size, stratify=labels, random_state=seed
    )
    return np.sort(rest), np.sort(held_out)


def check_fraction(setting: str, value: float) -> float:
    """``value`` as a float in (0, 1), or a ``ConfigError`` naming ``setting``."""
    if not 0.0 < float(value) < 1.0:
        raise ConfigError(f"{setting}={value!r} must be a fraction in (0, 1)")
    return float(value)
