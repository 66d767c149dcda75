"""``python -m pyramid_lab.bench``: the plan for the device, the targets, the table, the JSON."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import torch

from pyramid_lab.bench.data import bench_data
from pyramid_lab.bench.interleave import Windows
from pyramid_lab.bench.options import PLANS, parser
from pyramid_lab.bench.timing import Record, hardware
from pyramid_lab.bench.train import Contender, ModelSpec, bench_training
from pyramid_lab.models.pyramidnet import PyramidNet, pyramidnet196_a48
from pyramid_lab.runs.atomic import atomic_write
from pyramid_lab.training.compile import COMPILE_MODES
from pyramid_lab.training.precision import native_cpu_bf16

# The study's model (Yamada et al. 2018's ShakeDrop, p_L = 0.5) and, on a CPU, depth-20 stand-ins
# of the same two families (bottleneck + ShakeDrop, basic): a real model takes seconds per step there.
STUDY_MODEL = ModelSpec("pyramidnet196_a48+shakedrop", partial(pyramidnet196_a48, shakedrop=0.5))
STAND_INS = [
    ModelSpec(
        "pyramidnet20b_a24+shakedrop", partial(PyramidNet, depth=20, alpha=24, bottleneck=True, shakedrop=0.5)
    ),
    ModelSpec("pyramidnet20_a24", partial(PyramidNet, depth=20, alpha=24)),
]
# --tiny: the same plans with toy sizes, to test them (a GPU plan on a CPU in seconds).
TINY_MODELS = [
    ModelSpec(
        "tiny_pyramidnet11b_a4+shakedrop",
        partial(PyramidNet, depth=11, alpha=4, bottleneck=True, shakedrop=0.5),
    ),
    ModelSpec("tiny_pyramidnet8_a4", partial(PyramidNet, depth=8, alpha=4)),
]
H200_IMAGES_PER_S = 25_000  # pyramidnet196_a48 + ShakeDrop, batch 256, bf16 (the goal)
DATA_SPEEDUP = 10.0  # our pipeline against torchvision's, per image, on a CPU
LIGHTNING_RATIO = 0.95  # Lightning's training step within 5% of the plain loop
BF16_SPEEDUP = 1.5  # bf16 (+ channels_last) against fp32 on a CPU with native bf16


@dataclass(frozen=True)
class Plan:
    """What one run measures: the data pipeline at ``data_batch_size`` for each of
    ``worker_counts`` (timed in ``data_windows``), then one interleaved training group per
    ``(model, contenders)`` at ``batch_size`` (timed in ``windows``)."""

    name: str
    groups: list[tuple[ModelSpec, list[Contender]]]
    batch_size: int
    windows: Windows
    data_batch_size: int
    data_windows: Windows
    worker_counts: list[int]
    tiny: bool = False


def _lightning_vs_plain(mode: str) -> list[Contender]:
    return [Contender(mode, "plain"), Contender(mode, reference=f"{mode}/plain")]


def make_plan(
    name: str,
    device: torch.device,
    tiny: bool = False,
    num_workers: int = 0,
    batch_size: int | None = None,
    window_s: float | None = None,
    windows: int | None = None,
    native_bf16: bool | None = None,
    clock: str = "wall",
) -> Plan:
    """The plan called ``name`` (``PLANS``) for ``device``.

    ``quick`` (a CPU, about two minutes; a cold inductor cache adds minutes): Lightning against
    the plain loop, fp32 / bf16 / bf16 + channels_last, and compiled against eager, on a depth-20
    bottleneck ShakeDrop stand-in. ``cpu`` (a few minutes more): also SAM against SGD, the data
    module, and a basic-unit stand-in. ``gpu`` (one GPU, under 8 minutes with compilation): the
    study's PyramidNet-196/48 + ShakeDrop at batch 256 in fp32, bf16 + channels_last and compiled,
    SAM against SGD, the data module, Lightning against the plain loop.
    """
    if native_bf16 is None:
        native_bf16 = device.type == "cuda" or native_cpu_bf16()[0]
    # On a CPU without native bf16 the compiled mode is compared in fp32, the precision auto picks.
    best = "bf16-cl" if native_bf16 else "fp32"
    cuda = device.type == "cuda"
    if name == "gpu":
        model = STUDY_MODEL
        contenders = [
            *_lightning_vs_plain("fp32"),
            Contender("bf16-cl", "plain", reference="fp32/plain"),
            Contender("bf16-cl", reference="bf16-cl/plain"),
            Contender("bf16-cl-compile", reference="bf16-cl/lightning"),
            Contender("bf16-cl", sam=True, reference="bf16-cl/lightning"),
            Contender("bf16-cl", datamodule=True, reference="bf16-cl/lightning"),
        ]
        groups = [(model, contenders)]
        # cuDNN autotuning at the first steps; 1 s windows hold tens of steps at batch 256.
        timing, batch = Windows(warmup=3, window_s=1.0, count=5, min_steps=5), 256
        workers = {0, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 8)}
        data_timing = Windows(warmup=2, window_s=0.5, count=5, min_steps=3)
    elif name in ("quick", "cpu"):
        contenders = [
            *_lightning_vs_plain("fp32"),
            Contender("bf16", reference="fp32/lightning"),
            Contender("bf16-cl", reference="fp32/lightning"),
            Contender(f"{best}-compile", reference=f"{best}/lightning"),
        ]
        groups = [(STAND_INS[0], contenders)]
        if name == "cpu":
            contenders += [
                Contender(best, sam=True, reference=f"{best}/lightning"),
                Contender(best, datamodule=True, reference=f"{best}/lightning"),
            ]
            groups.append((STAND_INS[1], _lightning_vs_plain("fp32")))
        # At least ~2 s per window on a CPU: several steps, so a slow step is averaged in.
        timing = Windows(warmup=2, window_s=2.0 if not cuda else 1.0, count=5, min_steps=2)
        batch = 256 if cuda else 32
        # quick: our pipeline against torchvision's in the main process only (workers start slowly).
        # A window of ours holds tens of steps of ~1-3 ms: 7 of 0.4 s keep one stall from deciding
        # the median (with 0.25 s x 5 the window ratios spread 30% to 130% on an idle 2-core CPU).
        data_timing = Windows(warmup=3, window_s=0.4, count=7, min_steps=2)
        workers = {0} if name == "quick" else {0, 2}
    else:
        raise ValueError(f"unknown plan {name!r}; choose from {', '.join(PLANS)}")
    if tiny:
        groups = [(TINY_MODELS[i], c) for i, (_, c) in enumerate(groups)]
        workers = {0}
        timing = Windows(warmup=2, window_s=0.01, count=3, min_steps=1)
        data_timing, batch = Windows(warmup=2, window_s=0.01, count=3, min_steps=1), 4
    if window_s is not None or windows is not None:
        timing = replace(timing, window_s=window_s or timing.window_s, count=windows or timing.count)
    if clock != "wall":
        timing, data_timing = replace(timing, clock=clock), replace(data_timing, clock=clock)
    return Plan(
        name=name,
        groups=groups,
        batch_size=batch_size or batch,
        windows=timing,
        data_batch_size=16 if tiny else 256,
        data_windows=data_timing,
        worker_counts=sorted(workers | {num_workers}),
        tiny=tiny,
    )


def run(
    plan: Plan,
    device: torch.device,
    num_workers: int = 0,
    compile_backend: str = "inductor",
    divergence_check_every: int = 100,
    compile_mode: str = "default",
    on_item: Callable[[list[Record]], None] | None = None,
) -> list[Record]:
    """Every measurement of ``plan``, targets checked; progress and the elapsed time of each item
    go to stderr, and ``on_item(records so far)`` is called after each item."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as trainer=gpu; the plain loop gets it too
    records: list[Record] = []
    start = time.perf_counter()

    def item(what: str, measure: Callable[[], list[Record]]) -> None:
        t = time.perf_counter()
        print(f"{what} ...", file=sys.stderr, flush=True)
        new = measure()
        check_targets(new, plan, device, num_workers)
        for r in new:
            compile_s = r.details.get("compile_s")
            print(
                f"  {r.name}: {r.images_per_s:,.0f} images/s (spread {r.spread:.0%})"
                + (f", compile {compile_s:.1f} s" if compile_s is not None else ""),
                file=sys.stderr,
                flush=True,
            )
        records.extend(new)
        now = time.perf_counter()
        print(f"  {what}: {now - t:.0f} s (total {now - start:.0f} s)", file=sys.stderr, flush=True)
        if on_item is not None:
            on_item(records)

    for workers in plan.worker_counts:
        item(
            f"data pipeline, {workers} workers",
            partial(
                lambda w: list(reversed(bench_data(device, plan.data_batch_size, w, plan.data_windows))),
                workers,
            ),
        )
    for measure in policy_items(device, plan):
        try:
            item("data pipeline, augmentation policies", measure)
        except Exception as error:  # another module's measurement: report it, measure the rest
            print(
                f"warning: augmentation-policy records failed: {type(error).__name__}: {error}",
                file=sys.stderr,
                flush=True,
            )
    for spec, contenders in plan.groups:
        item(
            f"training {spec.name}, batch {plan.batch_size}",
            partial(
                bench_training,
                spec,
                contenders,
                device,
                plan.batch_size,
                plan.windows,
                compile_backend,
                divergence_check_every,
                compile_mode,
            ),
        )
    return records


def policy_items(device: torch.device, plan: Plan) -> list[Callable[[], list[Record]]]:
    """The augmentation policies' data-pipeline records (``pyramid_lab.bench.policy``), if that
    module is installed."""
    try:
        from pyramid_lab.bench import policy
    except ImportError:
        return []
    return [partial(policy.bench_policies, device, plan.data_batch_size, plan.data_windows)]


def check_targets(records: list[Record], plan: Plan, device: torch.device, num_workers: int) -> None:
    """Attach the targets that apply to this device to their records (never asserted)."""
    cuda = device.type == "cuda"
    h200 = cuda and "H200" in torch.cuda.get_device_name(device)
    native = cuda or native_cpu_bf16()[0]
    for r in records:
        kind = r.name.rsplit("/", 1)[-1]
        reference = r.reference or ""
        if r.name == f"data/ours/workers{num_workers}" and not cuda:
            r.target, r.passed = f">= {DATA_SPEEDUP:g}x torchvision", r.ratio >= DATA_SPEEDUP
        elif kind == "lightning" and reference.endswith("/plain"):
            r.target, r.passed = f">= {LIGHTNING_RATIO:g}x plain", r.ratio >= LIGHTNING_RATIO
        elif r.details.get("precision", "").startswith("bf16") and reference.endswith("fp32/lightning"):
            if not cuda and native:
                r.target, r.passed = f">= {BF16_SPEEDUP:g}x fp32 (native bf16)", r.ratio >= BF16_SPEEDUP
            elif not cuda:
                r.target = "none: emulated bf16 (no AMX/AVX512-BF16)"
        elif r.details.get("compile"):
            r.target = f"info: compile {r.details['compile_s']:.0f} s"
        elif kind == "lightning-sam":
            r.target = "info: ~0.5x SGD expected"
        if (
            h200
            and not plan.tiny
            and plan.batch_size == 256
            and kind == "lightning"
            and r.details.get("model") == STUDY_MODEL.name
            and r.details["precision"].startswith("bf16")
        ):
            r.target = (r.target + ", " if r.target else "") + f">= {H200_IMAGES_PER_S:,} img/s (H200)"
            r.passed = (r.passed is not False) and r.images_per_s >= H200_IMAGES_PER_S


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
    ]
    if header.get("cpu_bf16"):
        lines.append(f"cpu bf16: {header['cpu_bf16']}")
    lines += [
        "",
        (
            f"{'measurement':<{width}}{'images/s':>11} {'spread':>8}{'batch':>6}{'ratio':>9}"
            f" {'spread':>8} {'to':<14}{'peak MB':>9}  {'target':<{target_width}}result"
        ),
    ]
    for r, name in zip(records, names):
        ref = (
            ""
            if r.reference is None
            else (
                r.reference.split("/")[1]
                if r.reference.startswith("data/torchvision/")
                else r.reference.rsplit("/", 1)[-1]
                if r.reference.startswith("data/")
                else r.reference.split("/", 2)[-1]
            )
        )
        ratio = "" if r.ratio is None else f"{r.ratio:.3f}x"
        ratio_spread = r.details.get("ratio_spread")
        ratio_spread = "" if ratio_spread is None else f"{ratio_spread:.1%}"
        spread = "" if r.spread is None else f"{r.spread:.1%}"
        memory = "" if r.peak_memory_mb is None else f"{r.peak_memory_mb:.0f}"
        result = {True: "PASS", False: "FAIL", None: ""}[r.passed]
        lines.append(
            f"{name:<{width}}{r.images_per_s:>11,.1f} {spread:>8}{r.batch_size:>6}{ratio:>9}"
            f" {ratio_spread:>8} {ref:<14}{memory:>9}  {r.target or '':<{target_width}}"
            f"{result}".rstrip()
        )
    kinds = sorted({r.memory for r in records})
    lines += [
        "",
        "images/s: median of the timed windows; spread: (max - min) / median over them. "
        "ratio: median of the window-by-window ratios to the configuration named under 'to', "
        "timed in turn with it (A, B, B, A, ...); its spread likewise.",
        f"peak MB (over the warm-up steps): {'; '.join(kinds)}."
        + (" Clocks read after a device synchronisation." if header["device"] == "cuda" else ""),
    ]
    if any(r.details.get("clock") == "cpu" for r in records):
        lines.append("--clock cpu: images per second of this process's CPU time, not of wall time.")
    compiled = [r for r in records if r.details.get("compile_s") is not None]
    for r in compiled:
        lines.append(
            f"{r.name}: compile {r.details['compile_s']:.1f} s (first step "
            f"{r.details['first_step_s']:.1f} s less a steady step), not in images/s."
        )
    return "\n".join(lines)


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str] | None = None) -> list[Record]:
    args = parser().parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        _fail("--device cuda but torch.cuda.is_available() is False; use --device cpu")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    for flag, value, least in (
        ("--num-workers", args.num_workers, 0),
        ("--batch-size", args.batch_size, 1),
        ("--windows", args.windows, 1),
        ("--threads", args.threads, 1),
        ("--divergence-check-every", args.divergence_check_every, 1),
    ):
        if value is not None and value < least:
            _fail(f"{flag}={value} must be an integer >= {least}")
    if args.window_s is not None and not args.window_s > 0:
        _fail(f"--window-s={args.window_s} must be > 0 (seconds)")
    if args.compile_mode not in COMPILE_MODES:
        _fail(f"--compile-mode {args.compile_mode} unknown; choose from {', '.join(COMPILE_MODES)}")
    if args.quick and args.plan not in (None, "quick"):
        _fail(f"--quick and --plan {args.plan} contradict; give one")
    if args.out and not args.out.resolve().parent.is_dir():  # fail now, not after the run
        _fail(f"--out {args.out}: folder {args.out.resolve().parent} does not exist")
    plan_name = "quick" if args.quick else args.plan or ("gpu" if device.type == "cuda" else "cpu")
    if args.clock == "cpu" and device.type == "cuda":
        _fail("--clock cpu measures host CPU time, not GPU work; use --clock wall with cuda")

    if args.threads:
        torch.set_num_threads(args.threads)
    _quiet()
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
    header = hardware(device)
    if device.type == "cpu":
        header["cpu_bf16"] = native_cpu_bf16()[1]
    w = plan.windows
    header["plan"] = (
        f"{plan.name}{' (tiny)' if plan.tiny else ''}: training batch {plan.batch_size}, "
        f"{w.count} windows of ~{w.window_s:g} s {w.clock} clock (>= {w.min_steps} "
        f"steps) after "
        f"{w.warmup} warm-up steps, divergence check every {args.divergence_check_every}"
    )
    print(f"pyramid_lab.bench on {header['device_name']} ({header['plan']})", file=sys.stderr)

    def save(records: list[Record]) -> None:
        if args.out:
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


def _quiet() -> None:
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)  # no per-fit banners
    logging.getLogger("lightning_fabric").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="pytorch_lightning|lightning_fabric")
    warnings.filterwarnings(
        "ignore",
        message=".*(does not have many workers|max_epochs|val_dataloader|GPU available but not used).*",
    )
