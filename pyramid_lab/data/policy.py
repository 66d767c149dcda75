"""Policy augmentation (AutoAugment, RandAugment, TrivialAugmentWide) for whole batches on the device,
each image with its own draw.

torchvision's transforms draw one operation, magnitude and sign per call, so a batch passed to them
gets the same draw for every image; the papers (Cubuk et al. 2019 AutoAugment, Cubuk et al. 2020
RandAugment, Mueller & Hutter 2021 TrivialAugment) draw per image. Here every draw is a per-image
tensor and every operation is vectorised over the images that drew it:

- the geometric ops (shear, translate, rotate) are one ``grid_sample`` over the batch with a
  per-image inverse affine matrix built the way ``torchvision.transforms.v2.functional.affine``
  builds it (nearest interpolation, zero fill: torchvision's defaults);
- the colour ops (brightness, colour, contrast, sharpness) blend with per-image factors;
- posterize and solarize take per-image bit masks and thresholds; autocontrast, equalize and
  invert are torchvision's own kernels, which already work per image on a batch.

The op set, the magnitude bins and the policies are read from torchvision's v2 classes (so they are
torchvision's by construction), and each op gives torchvision's output bit for bit on the same image
with the same magnitude (tests/test_policy_augment.py). On the CPU the images of a batch are grouped
by op (each op computed on its images only); on an accelerator every op is computed for the whole
batch and selected per image with ``torch.where``, which costs a little arithmetic on 32x32 images
but never reads a value back to the host (no synchronisation, like pyramid_lab.data.augment).

Input: ``[B, C, H, W]`` uint8 (0..255) or float in [0, 1] (C = 3, or 1); output: the same shape and
dtype. Apply before normalisation (solarize, posterize and equalize are defined on pixel values).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF
from torch import Tensor

from pyramid_lab.errors import ConfigError

__all__ = [
    "OPS",
    "AutoAugment",
    "PolicyAugment",
    "RandAugment",
    "TrivialAugmentWide",
    "apply_ops",
]

# Every op any of the three policies uses, in torchvision's order; an op is its index here.
OPS = (
    "Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color",
    "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize", "Invert",
)  # fmt: skip
_INDEX = {name: i for i, name in enumerate(OPS)}
_GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
_DEG_TO_RAD = math.pi / 180.0  # CPython's math.radians/math.degrees multiply by these constants
_RAD_TO_DEG = 180.0 / math.pi


def _max_value(dtype: torch.dtype) -> float:
    return 255.0 if dtype == torch.uint8 else 1.0


def _inverse_affine(op: Tensor, magnitude: Tensor, height: int, width: int) -> Tensor:
    """Per-image ``[N, 2, 3]`` float32 inverse affine matrices, as torchvision's
    ``_get_inverse_affine_matrix`` computes them (in float64) for each geometric op; identity for
    the other ops. ``magnitude`` is float64 (the value torchvision passes to the op)."""
    zero = torch.zeros_like(magnitude)
    is_op = {name: op == _INDEX[name] for name in _GEOMETRIC}
    # ShearX/ShearY: shear = degrees(atan(m)) about the corner (center=[0, 0]) -> centre-relative.
    shear = torch.where(is_op["ShearX"] | is_op["ShearY"], magnitude.atan() * _RAD_TO_DEG, zero)
    sx = torch.where(is_op["ShearX"], shear, zero) * _DEG_TO_RAD
    sy = torch.where(is_op["ShearY"], shear, zero) * _DEG_TO_RAD
    corner = is_op["ShearX"] | is_op["ShearY"]
    cx = torch.where(corner, zero - width * 0.5, zero)
    cy = torch.where(corner, zero - height * 0.5, zero)
    # Translate: int(magnitude) pixels; Rotate: F.rotate's angle % 360, then the matrix of -angle.
    tx = torch.where(is_op["TranslateX"], magnitude.trunc(), zero)
    ty = torch.where(is_op["TranslateY"], magnitude.trunc(), zero)
    rot = torch.where(is_op["Rotate"], -torch.remainder(magnitude, 360.0), zero) * _DEG_TO_RAD
    cos_sy, tan_sx = sy.cos(), sx.tan()
    a = (rot - sy).cos() / cos_sy
    b = -(a * tan_sx + rot.sin())
    c = (rot - sy).sin() / cos_sy
    d = rot.cos() - c * tan_sx
    m0, m1, m3, m4 = d, -b, -c, a  # scale 1
    cx_tx, cy_ty = cx + tx, cy + ty
    m2 = zero + (cx - m0 * cx_tx - m1 * cy_ty)
    m5 = zero + (cy - m3 * cx_tx - m4 * cy_ty)
    return torch.stack([m0, m1, m2, m3, m4, m5], 1).view(-1, 2, 3).to(torch.float32)


def _warp(x: Tensor, theta: Tensor) -> Tensor:
    """Nearest-neighbour warp with zero fill by per-image inverse matrices ``theta`` [N, 2, 3] in
    centred pixel coordinates: torchvision's ``_affine_grid`` + ``_apply_grid_transform``, batched."""
    n, _, h, w = x.shape
    device = x.device
    base = torch.empty(1, h, w, 3, dtype=torch.float32, device=device)
    base[..., 0].copy_(torch.linspace((1.0 - w) * 0.5, (w - 1.0) * 0.5, steps=w, device=device))
    base[..., 1].copy_(torch.linspace((1.0 - h) * 0.5, (h - 1.0) * 0.5, steps=h, device=device)[:, None])
    base[..., 2].fill_(1)
    scale = torch.tensor([0.5 * w, 0.5 * h], dtype=torch.float32, device=device)
    rescaled = theta.transpose(1, 2).div(scale)  # [N, 3, 2]
    grid = base.view(1, h * w, 3).expand(n, -1, -1).bmm(rescaled).view(n, h, w, 2)
    fp = x.is_floating_point()
    out = F.grid_sample(
        x if fp else x.to(torch.float32), grid, mode="nearest", padding_mode="zeros", align_corners=False
    )
    return out if fp else out.round_().to(x.dtype)


def _per_image(values: Tensor) -> Tensor:
    return values.view(-1, 1, 1, 1)


def _blend(image: Tensor, other: Tensor, ratio: Tensor) -> Tensor:
    """torchvision's ``_blend`` (``image * r + other * (1 - r)``, clamped) with one ratio per image;
    ``ratio`` float64 [N] (the factor torchvision receives as a Python float)."""
    bound = _max_value(image.dtype)
    r = _per_image(ratio)
    out = torch.addcmul(image.mul(r.to(torch.float32)), other, (1.0 - r).to(torch.float32))
    out = out.clamp_(0, bound)
    return out if image.is_floating_point() else out.to(image.dtype)


def _grayscale(image: Tensor) -> Tensor:
    r, g, b = image.unbind(dim=-3)
    gray = r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).unsqueeze(-3)
    return gray if image.is_floating_point() else gray.floor_()


def _brightness(x: Tensor, m: Tensor) -> Tensor:
    out = x.mul(_per_image(1.0 + m).to(torch.float32)).clamp_(0, _max_value(x.dtype))
    return out if x.is_floating_point() else out.to(x.dtype)


def _color(x: Tensor, m: Tensor) -> Tensor:
    if x.shape[-3] == 1:  # as torchvision (and PIL): saturation does nothing to grey images
        return x
    return _blend(x, _grayscale(x), 1.0 + m)


def _contrast(x: Tensor, m: Tensor) -> Tensor:
    if x.shape[-3] == 3:
        gray = _grayscale(x)
    else:
        gray = x if x.is_floating_point() else x.to(torch.float32)
    return _blend(x, gray.mean(dim=(-3, -2, -1), keepdim=True), 1.0 + m)


def _sharpness(x: Tensor, m: Tensor) -> Tensor:
    _, c, h, w = x.shape
    if h <= 2 or w <= 2:
        return x
    fp = x.is_floating_point()
    dtype = x.dtype if fp else torch.float32
    a, b = 1.0 / 13.0, 5.0 / 13.0  # torchvision's (and PIL's) smoothing kernel
    kernel = torch.tensor([[a, a, a], [a, b, a], [a, a, a]], dtype=dtype, device=x.device)
    out = x.to(dtype=dtype, copy=True)
    blurred = F.conv2d(out, kernel.expand(c, 1, 3, 3), groups=c)
    if not fp:
        blurred = blurred.round_()
    inner = out[..., 1:-1, 1:-1]  # the border keeps its pixels, as in torchvision
    alpha = _per_image(1.0 - (1.0 + m)).to(dtype)
    inner.copy_(torch.addcmul(inner, blurred.sub_(inner), alpha))
    out = out.clamp_(0, _max_value(x.dtype))
    return out if fp else out.to(x.dtype)


def _posterize(x: Tensor, m: Tensor) -> Tensor:
    bits = m.trunc().to(torch.int64)
    if x.is_floating_point():
        levels = _per_image(torch.ones_like(bits).bitwise_left_shift(bits)).to(x.dtype)
        return x.mul(levels).floor_().clamp_(torch.zeros_like(levels), levels - 1).mul_(1.0 / levels)
    keep = bits.clamp(0, 8)
    mask = ((torch.ones_like(keep) << keep) - 1) << (8 - keep)
    return x & _per_image(mask).to(torch.uint8)


def _solarize(x: Tensor, m: Tensor) -> Tensor:
    # torchvision v2: threshold = bound * magnitude, compared in float32 (result_type(uint8, float)).
    threshold = _per_image(_max_value(x.dtype) * m).to(torch.float32)
    return torch.where(x >= threshold, TF.invert(x), x)


def _no_magnitude(op: Callable[[Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
    return lambda x, m: op(x)


# torchvision's own batched kernels: they already act per image (per-image min/max, histograms).
_COLOUR_OPS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "Brightness": _brightness,
    "Color": _color,
    "Contrast": _contrast,
    "Sharpness": _sharpness,
    "Posterize": _posterize,
    "Solarize": _solarize,
    "AutoContrast": _no_magnitude(TF.autocontrast),
    "Equalize": _no_magnitude(TF.equalize),
    "Invert": _no_magnitude(TF.invert),
}


def apply_ops(x: Tensor, op: Tensor, magnitude: Tensor, grouped: bool | None = None) -> Tensor:
    """Apply one op per image: image ``i`` gets ``OPS[op[i]]`` with ``magnitude[i]``.

    The magnitude is the value torchvision's v2 auto-augment transforms pass to the op (the signed
    bin value): shear factor, translation in pixels (truncated to an int), rotation in degrees,
    ``factor - 1`` for brightness/colour/contrast/sharpness, bits for posterize, the threshold as a
    fraction of the maximum pixel value for solarize; ignored by the other ops.

    Args:
        x: ``[B, C, H, W]`` uint8 or float in [0, 1].
        op: int64 ``[B]``, indices into :data:`OPS`.
        magnitude: ``[B]`` (float64 keeps torchvision's Python-float arithmetic exact).
        grouped: compute each op on its own images only (index by op: reads the op counts back
            to the host), or on the whole batch and select (``torch.where``: no synchronisation).
            ``None``: grouped on the CPU only. Both give the same output.

    Returns:
        ``[B, C, H, W]``, same dtype as ``x``.
    """
    if op.shape != x.shape[:1] or magnitude.shape != x.shape[:1]:
        raise ValueError(
            f"op {tuple(op.shape)} and magnitude {tuple(magnitude.shape)} must be [B] "
            f"for a batch of {x.shape[0]} images"
        )
    magnitude = magnitude.to(torch.float64)
    if grouped is None:
        grouped = x.device.type == "cpu"  # host-side grouping is free on the CPU, a sync elsewhere
    out = x
    geometric = torch.zeros_like(op, dtype=torch.bool)
    for name in _GEOMETRIC:
        geometric |= op == _INDEX[name]
    steps: list[tuple[Tensor, Callable[[Tensor, Tensor], Tensor]]] = [
        (geometric, lambda xs, ms, ops: _warp(xs, _inverse_affine(ops, ms, x.shape[-2], x.shape[-1])))
    ]
    for name, fn in _COLOUR_OPS.items():
        steps.append((op == _INDEX[name], lambda xs, ms, ops, fn=fn: fn(xs, ms)))
    for mask, fn in steps:
        if grouped:
            index = mask.nonzero().squeeze(1)
            if index.numel() == 0:
                continue
            result = fn(x.index_select(0, index), magnitude[index], op[index])
            out = out.index_copy(0, index, result)
        else:
            out = torch.where(_per_image(mask), fn(x, magnitude, op), out)
    return out


class PolicyAugment:
    """Shared part of the three policies: the op set and magnitude bins of a torchvision v2
    auto-augment class, and the per-image draws. Subclasses implement :meth:`draw`.

    Args:
        transform: the torchvision v2 class whose ``_AUGMENTATION_SPACE`` gives the ops and bins.
        num_bins: magnitude bins.
    """

    def __init__(self, transform: type, num_bins: int) -> None:
        self._space = transform._AUGMENTATION_SPACE
        self.num_bins = num_bins
        self._tables: dict[tuple[torch.device, int, int], tuple[Tensor, Tensor]] = {}
        # The ops this policy draws from (RandAugment, TrivialAugmentWide: uniformly).
        self.ops = torch.tensor([_INDEX[name] for name in self._space])

    def magnitudes(self, height: int, width: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """``(values [len(OPS), num_bins] float64, signed [len(OPS)] bool)``: torchvision's bins
        (float32 values, exactly as float64), 0 for ops without a magnitude."""
        key = (device, height, width)
        if key not in self._tables:
            values = torch.zeros(len(OPS), self.num_bins, dtype=torch.float64)
            signed = torch.zeros(len(OPS), dtype=torch.bool)
            for name, (bins_fn, is_signed) in self._space.items():
                bins = bins_fn(self.num_bins, height, width)
                if bins is not None:
                    values[_INDEX[name]] = bins.to(torch.float64)
                signed[_INDEX[name]] = is_signed
            self._tables[key] = (values.to(device), signed.to(device))
        return self._tables[key]

    def draw(
        self, batch: int, height: int, width: int, device: torch.device, generator: torch.Generator | None
    ) -> list[tuple[Tensor, Tensor]]:
        """Per-image ``(op [B], magnitude [B])`` for each op applied in sequence."""
        raise NotImplementedError

    def _signed(
        self, op: Tensor, values: Tensor, signed: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        # torchvision v2: a signed magnitude is negated when rand() <= 0.5.
        flip = torch.rand(op.shape, device=op.device, generator=generator) <= 0.5
        return torch.where(signed[op] & flip, -values, values)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment ``[B, C, H, W]`` (uint8 or float in [0, 1]) with a fresh draw per image."""
        for op, magnitude in self.draw(x.shape[0], x.shape[-2], x.shape[-1], x.device, generator):
            x = apply_ops(x, op, magnitude)
        return x


class AutoAugment(PolicyAugment):
    """AutoAugment (Cubuk et al. 2019) with a learned policy: per image, one of the policy's 25
    sub-policies, whose two ops each apply with their own probability at their own magnitude bin
    (10 bins), with a random sign. As ``torchvision.transforms.v2.AutoAugment``, per image.

    Args:
        policy: ``cifar10`` (the paper's CIFAR-10 policy), ``svhn`` or ``imagenet``.
    """

    def __init__(self, policy: str = "cifar10") -> None:
        names = {p.value: p for p in T.AutoAugmentPolicy}
        if policy not in names:
            raise ConfigError(
                f"data.policy.policy={policy!r} is not an AutoAugment policy; valid: {sorted(names)}"
            )
        super().__init__(T.AutoAugment, num_bins=10)
        self.policy = policy
        subs = T.AutoAugment(names[policy])._policies
        self._sub_op = torch.tensor([[_INDEX[name] for name, _, _ in sub] for sub in subs])
        self._sub_p = torch.tensor([[p for _, p, _ in sub] for sub in subs], dtype=torch.float32)
        self._sub_bin = torch.tensor([[b or 0 for _, _, b in sub] for sub in subs])

    def draw(
        self, batch: int, height: int, width: int, device: torch.device, generator: torch.Generator | None
    ) -> list[tuple[Tensor, Tensor]]:
        values, signed = self.magnitudes(height, width, device)
        sub = torch.randint(len(self._sub_op), (batch,), device=device, generator=generator)
        sub_op, sub_p, sub_bin = (t.to(device)[sub] for t in (self._sub_op, self._sub_p, self._sub_bin))
        stages = []
        for i in range(sub_op.shape[1]):
            applies = torch.rand(batch, device=device, generator=generator) <= sub_p[:, i]
            op = torch.where(applies, sub_op[:, i], torch.zeros_like(sub_op[:, i]))
            magnitude = self._signed(op, values[op, sub_bin[:, i]], signed, generator)
            stages.append((op, magnitude))
        return stages

    def __repr__(self) -> str:
        return f"{type(self).__name__}(policy={self.policy!r})"


class RandAugment(PolicyAugment):
    """RandAugment (Cubuk et al. 2020): per image, ``num_ops`` ops drawn uniformly from 14
    (Identity included), all at magnitude bin ``magnitude`` of ``num_magnitude_bins``, each with a
    random sign. As ``torchvision.transforms.v2.RandAugment`` (defaults N=2, M=9 of 31), per image.

    Args:
        num_ops: N, ops applied in sequence.
        magnitude: M, the bin index in ``[0, num_magnitude_bins)``.
        num_magnitude_bins: bins spanning each op's range.
    """

    def __init__(self, num_ops: int = 2, magnitude: int = 9, num_magnitude_bins: int = 31) -> None:
        if int(num_magnitude_bins) != num_magnitude_bins or num_magnitude_bins < 2:
            raise ConfigError(
                f"data.policy.num_magnitude_bins={num_magnitude_bins!r} must be an "
                "integer >= 2 (torchvision: 31)"
            )
        if int(num_ops) != num_ops or num_ops < 0:
            raise ConfigError(f"data.policy.num_ops={num_ops!r} must be an integer >= 0 (N; 2)")
        if int(magnitude) != magnitude or not 0 <= magnitude < num_magnitude_bins:
            raise ConfigError(
                f"data.policy.magnitude={magnitude!r} must be an integer bin in "
                f"[0, {num_magnitude_bins - 1}] (M; torchvision: 9)"
            )
        super().__init__(T.RandAugment, num_bins=int(num_magnitude_bins))
        self.num_ops, self.magnitude = int(num_ops), int(magnitude)

    def draw(
        self, batch: int, height: int, width: int, device: torch.device, generator: torch.Generator | None
    ) -> list[tuple[Tensor, Tensor]]:
        values, signed = self.magnitudes(height, width, device)
        ops = self.ops.to(device)
        stages = []
        for _ in range(self.num_ops):
            op = ops[torch.randint(len(ops), (batch,), device=device, generator=generator)]
            stages.append((op, self._signed(op, values[op, self.magnitude], signed, generator)))
        return stages

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_ops={self.num_ops}, magnitude={self.magnitude}, "
            f"num_magnitude_bins={self.num_bins})"
        )


class TrivialAugmentWide(PolicyAugment):
    """TrivialAugment Wide (Mueller & Hutter 2021): per image, one op drawn uniformly from 14
    (Identity included) at a magnitude bin drawn uniformly from ``num_magnitude_bins``, with a
    random sign. As ``torchvision.transforms.v2.TrivialAugmentWide``, per image.

    Args:
        num_magnitude_bins: bins spanning each op's (wide) range.
    """

    def __init__(self, num_magnitude_bins: int = 31) -> None:
        if int(num_magnitude_bins) != num_magnitude_bins or num_magnitude_bins < 2:
            raise ConfigError(
                f"data.policy.num_magnitude_bins={num_magnitude_bins!r} must be an "
                "integer >= 2 (torchvision: 31)"
            )
        super().__init__(T.TrivialAugmentWide, num_bins=int(num_magnitude_bins))

    def draw(
        self, batch: int, height: int, width: int, device: torch.device, generator: torch.Generator | None
    ) -> list[tuple[Tensor, Tensor]]:
        values, signed = self.magnitudes(height, width, device)
        ops = self.ops.to(device)
        op = ops[torch.randint(len(ops), (batch,), device=device, generator=generator)]
        bins = torch.randint(self.num_bins, (batch,), device=device, generator=generator)
        return [(op, self._signed(op, values[op, bins], signed, generator))]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_magnitude_bins={self.num_bins})"
