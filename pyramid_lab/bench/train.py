"""Training-step throughput: our LightningModule through ``Trainer.fit`` against a plain PyTorch
loop over the same model, optimizer, loss and batches, per precision / memory-format / compile
mode; and SAM's cost against SGD."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from pyramid_lab.bench.timing import PeakMemory, Record, Windows, images_per_s
from pyramid_lab.compile_fallback import CompileFallback
from pyramid_lab.data import BatchAugment, ImageDataModule, Synthetic
from pyramid_lab.module import Classifier
from pyramid_lab.optim import SAM

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


MODES = {m.name: m for m in (
    Mode("fp32", "32-true"),
    Mode("bf16-cl", "bf16-mixed", channels_last=True),
    Mode("bf16-cl-compile", "bf16-mixed", channels_last=True, compile=True),
)}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[[], nn.Module]


@dataclass(frozen=True)
class Steps:
    """Untimed warm-up steps (cuDNN autotuning, compilation), then ``repeats`` windows of
    ``steps`` steps."""

    warmup: int
    steps: int
    repeats: int

    def windows(self, device: torch.device) -> Windows:
        return Windows(device, self.warmup, self.steps, self.repeats)


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
    return [(torch.randn(batch_size, 3, 32, 32, generator=g).to(device),
             torch.randint(0, 10, (batch_size,), generator=g).to(device)) for _ in range(count)]


class WindowTimer(pl.Callback):
    """Reads the clock (after a device sync) at ``on_train_batch_start``, as ``Windows`` says:
    from the first timed step on, everything between steps counts and ``Trainer`` setup does not."""

    def __init__(self, windows: Windows) -> None:
        self.windows = windows

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        self.windows.step_starts()


def plain_loop(spec: ModelSpec, mode: Mode, batches: list[Batch], device: torch.device,
               steps: Steps, compile_backend: str) -> tuple[list[float], bool]:
    """The reference: forward, loss, ``zero_grad``, backward, SGD step; nothing else.

    Returns:
        (seconds per window, whether compilation fell back to eager).
    """
    torch.manual_seed(0)
    fmt = torch.channels_last if mode.channels_last else torch.contiguous_format
    net = spec.build().to(device, memory_format=fmt).train()
    forward: Callable[[Tensor], Tensor] = net
    if mode.compile:
        forward = CompileFallback(net, compile_backend)
    optimizer = torch.optim.SGD(net.parameters(), **SGD)
    criterion = nn.CrossEntropyLoss()
    bf16 = mode.precision.startswith("bf16")
    windows = steps.windows(device)
    for i in range(windows.total_steps):
        windows.step_starts()
        if windows.done:
            break
        x, y = batches[i % len(batches)]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = criterion(forward(x.contiguous(memory_format=fmt)), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    fell_back = mode.compile and forward.compiled is None  # type: ignore[union-attr]
    return windows.times(), fell_back


def lightning_fit(spec: ModelSpec, mode: Mode, device: torch.device, steps: Steps,
                  batch_size: int, compile_backend: str, sam: bool = False,
                  batches: list[Batch] | None = None,
                  divergence_check_every: int = 1) -> tuple[list[float], bool]:
    """Our ``Classifier`` through ``Trainer.fit``: no logger, progress bar, checkpoint or
    validation. ``batches`` given: those, already on the device; ``None``: an ``ImageDataModule``
    over synthetic uint8 images with the study's augmentation (crop, flip) on the device.

    Returns:
        (seconds per window, whether compilation fell back to eager).
    """
    torch.manual_seed(0)
    windows = steps.windows(device)
    optimizer = (partial(SAM, base_optimizer=torch.optim.SGD, rho=0.05, **SGD) if sam
                 else partial(torch.optim.SGD, **SGD))
    module = Classifier(spec.build(), optimizer, channels_last=mode.channels_last,
                        compile=mode.compile, compile_backend=compile_backend,
                        divergence_check_every=divergence_check_every)
    trainer = pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu", devices=1,
        precision=mode.precision, benchmark=device.type == "cuda",
        max_steps=windows.total_steps, limit_val_batches=0, num_sanity_val_steps=0,
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, use_distributed_sampler=False, callbacks=[WindowTimer(windows)],
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(does not have many workers|"
                                "max_epochs|val_dataloader|GPU available but not used).*")
        if batches is None:
            datamodule = ImageDataModule(
                Synthetic(num_train=batch_size * (windows.total_steps + 1), num_val=batch_size,
                          num_test=batch_size),
                num_classes=10, batch_size=batch_size,
                augment=BatchAugment(crop_padding=4, flip=True))
            trainer.fit(module, datamodule=datamodule)
        else:
            trainer.fit(module, train_dataloaders=DeviceBatches(batches, windows.total_steps))
    fell_back = mode.compile and module._compiled is not None and module._compiled.compiled is None
    return windows.times(), fell_back


def _measure(name: str, run: Callable[[], tuple[list[float], bool]], device: torch.device,
             batch_size: int, steps: Steps, **details: Any) -> Record:
    """Run ``run`` (it returns window times and whether compilation fell back) under
    ``PeakMemory`` and make its record."""
    _clean(device)
    with PeakMemory(device) as memory:
        times, fell_back = run()
    return Record(name=name, device=device.type,
                  images_per_s=images_per_s(times, batch_size * steps.steps),
                  batch_size=batch_size, peak_memory_mb=memory.mb, memory=memory.kind,
                  details={**details, "compile_fell_back": fell_back,
                           "steps_per_window": steps.steps, "warmup": steps.warmup,
                           "times_s": times})


def _compare(record: Record, reference: Record) -> Record:
    record.reference, record.ratio = reference.name, record.images_per_s / reference.images_per_s
    return record


def _clean(device: torch.device) -> None:
    # Forget earlier compilations: each run compiles its own model afresh (inductor's on-disk
    # cache still helps) and no run meets Dynamo's recompile limit because of another's graphs.
    torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def bench_model(spec: ModelSpec, modes: list[Mode], device: torch.device, batch_size: int,
                steps: Steps, compile_backend: str = "inductor",
                divergence_check_every: int = 1, with_sam: bool = False,
                with_datamodule: bool = False) -> list[Record]:
    """Plain loop and Lightning per mode; then, in the last mode, optionally SAM (against our SGD
    run), the full data path (ImageDataModule + augmentation, against the plain loop) and, on a
    GPU, Lightning without the divergence check's sync (against the plain loop)."""
    batches = device_batches(device, batch_size)
    check = divergence_check_every
    never = 2**62  # steps between finite-loss checks: only the (untimed) first step is checked
    records: list[Record] = []
    for mode in modes:
        prefix = f"train/{spec.name}/{mode.name}"
        measure = partial(_measure, device=device, batch_size=batch_size, steps=steps,
                          model=spec.name, mode=mode.name, precision=mode.precision,
                          channels_last=mode.channels_last, compile=mode.compile,
                          compile_backend=compile_backend if mode.compile else None)
        fit = partial(lightning_fit, spec, mode, device, steps, batch_size, compile_backend)
        plain = measure(f"{prefix}/plain",
                        partial(plain_loop, spec, mode, batches, device, steps, compile_backend))
        ours = _compare(measure(f"{prefix}/lightning",
                                partial(fit, batches=batches, divergence_check_every=check),
                                divergence_check_every=check), plain)
        records += [plain, ours]
        if mode is not modes[-1]:
            continue
        if with_sam:
            records.append(_compare(measure(
                f"{prefix}/lightning-sam",
                partial(fit, sam=True, batches=batches, divergence_check_every=check),
                divergence_check_every=check, optimizer="SAM(SGD, rho=0.05)"), ours))
        if with_datamodule:
            records.append(_compare(measure(
                f"{prefix}/lightning-datamodule", partial(fit, divergence_check_every=check),
                divergence_check_every=check,
                data="ImageDataModule(Synthetic) + BatchAugment(crop 4, flip)"), plain))
        if device.type == "cuda" and check == 1:  # what the per-step sync costs
            records.append(_compare(measure(
                f"{prefix}/lightning-nocheck",
                partial(fit, batches=batches, divergence_check_every=never),
                divergence_check_every=never), plain))
    return records
