"""BatchAugment: per-sample crops and flips with torchvision's distribution, noise, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pyramid_lab.data import BatchAugment
from pyramid_lab.errors import ConfigError

PAD = 4


def coordinate_image() -> torch.Tensor:
    """[3, 32, 32]: channel 0 = row + 1, channel 1 = column + 1, so 0 marks padding."""
    rows = torch.arange(1, 33, dtype=torch.float32)[:, None].expand(32, 32)
    return torch.stack([rows, rows.T, torch.ones(32, 32)])


def crop_offsets(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Offsets (0..2*PAD) of crops of ``coordinate_image()``, read off the centre pixel."""
    centre = out[..., 16, 16]
    return centre[..., 0].long() - 17 + PAD, centre[..., 1].long() - 17 + PAD


def test_crop_matches_torchvision_random_crop_distribution():
    from scipy.stats import chi2_contingency
    from torchvision.transforms import RandomCrop

    n, n_tv = 20_000, 8_000  # torchvision crops one image per call: keep its loop short
    image = coordinate_image()
    ours = BatchAugment(crop_padding=PAD, flip=False)(
        image.expand(n, -1, -1, -1), generator=torch.Generator().manual_seed(0)
    )
    dy, dx = crop_offsets(ours)
    torch.manual_seed(0)
    crop = RandomCrop(32, padding=PAD)
    ty, tx = crop_offsets(torch.stack([crop(image) for _ in range(n_tv)]))

    bins = 2 * PAD + 1
    assert dy.min() >= 0 and dy.max() < bins and dx.min() >= 0 and dx.max() < bins
    # Each output is exactly the crop of the zero-padded image at its offsets.
    padded = F.pad(image, (PAD,) * 4)
    for i in range(0, n, 997):
        assert torch.equal(ours[i], padded[:, dy[i] : dy[i] + 32, dx[i] : dx[i] + 32])
    # The joint (dy, dx) histograms of the two are the same distribution.
    ours_hist = torch.bincount(dy * bins + dx, minlength=bins * bins)
    tv_hist = torch.bincount(ty * bins + tx, minlength=bins * bins)
    assert chi2_contingency(torch.stack([ours_hist, tv_hist]).numpy()).pvalue > 1e-3
    # And uniform: every one of the 81 offsets turns up about n / 81 times.
    assert ours_hist.min() > 0.7 * n / bins**2 and ours_hist.max() < 1.3 * n / bins**2


def test_crops_and_flips_are_per_sample():
    x = torch.rand(1, 3, 32, 32).expand(64, -1, -1, -1)
    out = BatchAugment(crop_padding=PAD, flip=True)(x, generator=torch.Generator().manual_seed(1))
    distinct = {tuple(o.flatten()[::7].tolist()) for o in out}
    assert len(distinct) > 32


def test_flip_rate_is_one_half_per_sample():
    n = 10_000
    image = coordinate_image()
    out = BatchAugment(crop_padding=0, flip=True)(
        image.expand(n, -1, -1, -1), generator=torch.Generator().manual_seed(2)
    )
    flipped = out[:, 1, 0, 0] == 32  # the first column now holds the last one
    assert torch.equal(out[flipped][0], image.flip(-1)) and torch.equal(out[~flipped][0], image)
    assert abs(flipped.float().mean().item() - 0.5) < 4 * (0.25 / n) ** 0.5


def test_padded_crops_with_both_flips_are_exact_windows_of_the_padded_image():
    # Crop, left-right and top-bottom flips together, uint8 (as training batches) and float: each
    # output is one window of the zero-padded image, mirrored as drawn; all four flip combinations occur.
    n, pad = 64, 2
    x = torch.arange(n * 3 * 6 * 7).view(n, 3, 6, 7) % 251 + 1  # no zeros: 0 marks padding
    for dtype in (torch.uint8, torch.float32):
        images = x.to(dtype)
        out = BatchAugment(crop_padding=pad, flip=True, vflip=True)(images, torch.Generator().manual_seed(7))
        padded = F.pad(images, (pad,) * 4)
        kinds = set()
        for o, p in zip(out, padded):
            matches = {
                (dy, dx, h, v)
                for dy in range(2 * pad + 1)
                for dx in range(2 * pad + 1)
                for h in (False, True)
                for v in (False, True)
                if torch.equal(o, p[:, dy : dy + 6, dx : dx + 7].flip([-1] * h + [-2] * v))
            }
            assert len(matches) == 1
            kinds.add(next(iter(matches))[2:])
        assert out.dtype == dtype and kinds == {(False, False), (False, True), (True, False), (True, True)}


def test_normalise_leaves_its_input_alone():
    from pyramid_lab.data.datamodule import normalisation, normalise

    x = torch.rand(4, 3, 8, 8)
    before = x.clone()
    out = normalise(x, *normalisation((0.5,) * 3, (0.25,) * 3, x.device, x.dtype))
    assert torch.equal(x, before) and torch.allclose(out, (before - 0.5) / 0.25, atol=1e-6)


def test_off_is_identity_and_generator_makes_it_reproducible():
    x = torch.rand(8, 3, 32, 32)
    assert torch.equal(BatchAugment(crop_padding=0, flip=False)(x), x)
    aug = BatchAugment(scale=[0.9, 1.1], rotate_degrees=15, noise_std=0.1)
    a = aug.add_noise(aug(x, torch.Generator().manual_seed(5)), torch.Generator().manual_seed(6))
    b = aug.add_noise(aug(x, torch.Generator().manual_seed(5)), torch.Generator().manual_seed(6))
    assert torch.equal(a, b)


def test_scale_and_rotation():
    x = torch.rand(16, 3, 32, 32)
    identity = BatchAugment(crop_padding=0, flip=False, scale=[1.0, 1.0])(x)
    torch.testing.assert_close(identity, x)
    shrunk = BatchAugment(crop_padding=0, flip=False, scale=[0.5, 0.5])(x)
    assert shrunk[..., :7, :].abs().max() == 0 and shrunk[..., 8:24, 8:24].abs().min() > 0
    rotated = BatchAugment(crop_padding=0, flip=False, rotate_degrees=30)(
        x[:1].expand(16, -1, -1, -1), generator=torch.Generator().manual_seed(3)
    )
    assert len({round(r.sum().item(), 3) for r in rotated}) > 8  # a different angle per sample
    assert rotated.shape == x.shape


def test_noise_has_the_requested_std_in_pixel_units_and_is_clipped():
    x = torch.full((64, 3, 32, 32), 0.5)
    noisy = BatchAugment(noise_std=0.1).add_noise(x, torch.Generator().manual_seed(4))
    assert abs(noisy.std().item() - 0.1) < 0.003 and abs(noisy.mean().item() - 0.5) < 0.003
    strong = BatchAugment(noise_std=0.5).add_noise(x, torch.Generator().manual_seed(4))
    assert strong.min() == 0 and strong.max() == 1  # clipped to [0, 1], as v2.GaussianNoise
    gray = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)  # uint8 in: float [0, 1] out
    assert BatchAugment(noise_std=0.1).add_noise(gray).dtype == torch.float32
    assert BatchAugment().add_noise(x) is x


def test_vertical_flip_mirrors_rows_per_sample():
    x = torch.arange(16 * 3 * 8 * 8, dtype=torch.float32).view(16, 3, 8, 8)
    out = BatchAugment(crop_padding=0, flip=False, vflip=True)(x, torch.Generator().manual_seed(0))
    flipped = [bool(torch.equal(o, i.flip(-2))) for o, i in zip(out, x)]
    kept = [bool(torch.equal(o, i)) for o, i in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept)) and 0 < sum(flipped) < 16


@pytest.mark.parametrize(
    "kwargs, setting",
    [
        ({"noise_std": -0.1}, "data.augment.noise_std"),
        ({"crop_padding": -1}, "data.augment.crop_padding"),
        ({"crop_padding": 1.5}, "data.augment.crop_padding"),
        ({"scale": [1.2, 0.8]}, "data.augment.scale"),
        ({"scale": [0.0, 1.0]}, "data.augment.scale"),
        ({"rotate_degrees": -5}, "data.augment.rotate_degrees"),
    ],
)
def test_bad_settings(kwargs, setting):
    with pytest.raises(ConfigError, match=setting) as info:
        BatchAugment(**kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_the_gpu_without_host_syncs():
    x = torch.rand(256, 3, 32, 32, device="cuda")
    aug = BatchAugment(crop_padding=4, flip=True, scale=[0.9, 1.1], rotate_degrees=10, noise_std=0.1)
    aug.add_noise(aug(x))  # warm-up (lazy CUDA initialisation may sync)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = aug.add_noise(aug(x))
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert out.device == x.device and out.shape == x.shape
