"""What one bench run measures (the plans), in what order (``run``), and the targets it checks."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

import torch

from pyramid_lab.bench.cli import PLANS
from pyramid_lab.bench.input_pipeline import bench_data, bench_policies
from pyramid_lab.bench.interleave import Windows
from pyramid_lab.bench.loops import Contender, ModelSpec, Workload, bench_training, device_batches
from pyramid_lab.bench.timing import Record
from pyramid_lab.models.pyramidnet import PyramidNet, pyramidnet196_a48
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
TINY_WINDOWS = Windows(warmup=2, window_s=0.01, count=3, min_steps=1)
H200_IMAGES_PER_S = 25_000  # pyramidnet196_a48 + ShakeDrop, batch 256, bf16 (the goal)
DATA_SPEEDUP = 10.0  # our pipeline against torchvision's, per image, on a CPU
LIGHTNING_RATIO = 0.95  # Lightning's training step within 5% of the plain loop
BF16_SPEEDUP = 1.5  # bf16 (+ channels_last) against fp32 on a CPU with native bf16

Groups = list[tuple[ModelSpec, list[Contender]]]


@dataclass(frozen=True)
class Plan:
    """What one run measures: the data pipeline at ``data_batch_size`` for each of
    ``worker_counts`` (timed in ``data_windows``), then one interleaved training group per
    ``(model, contenders)`` at ``batch_size`` (timed in ``windows``)."""

    name: str
    groups: Groups
    batch_size: int
    windows: Windows
    data_batch_size: int
    data_windows: Windows
    worker_counts: list[int]
    tiny: bool = False


def _lightning_vs_plain(mode: str) -> list[Contender]:
    return [Contender(mode, "plain"), Contender(mode, reference=f"{mode}/plain")]


def _groups(name: str, best: str) -> Groups:
    """The training groups of plan ``name``; ``best``: the mode compiled is compared in."""
    if name == "gpu":
        return [
            (
                STUDY_MODEL,
                [
                    *_lightning_vs_plain("fp32"),
                    Contender("bf16-cl", "plain", reference="fp32/plain"),
                    Contender("bf16-cl", reference="bf16-cl/plain"),
                    Contender("bf16-cl-compile", reference="bf16-cl/lightning"),
                    Contender("bf16-cl", sam=True, reference="bf16-cl/lightning"),
                    Contender("bf16-cl", datamodule=True, reference="bf16-cl/lightning"),
                ],
            )
        ]
    precisions = [
        *_lightning_vs_plain("fp32"),
        Contender("bf16", reference="fp32/lightning"),
        Contender("bf16-cl", reference="fp32/lightning"),
        Contender(f"{best}-compile", reference=f"{best}/lightning"),
    ]
    if name == "quick":
        return [(STAND_INS[0], precisions)]
    more = [
        Contender(best, sam=True, reference=f"{best}/lightning"),
        Contender(best, datamodule=True, reference=f"{best}/lightning"),
    ]
    return [(STAND_INS[0], precisions + more), (STAND_INS[1], _lightning_vs_plain("fp32"))]


def _timing(name: str, cuda: bool) -> tuple[Windows, int, Windows, set[int]]:
    """Plan ``name``'s training windows and batch, and its data windows and worker counts."""
    if name == "gpu":
        # cuDNN autotuning at the first steps; 1 s windows hold tens of steps at batch 256.
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 8
        return (
            Windows(warmup=3, window_s=1.0, count=5, min_steps=5),
            256,
            Windows(warmup=2, window_s=0.5, count=5, min_steps=3),
            {0, min(8, cpus)},
        )
    # At least ~2 s per window on a CPU: several steps, so a slow step is averaged in. A window of
    # our pipeline holds tens of steps of ~1-3 ms: 7 of 0.4 s keep one stall from deciding the
    # median (with 0.25 s x 5 the window ratios spread 30% to 130% on an idle 2-core CPU). quick:
    # the data pipelines in the main process only (workers start slowly).
    return (
        Windows(warmup=2, window_s=1.0 if cuda else 2.0, count=5, min_steps=2),
        256 if cuda else 32,
        Windows(warmup=3, window_s=0.4, count=7, min_steps=2),
        {0} if name == "quick" else {0, 2},
    )


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
    if name not in PLANS:
        raise ValueError(f"unknown plan {name!r}; choose from {', '.join(PLANS)}")
    cuda = device.type == "cuda"
    if native_bf16 is None:
        native_bf16 = cuda or native_cpu_bf16()[0]
    # On a CPU without native bf16 the compiled mode is compared in fp32, the precision auto picks.
    groups = _groups(name, "bf16-cl" if native_bf16 else "fp32")
    timing, batch, data_timing, workers = _timing(name, cuda)
    if tiny:
        groups = [(TINY_MODELS[i], c) for i, (_, c) in enumerate(groups)]
        timing, data_timing, batch, workers = TINY_WINDOWS, TINY_WINDOWS, 4, {0}
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


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _compile_note(r: Record) -> str:
    compile_s = r.details.get("compile_s")
    return f", compile {compile_s:.1f} s" if compile_s is not None else ""


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

    def data(workers: int) -> list[Record]:
        ours, torchvision = bench_data(device, plan.data_batch_size, workers, plan.data_windows)
        return [torchvision, ours]

    def policies() -> list[Record]:
        try:
            return bench_policies(device, plan.data_batch_size, plan.data_windows)
        except Exception as error:  # informative only: report the failure, measure the rest
            _say(f"warning: augmentation-policy records failed: {type(error).__name__}: {error}")
            return []

    def training(spec: ModelSpec, contenders: list[Contender]) -> list[Record]:
        batches = device_batches(device, plan.batch_size)  # made here: only its group holds them
        work = Workload(spec, device, batches, compile_backend, compile_mode)
        return bench_training(work, contenders, plan.windows, divergence_check_every)

    items: list[tuple[str, Callable[[], list[Record]]]]
    items = [(f"data pipeline, {w} workers", partial(data, w)) for w in plan.worker_counts]
    items.append(("data pipeline, augmentation policies", policies))
    batch = plan.batch_size
    items += [(f"training {s.name}, batch {batch}", partial(training, s, c)) for s, c in plan.groups]
    records: list[Record] = []
    start = time.perf_counter()
    for what, measure in items:
        t = time.perf_counter()
        _say(f"{what} ...")
        new = measure()
        check_targets(new, plan, device, num_workers)
        for r in new:
            _say(f"  {r.name}: {r.images_per_s:,.0f} images/s (spread {r.spread:.0%}){_compile_note(r)}")
        records.extend(new)
        now = time.perf_counter()
        _say(f"  {what}: {now - t:.0f} s (total {now - start:.0f} s)")
        if on_item is not None:
            on_item(records)
    return records


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
