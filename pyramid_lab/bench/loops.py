"""Training-step throughput: a plain PyTorch loop, the reference, against our LightningModule
through ``Trainer.fit``, per precision / memory format / compile mode, SAM against SGD, and the
full data path; all configurations of a group interleaved window by window (``interleave``).

What the two sides train is defined once (:class:`Workload`: the model and its initial weights,
the optimizer and its settings, the batches, the compile settings; a ``Mode``: the precision and
memory format; the same clock sets the steps), so the comparison cannot drift apart; only the
driver differs, which is what is measured.
"""

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

from pyramid_lab.bench.input_pipeline import synthetic_data
from pyramid_lab.bench.interleave import Clock, Result, Windows, compare, interleave, to_record
from pyramid_lab.bench.timing import Record
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


@dataclass(frozen=True)
class Workload:
    """What every configuration of a group trains, for both loops.

    Args:
        spec: the model; each configuration builds its own from seed 0 (the same initial weights).
        device: where it trains.
        batches: float images and labels already on ``device``, taken in turn.
        compile_backend, compile_mode: ``torch.compile``'s, for the compiled modes.
    """

    spec: ModelSpec
    device: torch.device
    batches: list[Batch]
    compile_backend: str = "inductor"
    compile_mode: str = "default"

    @property
    def batch_size(self) -> int:
        return len(self.batches[0][1])

    def net(self) -> nn.Module:
        torch.manual_seed(0)
        return self.spec.build()

    def optimizer(self, sam: bool = False) -> Callable[..., torch.optim.Optimizer]:
        """The optimizer factory (it takes the parameters)."""
        if sam:
            return partial(SAM, base_optimizer=torch.optim.SGD, rho=0.05, **SGD)
        return partial(torch.optim.SGD, **SGD)


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


def plain_loop(work: Workload, mode: Mode, clock: Clock) -> dict[str, Any]:
    """The reference: forward, loss, ``zero_grad``, backward, SGD step; nothing else.

    Like ``Trainer.fit`` under :class:`ClockCallback`, the step the clock stops at still runs,
    untimed, so both loops take the same number of steps."""
    fmt = torch.channels_last if mode.channels_last else torch.contiguous_format
    net = work.net().to(work.device, memory_format=fmt).train()
    forward = CompileFallback(net, work.compile_backend, work.compile_mode) if mode.compile else net
    optimizer = work.optimizer()(net.parameters())
    criterion = nn.CrossEntropyLoss()  # the Classifier's (label_smoothing 0)
    bf16 = mode.precision.startswith("bf16")  # autocast, as Lightning's bf16-mixed
    batches = DeviceBatches(work.batches, 2**62)
    for x, y in batches:
        more = clock.step_starts()
        with torch.autocast(work.device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = criterion(forward(x.contiguous(memory_format=fmt)), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if not more:
            break
    return {"compile_fell_back": isinstance(forward, CompileFallback) and forward.compiled is None}


class ClockCallback(pl.Callback):
    """Marks each step start on the clock; stops the fit once the last window is timed."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if not self.clock.step_starts():
            trainer.should_stop = True  # this step still runs, untimed, then the fit ends


def lightning_fit(
    work: Workload, mode: Mode, contender: Contender, divergence_check_every: int, clock: Clock
) -> dict[str, Any]:
    """Our ``Classifier`` through ``Trainer.fit``: no logger, progress bar, checkpoint or
    validation. Fed ``work.batches``, or with ``contender.datamodule`` an ``ImageDataModule`` over
    synthetic uint8 images with the study's augmentation (crop, flip) on the device."""
    module = (SAMClassifier if contender.sam else Classifier)(work.net(), work.optimizer(contender.sam))
    # As conf/callbacks/default.yaml builds them for a run.
    speedups = [
        DivergenceWatch(divergence_check_every),
        Compile(mode.compile, work.compile_backend, work.compile_mode),
        ChannelsLast(mode.channels_last),
    ]
    trainer = pl.Trainer(
        accelerator="gpu" if work.device.type == "cuda" else "cpu",
        devices=1,
        precision=mode.precision,
        benchmark=work.device.type == "cuda",
        max_epochs=-1,  # epochs without end: the clock stops the fit after its last window
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        callbacks=[*speedups, ClockCallback(clock)],
    )
    if contender.datamodule:
        datamodule = synthetic_data(work.device, work.batch_size, work.batch_size * 64)
        trainer.fit(module, datamodule=datamodule)
    else:
        trainer.fit(module, train_dataloaders=DeviceBatches(work.batches, 2**62))
    compiled = module.compiled
    return {"compile_fell_back": mode.compile and compiled is not None and compiled.compiled is None}


def _record(group: str, work: Workload, c: Contender, result: Result, divergence_check_every: int) -> Record:
    mode = MODES[c.mode]
    record = to_record(
        f"{group}/{c.key}",
        work.device,
        result,
        work.batch_size,
        group=group,
        model=work.spec.name,
        mode=mode.name,
        precision=mode.precision,
        channels_last=mode.channels_last,
        compile=mode.compile,
        compile_backend=work.compile_backend if mode.compile else None,
        compile_mode=work.compile_mode if mode.compile else None,
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
    if mode.compile:  # the first step less a steady one
        step_s = record.batch_size / record.images_per_s
        record.details["compile_s"] = max(result.clock.first_step_s - step_s, 0.0)
    return record


def bench_training(
    work: Workload, contenders: list[Contender], windows: Windows, divergence_check_every: int = 100
) -> list[Record]:
    """Time ``contenders`` on ``work``, interleaved; one record each, with its ratio to its
    reference and, when compiled, the compile time (its first step less a steady step)."""
    # Forget earlier compilations (inductor's on-disk cache still helps), so that no group meets
    # Dynamo's recompile limit because of another's graphs.
    torch._dynamo.reset()
    gc.collect()
    if work.device.type == "cuda":
        torch.cuda.empty_cache()
    runs: dict[str, Callable[[Clock], Any]] = {
        c.key: (
            partial(plain_loop, work, MODES[c.mode])
            if c.loop == "plain"
            else partial(lightning_fit, work, MODES[c.mode], c, divergence_check_every)
        )
        for c in contenders
    }
    results = interleave(
        runs, work.device, windows, progress=lambda line: print(f"    {line}", file=sys.stderr, flush=True)
    )
    group = f"train/{work.spec.name}"
    records = {c.key: _record(group, work, c, results[c.key], divergence_check_every) for c in contenders}
    for c in contenders:
        if c.reference is not None:
            compare(records[c.key], records[c.reference])
    return list(records.values())
