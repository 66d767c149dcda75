"""``pyramid-lab-bench`` / ``python -m pyramid_lab.bench``: the arguments in, the table and the
JSON out. torch is imported only once the arguments are read, so ``--help`` and a bad argument
answer in well under a second."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from pyramid_lab import command_name
from pyramid_lab.errors import exit_with_error

if TYPE_CHECKING:
    import torch

    from pyramid_lab.bench.plans import Plan
    from pyramid_lab.bench.timing import Record

PLANS = ("quick", "cpu", "gpu")
# Every option once: its flag, argparse's keywords (and ``least``, an integer option's least valid
# value, checked after parsing so that a bad one is refused in one line naming it) and its help.
OPTIONS: list[tuple[str, dict[str, Any], str]] = [
    (
        "--plan",
        {"choices": PLANS},
        "quick: precisions, compiled vs eager, data pipelines (~2.5 minutes on a 2-core CPU, minutes "
        "more for a first compile); cpu: everything on CPU stand-ins (a few minutes); gpu: the "
        "study's model on one GPU (under 8 minutes). Default: gpu on cuda, cpu on cpu",
    ),
    ("--quick", {"action": "store_true"}, "the same as --plan quick"),
    ("--tiny", {"action": "store_true"}, "toy models and windows: to test a plan (e.g. --plan gpu) on a CPU"),
    (
        "--out",
        {"type": Path},
        "write the header and records as JSON to this file (rewritten after every item)",
    ),
    ("--device", {"choices": ("cpu", "cuda")}, "default: cuda when available, else cpu"),
    (
        "--num-workers",
        {"type": int, "least": 0, "default": 0},
        "DataLoader workers for both data pipelines (the plan's counts as well)",
    ),
    ("--batch-size", {"type": int, "least": 1}, "training batch (default: 256 on cuda, 32 on cpu)"),
    ("--window-s", {"type": float}, "seconds per timed window (default: 2 on a CPU, 1 on a GPU)"),
    ("--windows", {"type": int, "least": 1}, "timed windows per configuration (default 5)"),
    (
        "--clock",
        {"choices": ("wall", "cpu"), "default": "wall"},
        "wall: elapsed time; cpu: this process's CPU time (a CPU shared with other jobs: leaves out "
        "the time they hold the cores; with --threads 1 it is the steps' own compute)",
    ),
    (
        "--threads",
        {"type": int, "least": 1},
        "torch intra-op threads (default: torch's choice); 1 on a shared machine, where spinning "
        "OpenMP threads collapse when other jobs hold the cores",
    ),
    ("--compile-backend", {"default": "inductor"}, "torch.compile backend"),
    (
        "--compile-mode",
        {"default": "default"},
        "torch.compile mode (callbacks.compile.mode): default, reduce-overhead (CUDA graphs), max-autotune",
    ),
    (
        "--divergence-check-every",
        {"type": int, "least": 1, "default": 100},
        "steps between reads of the module's finite-loss flag, each a host-device sync "
        "(callbacks.divergence.check_every)",
    ),
]
MINIMA = {flag: keywords["least"] for flag, keywords, _ in OPTIONS if "least" in keywords}


def parser() -> argparse.ArgumentParser:
    """The command line of ``pyramid-lab-bench`` / ``python -m pyramid_lab.bench``."""
    p = argparse.ArgumentParser(
        prog=command_name("pyramid_lab.bench"),
        description=(
            "Data pipeline and training-step throughput against torchvision and a plain PyTorch "
            "loop, per precision and compile mode, SAM's cost, and peak memory, on whatever device "
            "is present; the configurations of each comparison are timed in turn, window by window."
        ),
    )
    for flag, keywords, text in OPTIONS:
        p.add_argument(flag, help=text, **{k: v for k, v in keywords.items() if k != "least"})
    return p


def fail(message: str) -> NoReturn:
    """The bench's one way to refuse: ``error: <message>`` on stderr, exit status 2."""
    exit_with_error(message)


def check(args: argparse.Namespace) -> None:
    """Refuse, in one line, what argparse's types and choices let through."""
    for flag, least in MINIMA.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None and value < least:
            fail(f"{flag}={value} must be an integer >= {least}")
    if args.window_s is not None and not args.window_s > 0:
        fail(f"--window-s={args.window_s} must be > 0 (seconds)")
    if args.quick and args.plan not in (None, "quick"):
        fail(f"--quick and --plan {args.plan} contradict; give one")
    if args.out and not args.out.resolve().parent.is_dir():  # fail now, not after the run
        fail(f"--out {args.out}: folder {args.out.resolve().parent} does not exist")


def main(argv: list[str] | None = None) -> list[Record]:
    args = parser().parse_args(argv)
    check(args)
    device = _device(args)
    from pyramid_lab.bench.plans import make_plan, run

    _quiet()
    plan_name = "quick" if args.quick else args.plan or ("gpu" if device.type == "cuda" else "cpu")
    plan = make_plan(
        plan_name,
        device,
        args.tiny,
        args.num_workers,
        args.batch_size,
        args.window_s,
        args.windows,
        clock=args.clock,
    )
    header = _header(device, plan, args.divergence_check_every)
    print(f"pyramid_lab.bench on {header['device_name']} ({header['plan']})", file=sys.stderr)

    def save(records: list[Record]) -> None:
        if args.out:
            from pyramid_lab.runs.atomic import atomic_write

            payload = {"header": header, "records": [dataclasses.asdict(r) for r in records]}
            atomic_write(args.out, json.dumps(payload, indent=2) + "\n")

    started = time.perf_counter()
    records = run(
        plan,
        device,
        args.num_workers,
        args.compile_backend,
        args.divergence_check_every,
        args.compile_mode,
        on_item=save,
    )
    header["elapsed_s"] = round(time.perf_counter() - started, 1)
    save(records)
    print(table(records, header))
    print(f"elapsed: {header['elapsed_s']:.0f} s")
    return records


def _device(args: argparse.Namespace) -> torch.device:
    """The device to measure on, with the checks that need torch, and its thread count."""
    import torch

    from pyramid_lab.training.compile import COMPILE_MODES

    if args.device == "cuda" and not torch.cuda.is_available():
        fail("--device cuda but torch.cuda.is_available() is False; use --device cpu")
    if args.compile_mode not in COMPILE_MODES:
        fail(f"--compile-mode {args.compile_mode} unknown; choose from {', '.join(COMPILE_MODES)}")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.clock == "cpu" and device.type == "cuda":
        fail("--clock cpu measures host CPU time, not GPU work; use --clock wall with cuda")
    if args.threads:
        torch.set_num_threads(args.threads)
    return device


def _header(device: torch.device, plan: Plan, divergence_check_every: int) -> dict[str, Any]:
    from pyramid_lab.bench.timing import hardware
    from pyramid_lab.training.precision import native_cpu_bf16

    header = hardware(device)
    if device.type == "cpu":
        header["cpu_bf16"] = native_cpu_bf16()[1]
    w = plan.windows
    header["plan"] = (
        f"{plan.name}{' (tiny)' if plan.tiny else ''}: training batch {plan.batch_size}, "
        f"{w.count} windows of ~{w.window_s:g} s {w.clock} clock (>= {w.min_steps} steps) after "
        f"{w.warmup} warm-up steps, divergence check every {divergence_check_every}"
    )
    return header


def _quiet() -> None:
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)  # no per-fit banners
    logging.getLogger("lightning_fabric").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="pytorch_lightning|lightning_fabric")
    warnings.filterwarnings(
        "ignore",
        message=".*(does not have many workers|max_epochs|val_dataloader|GPU available but not used).*",
    )


def _to(reference: str | None) -> str:
    """The table's short name of a reference: the workers count or the training key."""
    if reference is None:
        return ""
    if reference.startswith("data/torchvision/"):
        return reference.split("/")[1]
    if reference.startswith("data/"):
        return reference.rsplit("/", 1)[-1]
    return reference.split("/", 2)[-1]


def _cell(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def table(records: list[Record], header: dict[str, Any]) -> str:
    """The human-readable report: a hardware header, one row per record, footnotes."""
    names = [
        r.name + (" (compile FELL BACK to eager)" if r.details.get("compile_fell_back") else "")
        for r in records
    ]
    width = max(map(len, names), default=0) + 2
    target_width = max([len(r.target or "") for r in records] + [6]) + 2
    lines = [
        f"pyramid_lab.bench  {header['date']}  ({header['plan']})",
        (
            f"device: {header['device']} ({header['device_name']}); CPUs {header['cpus_usable']} "
            f"usable of {header['cpu_count']}, torch threads {header['torch_threads']}; "
            f"torch {header['torch']}, lightning {header['pytorch_lightning']}, "
            f"python {header['python']}"
        ),
        *([f"cpu bf16: {header['cpu_bf16']}"] if header.get("cpu_bf16") else []),
        "",
        (
            f"{'measurement':<{width}}{'images/s':>11} {'spread':>8}{'batch':>6}{'ratio':>9}"
            f" {'spread':>8} {'to':<14}{'peak MB':>9}  {'target':<{target_width}}result"
        ),
    ]
    for r, name in zip(records, names):
        ratio = _cell(r.ratio, ".3f") + ("x" if r.ratio is not None else "")
        result = {True: "PASS", False: "FAIL", None: ""}[r.passed]
        lines.append(
            f"{name:<{width}}{r.images_per_s:>11,.1f} {_cell(r.spread, '.1%'):>8}{r.batch_size:>6}"
            f"{ratio:>9} {_cell(r.details.get('ratio_spread'), '.1%'):>8} {_to(r.reference):<14}"
            f"{_cell(r.peak_memory_mb, '.0f'):>9}  {r.target or '':<{target_width}}{result}".rstrip()
        )
    return "\n".join(lines + _notes(records, header))


def _notes(records: list[Record], header: dict[str, Any]) -> list[str]:
    kinds = sorted({r.memory for r in records})
    lines = [
        "",
        "images/s: median of the timed windows; spread: (max - min) / median over them. "
        "ratio: median of the window-by-window ratios to the configuration named under 'to', "
        "timed in turn with it (A, B, B, A, ...); its spread likewise.",
        f"peak MB (over the warm-up steps): {'; '.join(kinds)}."
        + (" Clocks read after a device synchronisation." if header["device"] == "cuda" else ""),
    ]
    if any(r.details.get("clock") == "cpu" for r in records):
        lines.append("--clock cpu: images per second of this process's CPU time, not of wall time.")
    lines += [
        f"{r.name}: compile {r.details['compile_s']:.1f} s (first step "
        f"{r.details['first_step_s']:.1f} s less a steady step), not in images/s."
        for r in records
        if r.details.get("compile_s") is not None
    ]
    return lines
