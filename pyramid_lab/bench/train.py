"""Training-step throughput: our LightningModule through ``Trainer.fit`` and a plain PyTorch loop
over the same model, optimizer, loss and batches, per precision / memory format / compile mode,
SAM against SGD, and the full data path; all configurations of a group interleaved window by
window (``interleave``)."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from pyramid_lab.bench.interleave import Clock, Windows, compare, interleave, to_record
from pyramid_lab.bench.timing import Record
from pyramid_lab.data import BatchAugment, ImageDataModule, Synthetic
from pyramid_lab.optim import SAM
from pyramid_lab.training.compile import ChannelsLast, Compile, CompileFallback
from pyramid_lab.training.divergence import DivergenceWatch
from pyramid_lab.training.module import Classifier
from pyramid_lab.training.sam import SAMClassifier

# The study's SGD (conf/optimizer/sgd.yaml); SAM wraps the same settings with rho 0.05.
SGD = {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}
Batch = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class Mode:
    """How the network runs: Lightning's precision string, NHWC or not, compiled or not."""

    name: str
    precision: str
    channels_last: bool = False
    compile: bool = False


MODES = {
    m.name: m
    for m in (
        Mode("fp32", "32-true"),
        Mode("bf16", "bf16-mixed"),
        Mode("bf16-cl", "bf16-mixed", channels_last=True),
        Mode("fp32-compile", "32-true", compile=True),
        Mode("bf16-cl-compile", "bf16-mixed", channels_last=True, compile=True),
    )
}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[[], nn.Module]


@dataclass(frozen=True)
class Contender:
    """One configuration of a training group.

    Args:
        mode: a ``MODES`` name.
        loop: ``"plain"`` (the reference loop) or ``"lightning"`` (``Trainer.fit``).
        sam: SAM(SGD) instead of SGD (Lightning only).
        datamodule: fed by ``ImageDataModule`` with on-device augmentation instead of batches
            already on the device (Lightning only).
        reference: the ``key`` of the contender this one is compared with.
    """

    mode: str
    loop: str = "lightning"
    sam: bool = False
    datamodule: bool = False
    reference: str | None = None

    @property
    def key(self) -> str:
        """``<mode>/<kind>``, e.g. ``bf16-cl/lightning-sam``; records are ``train/<model>/<key>``."""
        kind = self.loop + ("-sam" if self.sam else "") + ("-datamodule" if self.datamodule else "")
        return f"{self.mode}/{kind}"


class DeviceBatches:
    """``length`` batches cycling through ``batches``, already on the device: no loader cost.

    A plain iterable (Lightning would take a list for several data loaders)."""

    def __init__(self, batches: list[Batch], length: int) -> None:
        self.batches, self.length = batches, length

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[Batch]:
        return (self.batches[i % len(self.batches)] for i in range(self.length))


def device_batches(device: torch.device, batch_size: int, count: int = 4) -> list[Batch]:
    """Normalised-looking float images and labels on ``device`` (content does not change speed)."""
    g = torch.Generator().manual_seed(0)
    return [
        (
            torch.randn(batch_size, 3, 32, 32, generator=g).to(device),
            torch.randint(0, 10, (batch_size,), generator=g).to(device),
        )
        for _ in range(count)
    ]


class ClockCallback(pl.Callback):
    """Marks each step start on the clock; stops the fit once the last window is timed."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if not self.clock.step_starts():
            trainer.should_stop = True  # this step still runs, untimed, then the fit ends


def plain_loop(
    spec: ModelSpec,
    mode: Mode,
    batches: list[Batch],
    device: torch.device,
    compile_backend: str,
    clock: Clock,
    compile_mode: str = "default",
) -> dict[str, Any]:
    """The reference: forward, loss, ``zero_grad``, backward, SGD step; nothing else."""
    torch.manual_seed(0)
    fmt = torch.channels_last if mode.channels_last else torch.contiguous_format
    net = spec.build().to(device, memory_format=fmt).train()
    forward: Callable[[Tensor], Tensor] = net
    if mode.compile:
        forward = CompileFallback(net, compile_backend, compile_mode)
    optimizer = torch.optim.SGD(net.parameters(), **SGD)
    criterion = nn.CrossEntropyLoss()
    bf16 = mode.precision.startswith("bf16")
    i = 0
    while clock.step_starts():
        x, y = batches[i % len(batches)]
        i += 1
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = criterion(forward(x.contiguous(memory_format=fmt)), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return {"compile_fell_back": mode.compile and forward.compiled is None}  # type: ignore[union-attr]


def lightning_fit(
    spec: ModelSpec,
    mode: Mode,
    device: torch.device,
    batch_size: int,
    compile_backend: str,
    divergence_check_every: int,
    sam: bool,
    batches: list[Batch] | None,
    clock: Clock,
    compile_mode: str = "default",
) -> dict[str, Any]:
    """Our ``Classifier`` through ``Trainer.fit``: no logger, progress bar, checkpoint or
    validation. ``batches`` given: those, already on the device; ``None``: an ``ImageDataModule``
    over synthetic uint8 images with the study's augmentation (crop, flip) on the device."""
    torch.manual_seed(0)
    optimizer = (
        partial(SAM, base_optimizer=torch.optim.SGD, rho=0.05, **SGD)
        if sam
        else partial(torch.optim.SGD, **SGD)
    )
    module = (SAMClassifier if sam else Classifier)(spec.build(), optimizer)
    # As conf/callbacks/default.yaml builds them for a run.
    speedups = [
        DivergenceWatch(divergence_check_every),
        Compile(mode.compile, compile_backend, compile_mode),
        ChannelsLast(mode.channels_last),
    ]
    trainer = pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        precision=mode.precision,
        benchmark=device.type == "cuda",
        # Epochs without end: the clock stops the fit after its last window.
        max_epochs=-1 if batches is None else 1,
        max_steps=-1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        callbacks=[*speedups, ClockCallback(clock)],
    )
    if batches is None:
        datamodule = ImageDataModule(
            Synthetic(num_train=batch_size * 64, num_val=batch_size, num_test=batch_size),
            num_classes=10,
            batch_size=batch_size,
            augment=BatchAugment(crop_padding=4, flip=True),
        )
        trainer.fit(module, datamodule=datamodule)
    else:
        trainer.fit(module, train_dataloaders=DeviceBatches(batches, 2**62))
    fell_back = mode.compile and module.compiled is not None and module.compiled.compiled is None
    return {"compile_fell_back": fell_back}


def bench_training(
    spec: ModelSpec,
    contenders: list[Contender],
    device: torch.device,
    batch_size: int,
    windows: Windows,
    compile_backend: str = "inductor",
    divergence_check_every: int = 100,
    compile_mode: str = "default",
) -> list[Record]:
    """Time ``contenders`` on ``spec``'s model, interleaved; one record each, with its ratio to
    its reference and, when compiled, the compile time (its first step less a steady step)."""
    # Forget earlier compilations (inductor's on-disk cache still helps), so that no group meets
    # Dynamo's recompile limit because of another's graphs.
    torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    batches = device_batches(device, batch_size)
    runs: dict[str, Callable[[Clock], Any]] = {}
    for c in contenders:
        mode = MODES[c.mode]
        if c.loop == "plain":
            runs[c.key] = partial(
                plain_loop, spec, mode, batches, device, compile_backend, compile_mode=compile_mode
            )
        else:
            runs[c.key] = partial(
                lightning_fit,
                spec,
                mode,
                device,
                batch_size,
                compile_backend,
                divergence_check_every,
                c.sam,
                None if c.datamodule else batches,
                compile_mode=compile_mode,
            )
    results = interleave(
        runs, device, windows, progress=lambda line: print(f"    {line}", file=sys.stderr, flush=True)
    )
    group = f"train/{spec.name}"
    records: dict[str, Record] = {}
    for c in contenders:
        mode, result = MODES[c.mode], results[c.key]
        record = to_record(
            f"{group}/{c.key}",
            device,
            result,
            batch_size,
            group=group,
            model=spec.name,
            mode=mode.name,
            precision=mode.precision,
            channels_last=mode.channels_last,
            compile=mode.compile,
            compile_backend=compile_backend if mode.compile else None,
            compile_mode=compile_mode if mode.compile else None,
            loop=c.loop,
            optimizer="SAM(SGD, rho=0.05)" if c.sam else "SGD",
            data=(
                "ImageDataModule(Synthetic) + BatchAugment(crop 4, flip)"
                if c.datamodule
                else "batches on the device"
            ),
            divergence_check_every=divergence_check_every if c.loop == "lightning" else None,
            **result.value,
        )
        if mode.compile:
            step_s = record.batch_size / record.images_per_s
            record.details["compile_s"] = max(result.clock.first_step_s - step_s, 0.0)
        records[c.key] = record
    for c in contenders:
        if c.reference is not None:
            compare(records[c.key], records[c.reference])
    return list(records.values())
