"""Batched augmentation on the training device, with independent randomness per sample.

It runs on float batches in [0, 1] after the host-to-device copy, so the loader only slices uint8
arrays; no PIL and no per-sample Python (airbench's approach: Keller Jordan's airbench94.py).
Nothing here reads a
value back to the host, so a CUDA batch never synchronises.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from pyramid_lab.errors import ConfigError


def random_crop(
    x: Tensor, padding: int, generator: torch.Generator | None = None, flip: bool = False, vflip: bool = False
) -> Tensor:
    """Zero-pad by ``padding`` and crop back to the input size at a random offset per sample,
    optionally mirroring each sample left-right (``flip``) and/or top-bottom (``vflip``), each
    with probability 0.5, in the same pass.

    The same distribution as torchvision's ``RandomCrop(size, padding=padding)`` (and
    ``RandomHorizontalFlip`` / ``RandomVerticalFlip``): each offset uniform in ``0..2*padding``,
    independently per sample and per axis. Works for any dtype (uint8 batches are cropped before
    their conversion to float: a quarter of the memory traffic).

    How: every output row is ``w`` consecutive values of one padded row, so the batch is one
    ``index_select`` of whole rows from the overlapping ``unfold`` windows of the flattened padded
    batch (a copy of ``w`` values per row, where a per-pixel ``gather`` computed an index per
    value: ~3x slower on one CPU core, ~1.5x with flips). A mirrored sample reads the same window
    from a left-right mirrored copy of the padded batch, a vertically flipped one its rows in
    reverse order.

    Args:
        x: ``[B, C, H, W]``.
    """
    if padding == 0 and not flip and not vflip:
        return x
    b, c, h, w = x.shape
    hp, wp = h + 2 * padding, w + 2 * padding
    # The padded batch, and after it its left-right mirror image when flipping: [copies, B, C, Hp, Wp].
    padded = x.new_zeros((1 + flip, b, c, hp, wp))
    padded[0, :, :, padding : padding + h, padding : padding + w] = x
    if flip:
        padded[1, :, :, padding : padding + h, padding : padding + w] = x.flip(-1)
    offsets = torch.randint(0, 2 * padding + 1, (2, b), device=x.device, generator=generator)
    row_offset, col_offset = offsets[0, :, None, None], offsets[1, :, None, None]  # [B, 1, 1]
    rows = torch.arange(h, device=x.device).expand(b, 1, h)  # [B, 1, H]
    if flip:
        mirrored = torch.rand(b, device=x.device, generator=generator) < 0.5
    if vflip:
        upside_down = torch.rand(b, device=x.device, generator=generator) < 0.5
        rows = torch.where(upside_down[:, None, None], rows.flip(-1), rows)
    planes = torch.arange(b * c, device=x.device).view(b, c, 1)  # [B, C, 1]: (sample, channel)
    starts = ((planes * hp + row_offset + rows) * wp + col_offset).view(-1)  # flat start of each row
    if flip:
        # Column j of the mirrored crop at offset o is column wp - w - o + j of the mirrored row.
        mirrored_starts = (starts.view(b, c, h) + padded[0].numel() + wp - w - 2 * col_offset).view(-1)
        starts = torch.where(mirrored[:, None].expand(b, c * h).reshape(-1), mirrored_starts, starts)
    windows = padded.reshape(-1).unfold(0, w, 1)  # [numel - w + 1, w], a view: row k = flat[k : k + w]
    return windows.index_select(0, starts).view(b, c, h, w)


def random_affine(
    x: Tensor, scale: tuple[float, float] | None, degrees: float, generator: torch.Generator | None = None
) -> Tensor:
    """Zoom by a factor uniform in ``scale`` and rotate by an angle uniform in ``[-degrees,
    degrees]``, per sample, about the centre; one ``grid_sample`` for the batch, zeros outside.

    Args:
        x: ``[B, C, H, W]`` float.
        scale: ``(min, max)`` magnification (>1 zooms in), or ``None`` for none.
    """
    b = x.shape[0]
    u = torch.rand(2, b, device=x.device, dtype=x.dtype, generator=generator)
    angle = (2 * u[0] - 1) * math.radians(degrees)
    zoom = 1.0 if scale is None else scale[0] + (scale[1] - scale[0]) * u[1]
    # affine_grid maps output to input coordinates, so the inverse zoom magnifies the image.
    cos, sin = angle.cos() / zoom, angle.sin() / zoom
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class BatchAugment:
    """The training augmentation of the study, applied to a whole batch on its device.

    ``__call__`` does the geometric part on images in [0, 1] or uint8 (scale/rotate, then crop,
    then flips); ``add_noise`` adds the Gaussian noise of Table 6 to images in [0, 1] pixel units,
    before normalisation, and clips to [0, 1] as torchvision's ``v2.GaussianNoise`` does.
    Neither touches the host's random state; pass ``generator`` for reproducible tests.

    Args:
        crop_padding: zero padding of the random crop in pixels (4 = the usual CIFAR recipe);
            0 turns cropping off.
        flip: random horizontal flips with p = 0.5.
        vflip: random vertical flips with p = 0.5 (the study lists both flips among its
            augmentations, docs/study.md).
        scale: ``[min, max]`` random magnification, e.g. ``[0.9, 1.1]``; ``None`` = off.
        rotate_degrees: random rotation in ``[-rotate_degrees, rotate_degrees]``; 0 = off.
        noise_std: std of the additive Gaussian noise in pixel units of [0, 1] images (0.1 is
            about 25 grey levels of 255); 0 = off.
        noise_at_eval: also add the noise to validation and test batches (the reading of the
            study's Table 6 in which its noise was part of the input at test time too).
    """

    def __init__(
        self,
        crop_padding: int = 4,
        flip: bool = True,
        vflip: bool = False,
        scale: Sequence[float] | None = None,
        rotate_degrees: float = 0.0,
        noise_std: float = 0.0,
        noise_at_eval: bool = False,
    ) -> None:
        if int(crop_padding) != crop_padding or crop_padding < 0:
            raise ConfigError(f"data.augment.crop_padding={crop_padding!r} must be an integer >= 0")
        if scale is not None:
            scale = tuple(float(s) for s in scale)
            if len(scale) != 2 or not 0 < scale[0] <= scale[1]:
                raise ConfigError(
                    f"data.augment.scale={list(scale)} must be [min, max] with 0 < min <= max, or null"
                )
        if not 0 <= rotate_degrees <= 180:
            raise ConfigError(f"data.augment.rotate_degrees={rotate_degrees} must be in [0, 180]")
        if noise_std < 0:
            raise ConfigError(
                f"data.augment.noise_std={noise_std} must be >= 0 (pixel units of "
                "[0, 1] images; 0 turns it off)"
            )
        self.crop_padding = int(crop_padding)
        self.flip = bool(flip)
        self.vflip = bool(vflip)
        self.scale: tuple[float, float] | None = scale  # type: ignore[assignment]
        self.rotate_degrees = float(rotate_degrees)
        self.noise_std = float(noise_std)
        self.noise_at_eval = bool(noise_at_eval)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Geometric augmentation of ``[B, C, H, W]`` images, uint8 or float in [0, 1]; same
        shape, and same dtype unless scaling/rotation is on (then float in [0, 1])."""
        if self.scale is not None or self.rotate_degrees > 0:
            if x.dtype == torch.uint8:
                x = x.to(torch.float32) / 255
            x = random_affine(x, self.scale, self.rotate_degrees, generator)
        return random_crop(x, self.crop_padding, generator, flip=self.flip, vflip=self.vflip)

    def add_noise(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``x`` (uint8, or float in [0, 1]) plus i.i.d. Gaussian noise of std ``noise_std``,
        clipped to [0, 1]: float32 in [0, 1]. Apply before normalising."""
        if self.noise_std == 0:
            return x
        if x.dtype == torch.uint8:
            x = x.to(torch.float32) / 255
        noise = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
        return (x + self.noise_std * noise).clamp_(0.0, 1.0)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(crop_padding={self.crop_padding}, flip={self.flip}, "
            f"vflip={self.vflip}, scale={self.scale}, rotate_degrees={self.rotate_degrees}, "
            f"noise_std={self.noise_std}, noise_at_eval={self.noise_at_eval})"
        )
