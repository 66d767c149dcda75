"""The data pipeline with each policy augmentation against the pipeline without it, in the same run.

Every configuration is our ``ImageDataModule`` pipeline as training sees it (uint8 batch slices,
the host-to-device copy, random crop + flip, normalisation, in ``on_after_batch_transfer``); the
reference adds nothing, the others add one of AutoAugment, RandAugment, TrivialAugmentWide (per
image, on the device: ``pyramid_lab.data.policy``) or Cutout. Their windows are interleaved
(``pyramid_lab.bench.interleave``), so each ratio is paired against the same machine state.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import torch

from pyramid_lab.bench.interleave import Clock, Windows, compare, interleave, to_record
from pyramid_lab.bench.timing import Record
from pyramid_lab.data import BatchAugment, ImageDataModule, Synthetic
from pyramid_lab.data.cutout import Cutout
from pyramid_lab.data.policy import AutoAugment, RandAugment, TrivialAugmentWide

REFERENCE = "none"


def policies() -> dict[str, dict[str, Any]]:
    """The configurations measured: name -> ``ImageDataModule`` keyword arguments (the tricks'
    settings: conf/tricks/{autoaugment,randaugment,trivialaugment,cutout}.yaml)."""
    return {
        REFERENCE: {},
        "autoaugment": {"policy": AutoAugment("cifar10")},
        "randaugment": {"policy": RandAugment(num_ops=2, magnitude=9)},
        "trivialaugment": {"policy": TrivialAugmentWide()},
        "cutout": {"cutout": Cutout(size=16)},
    }


def _pipeline(device: torch.device, batch_size: int, **extra: Any) -> Callable[[Clock], None]:
    dm = ImageDataModule(
        Synthetic(num_train=batch_size * 16, num_val=batch_size, num_test=batch_size),
        num_classes=10,
        batch_size=batch_size,
        augment=BatchAugment(crop_padding=4, flip=True),
        pin_memory=device.type == "cuda",
        **extra,
    )
    dm.setup("fit")
    loader = dm.train_dataloader()
    # on_after_batch_transfer augments only while a trainer is training; there is no Trainer here.
    dm.trainer = SimpleNamespace(training=True, validating=False, testing=False, sanity_checking=False)

    def run(clock: Clock) -> None:
        while True:
            for batch in loader:
                if not clock.step_starts():
                    return
                x, y = (t.to(device, non_blocking=True) for t in batch)
                dm.on_after_batch_transfer((x, y), 0)

    return run


def bench_policies(
    device: torch.device, batch_size: int, windows: Windows, names: list[str] | None = None
) -> list[Record]:
    """Images/s of the training data pipeline with each policy, and without (the reference).

    Args:
        device: where the batches go and are augmented (``cuda``: the training device).
        batch_size: images per batch (256: the study's).
        windows: timing plan (``pyramid_lab.bench.interleave.Windows``).
        names: configurations of :func:`policies` to measure (default: all); the reference
            ``none`` is always measured.

    Returns:
        One ``Record`` per configuration, named ``data/policy/<name>``, the reference first; the
        others carry ``ratio`` (< 1: slower than the pipeline without the policy) paired window by
        window with the reference.
    """
    configs = policies()
    chosen = [REFERENCE] + [n for n in (names or list(configs)) if n != REFERENCE]
    unknown = [n for n in chosen if n not in configs]
    if unknown:
        raise ValueError(f"unknown policy configurations {unknown}; valid: {sorted(configs)}")
    runs = {f"data/policy/{n}": _pipeline(device, batch_size, **configs[n]) for n in chosen}
    results = interleave(runs, device, windows)
    records = [
        to_record(
            name,
            device,
            results[name],
            batch_size,
            group="data/policy",
            policy=name.rsplit("/", 1)[-1],
            crop_flip=True,
        )
        for name in runs
    ]
    reference, *others = records
    return [reference, *(compare(record, reference) for record in others)]
