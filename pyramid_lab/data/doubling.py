"""The study's doubled train set (Table 6's augment row): the originals plus one augmented copy
of each image, drawn once per run.

"Doubling the train set" with augmentation (the study's methods section, docs/study.md) is an
offline enlargement: each image gains one fixed augmented twin, seen in every epoch, not a fresh
random view per epoch (``data.train_repeats``). The copy is made once, on the host, from the
uint8 arrays the data sources return, with a generator seeded by the run's seed: the same copy on
every rank, on resume and on a rerun with the same seed; another copy with another seed.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from pyramid_lab.data.augment import BatchAugment

# Images augmented per call: bounds the float32 working set of a rotation (4,096 CINIC-10 images
# are 50 MB as floats). Part of what fixes the copy: the draws are taken chunk by chunk.
CHUNK = 4096
# The copy's generator is its own stream of the run's seed, apart from the shuffles (seed + epoch).
_STREAM = 0xD0B1E


def copy_generator(seed: int) -> torch.Generator:
    """The host generator that draws a run's augmented copy, from the run's ``seed``."""
    state = np.random.SeedSequence([seed, _STREAM]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def augmented_copy(images: Tensor, augment: BatchAugment, generator: torch.Generator) -> Tensor:
    """One augmented copy of each image: uint8 ``[N, 3, H, W]`` in, a new uint8 tensor of the same
    shape out (a rotation's float result is rounded back to 0..255, as a saved image would be).

    Args:
        images: the originals, uint8; not modified.
        augment: the geometric augmentation of the copy (its Gaussian noise is not applied).
        generator: a CPU generator (:func:`copy_generator`); several splits drawn one after the
            other from one generator continue its stream.
    """
    copy = torch.empty_like(images)
    for start in range(0, len(images), CHUNK):
        x = augment(images[start : start + CHUNK], generator)
        if x.dtype != torch.uint8:
            x = x.mul(255).round_().clamp_(0, 255).to(torch.uint8)
        copy[start : start + CHUNK] = x
    return copy
