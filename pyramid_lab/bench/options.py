"""The bench's command line, apart from what it measures: ``--help`` and a bad argument answer
before torch is imported (pyramid_lab.bench.__main__ parses first, then imports cli)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pyramid_lab import command_name

PLANS = ("quick", "cpu", "gpu")


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
    p.add_argument(
        "--plan",
        choices=PLANS,
        help="quick: precisions, compiled vs eager, data pipelines (~2.5 minutes on a 2-core CPU, "
        "minutes more for a first compile); cpu: "
        "everything on CPU stand-ins (a few minutes); gpu: the study's model on one GPU "
        "(under 8 minutes). Default: gpu on cuda, cpu on cpu",
    )
    p.add_argument("--quick", action="store_true", help="the same as --plan quick")
    p.add_argument(
        "--tiny",
        action="store_true",
        help="toy models and windows: to test a plan (e.g. --plan gpu) on a CPU",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="write the header and records as JSON to this file (rewritten after every item)",
    )
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available, else cpu")
    p.add_argument(
        "--num-workers",
        type=int,
        default=0,
        help="DataLoader workers for both data pipelines (the plan's counts as well)",
    )
    p.add_argument("--batch-size", type=int, help="training batch (default: 256 on cuda, 32 on cpu)")
    p.add_argument(
        "--window-s", type=float, help="seconds per timed window (default: 2 on a CPU, 1 on a GPU)"
    )
    p.add_argument("--windows", type=int, help="timed windows per configuration (default 5)")
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: elapsed time; "
        "cpu: this process's CPU time (a CPU shared with other jobs: leaves out the time "
        "they hold the cores; with --threads 1 it is the steps' own compute)",
    )
    p.add_argument(
        "--threads",
        type=int,
        help="torch intra-op threads (default: torch's choice); 1 on a shared machine, "
        "where spinning OpenMP threads collapse when other jobs hold the cores",
    )
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend")
    p.add_argument(
        "--compile-mode",
        default="default",
        help="torch.compile mode (callbacks.compile.mode): default, reduce-overhead (CUDA graphs), "
        "max-autotune",
    )
    p.add_argument(
        "--divergence-check-every",
        type=int,
        default=100,
        help="steps between reads of the module's finite-loss flag, each a host-device sync "
        "(callbacks.divergence.check_every)",
    )
    return p
