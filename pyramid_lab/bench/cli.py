"""``python -m pyramid_lab.bench``: the plan for the device, the targets, the table, the JSON."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from pyramid_lab.bench.data import bench_data
from pyramid_lab.bench.timing import Record, hardware
from pyramid_lab.bench.train import MODES, Mode, ModelSpec, Steps, bench_model
from pyramid_lab.models.pyramidnet import (
    PyramidNet,
    pyramidnet110_a48,
    pyramidnet196_a48,
)

# The study's model (Yamada et al. 2018's ShakeDrop, p_L = 0.5) and its ShakeDrop-free sibling;
# --quick uses depth-20 stand-ins of the same two families (bottleneck + ShakeDrop, basic).
FULL_MODELS = [ModelSpec("pyramidnet196_a48+shakedrop", partial(pyramidnet196_a48, shakedrop=0.5)),
               ModelSpec("pyramidnet110_a48", pyramidnet110_a48)]
QUICK_MODELS = [
    ModelSpec("pyramidnet20b_a24+shakedrop",
              partial(PyramidNet, depth=20, alpha=24, bottleneck=True, shakedrop=0.5)),
    ModelSpec("pyramidnet20_a24", partial(PyramidNet, depth=20, alpha=24)),
]
H200_IMAGES_PER_S = 25_000  # pyramidnet196_a48 + ShakeDrop, batch 256, bf16 (the goal)
DATA_SPEEDUP = 10.0  # our pipeline against torchvision's, per image, on a CPU
LIGHTNING_RATIO = 0.95  # Lightning's training step within 5% of the plain loop


@dataclass(frozen=True)
class Plan:
    """What one run measures: training on ``models`` x ``modes`` at ``batch_size`` (``steps``),
    the data pipeline at ``data_batch_size`` (``data_steps``) for each of ``worker_counts``."""

    quick: bool
    models: list[ModelSpec]
    modes: list[Mode]
    batch_size: int
    steps: Steps
    data_batch_size: int
    data_steps: Steps
    worker_counts: list[int]


def make_plan(device: torch.device, quick: bool, num_workers: int = 0,
              batch_size: int | None = None, modes: list[str] | None = None) -> Plan:
    cuda = device.type == "cuda"
    if modes is None:
        modes = list(MODES) if cuda else ["fp32"]  # the CPU trains in fp32 (DESIGN.md)
    if quick:  # about a minute on a 2-core CPU
        steps = Steps(3, 10, 3) if cuda else Steps(1, 2, 3)  # (warmup, steps, repeats)
        data_steps = Steps(1, 4, 3)
    elif cuda:  # enough steps for stable numbers; warm-up absorbs compilation and autotuning
        steps, data_steps = Steps(5, 20, 5), Steps(3, 20, 5)
    else:  # real models take seconds per step on a CPU: a few minutes in all
        steps, data_steps = Steps(1, 1, 3), Steps(2, 10, 5)
    return Plan(
        quick=quick,
        models=QUICK_MODELS if quick else FULL_MODELS,
        modes=[MODES[m] for m in modes],
        # A CPU gets batch 32: pyramidnet196_a48 in fp32 holds ~95 MB of activations per image
        # (3.1 GB peak RSS at batch 32, measured), so batch 256 would need ~25 GB.
        batch_size=batch_size or (256 if cuda else 32),
        steps=steps,
        data_batch_size=256,
        data_steps=data_steps,
        worker_counts=sorted({num_workers, 2}),
    )


def run(plan: Plan, device: torch.device, num_workers: int = 0, compile_backend: str = "inductor",
        divergence_check_every: int = 1) -> list[Record]:
    """Every measurement of ``plan``, targets checked; progress goes to stderr."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as trainer=gpu; the plain loop gets it too
    records: list[Record] = []

    def done(new: list[Record]) -> None:
        for r in new:
            print(f"  {r.name}: {r.images_per_s:,.0f} images/s", file=sys.stderr, flush=True)
        records.extend(new)

    for workers in plan.worker_counts:
        s = plan.data_steps
        done(list(reversed(bench_data(device, plan.data_batch_size, workers, s.warmup, s.steps,
                                      s.repeats))))
    for i, spec in enumerate(plan.models):
        done(bench_model(spec, plan.modes, device, plan.batch_size, plan.steps, compile_backend,
                         divergence_check_every, with_sam=i == 0, with_datamodule=i == 0))
    check_targets(records, plan, device, num_workers)
    return records


def check_targets(records: list[Record], plan: Plan, device: torch.device,
                  num_workers: int) -> None:
    """Attach the targets that apply to this device to their records (never asserted)."""
    h200 = device.type == "cuda" and "H200" in torch.cuda.get_device_name(device)
    for r in records:
        kind = r.name.rsplit("/", 1)[-1]
        if r.name == f"data/ours/workers{num_workers}" and device.type == "cpu":
            r.target, r.passed = f">= {DATA_SPEEDUP:g}x torchvision", r.ratio >= DATA_SPEEDUP
        elif kind in ("lightning", "lightning-nocheck"):
            r.target, r.passed = f">= {LIGHTNING_RATIO:g}x plain", r.ratio >= LIGHTNING_RATIO
            bf16 = r.details["precision"].startswith("bf16")
            if (h200 and not plan.quick and bf16 and plan.batch_size == 256
                    and r.details["model"] == FULL_MODELS[0].name):
                r.target += f", >= {H200_IMAGES_PER_S:,} img/s (H200)"
                r.passed = r.passed and r.images_per_s >= H200_IMAGES_PER_S
        elif kind == "lightning-sam":
            r.target = "~0.5x SGD expected (info)"


def table(records: list[Record], header: dict[str, Any]) -> str:
    """The human-readable report: a hardware header, one row per record, footnotes."""
    names = [r.name + (" (compile FELL BACK to eager)" if r.details.get("compile_fell_back")
                       else "") for r in records]
    width = max(map(len, names), default=0) + 2
    target_width = max([len(r.target or "") for r in records] + [6]) + 2
    lines = [
        f"pyramid_lab.bench  {header['date']}  ({header['plan']})",
        (f"device: {header['device']} ({header['device_name']}); CPUs {header['cpus_usable']} "
         f"usable of {header['cpu_count']}, torch threads {header['torch_threads']}; "
         f"torch {header['torch']}, lightning {header['pytorch_lightning']}, "
         f"python {header['python']}"),
        "",
        (f"{'measurement':<{width}}{'images/s':>11}{'batch':>6}{'ratio':>8} {'to':<12}"
         f"{'peak MB':>9}  {'target':<{target_width}}result"),
    ]
    for r, name in zip(records, names):
        ref = "" if r.reference is None else (
            "torchvision" if r.reference.startswith("data/") else r.reference.rsplit("/", 1)[-1])
        ratio = "" if r.ratio is None else f"{r.ratio:.2f}x"
        memory = "" if r.peak_memory_mb is None else f"{r.peak_memory_mb:.0f}"
        result = {True: "PASS", False: "FAIL", None: ""}[r.passed]
        lines.append(f"{name:<{width}}{r.images_per_s:>11,.0f}{r.batch_size:>6}{ratio:>8} {ref:<12}"
                     f"{memory:>9}  {r.target or '':<{target_width}}{result}")
    kinds = sorted({r.memory for r in records})
    lines += ["", f"peak MB: {'; '.join(kinds)}. Median of timed windows after warm-up"
              + ("; device-synchronised." if header["device"] == "cuda" else ".")]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pyramid_lab.bench", description=(
        "Data pipeline and training-step throughput against torchvision and a plain PyTorch "
        "loop, SAM's cost, and peak memory, on whatever device is present."))
    p.add_argument("--quick", action="store_true",
                   help="tiny depth-20 models and few steps (about a minute on a 2-core CPU)")
    p.add_argument("--out", type=Path, help="write the records as JSON to this file")
    p.add_argument("--device", choices=("cpu", "cuda"),
                   help="default: cuda when available, else cpu")
    p.add_argument("--num-workers", type=int, default=0,
                   help="DataLoader workers for both data pipelines (2 is measured as well)")
    p.add_argument("--batch-size", type=int,
                   help="training batch (default: 256 on cuda, 32 on cpu)")
    p.add_argument("--modes", help=f"comma-separated, of {', '.join(MODES)} "
                   "(default: all on cuda, fp32 on cpu)")
    p.add_argument("--threads", type=int,
                   help="torch intra-op threads (default: torch's choice); 1 on a shared machine, "
                   "where spinning OpenMP threads collapse when other jobs hold the cores")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend")
    p.add_argument("--divergence-check-every", type=int, default=1,
                   help="the module's finite-loss check (a host sync) every N steps; 1 as the "
                   "default config")
    return p


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str] | None = None) -> list[Record]:
    args = _parser().parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        _fail("--device cuda but torch.cuda.is_available() is False; use --device cpu")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    for flag, value, least in (("--num-workers", args.num_workers, 0),
                               ("--batch-size", args.batch_size, 1),
                               ("--threads", args.threads, 1),
                               ("--divergence-check-every", args.divergence_check_every, 1)):
        if value is not None and value < least:
            _fail(f"{flag}={value} must be an integer >= {least}")
    modes = args.modes.split(",") if args.modes else None
    unknown = [m for m in modes or [] if m not in MODES]
    if unknown:
        _fail(f"--modes {','.join(unknown)} unknown; choose from {', '.join(MODES)}")
    if args.out and not args.out.resolve().parent.is_dir():  # fail now, not after the run
        _fail(f"--out {args.out}: folder {args.out.resolve().parent} does not exist")

    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)  # no per-fit banners
    logging.getLogger("lightning_fabric").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="pytorch_lightning|lightning_fabric")
    plan = make_plan(device, args.quick, args.num_workers, args.batch_size, modes)
    header = hardware(device)
    header["plan"] = (f"{'quick' if plan.quick else 'full'}: training batch {plan.batch_size}, "
                      f"modes {','.join(m.name for m in plan.modes)}, "
                      f"divergence check every {args.divergence_check_every}")
    print(f"pyramid_lab.bench on {header['device_name']} ({header['plan']})", file=sys.stderr)
    records = run(plan, device, args.num_workers, args.compile_backend,
                  args.divergence_check_every)
    print(table(records, header))
    if args.out:
        payload = {"header": header, "records": [dataclasses.asdict(r) for r in records]}
        tmp = args.out.with_name(args.out.name + ".tmp")
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
        os.replace(tmp, args.out)
    return records
