"""Cutout (DeVries & Taylor 2017): one square per image set to a fill value, on the whole batch.

As the paper's code (github.com/uoguelph-mlrg/Cutout, ``util/cutout.py``): the square's centre is
uniform over the pixels, the square is clipped at the image border (so near an edge less than
``size**2`` pixels go), every image gets one, and it is applied to the normalised image with 0, so
that the square takes the data set's mean colour. The paper's CIFAR-10 size is 16 pixels.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pyramid_lab.errors import ConfigError

__all__ = ["Cutout", "cutout"]


def cutout(x: Tensor, size: int, fill: float = 0.0, generator: torch.Generator | None = None) -> Tensor:
    """Set one ``size`` x ``size`` square per image (centre uniform, clipped at the border) to ``fill``.

    Args:
        x: ``[B, C, H, W]``, any dtype (normalised floats for the paper's mean fill).
        size: side of the square in pixels (even sizes as the paper: ``centre +- size // 2``).
        fill: the value of the square (0 on normalised images = the data set's mean).

    Returns:
        ``[B, C, H, W]``, a new tensor.
    """
    b, _, h, w = x.shape
    cy = torch.randint(0, h, (b, 1), device=x.device, generator=generator)
    cx = torch.randint(0, w, (b, 1), device=x.device, generator=generator)
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    half = size // 2
    inside_rows = (rows >= cy - half) & (rows < cy + half)  # [B, H]; the paper's clip is implicit
    inside_cols = (cols >= cx - half) & (cols < cx + half)  # [B, W]
    square = inside_rows[:, None, :, None] & inside_cols[:, None, None, :]
    return x.masked_fill(square, fill)


class Cutout:
    """Cutout of every training image, for ``ImageDataModule`` after normalisation.

    Args:
        size: side of the square in pixels (the paper: 16 on CIFAR-10); 0 turns it off.
        fill: value of the square in normalised units (0 = the data set's mean colour).
    """

    def __init__(self, size: int = 16, fill: float = 0.0) -> None:
        if int(size) != size or size < 0:
            raise ConfigError(
                f"data.cutout.size={size!r} must be an integer >= 0 (pixels; the "
                "paper's CIFAR-10 value is 16; 0 = off)"
            )
        self.size, self.fill = int(size), float(fill)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return cutout(x, self.size, self.fill, generator) if self.size else x

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, fill={self.fill})"
