"""Timed windows, interleaved across the configurations of a comparison.

Measured one after the other, two configurations of the same speed differ by whatever the
machine did in between (other jobs, clock boosts, thermal state): on this project's shared 2-core
CPU, back-to-back runs of the same Lightning/plain comparison read 0.95x and then 0.91x. Here each
configuration runs in its own thread, and a scheduler lets exactly one of them run at a time, one
timed window each in turn (A, B, then B, A, ...), so drift hits every configuration alike and the
ratio of window ``r`` of A to window ``r`` of B is a paired measurement.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from pyramid_lab.bench.timing import PeakMemory, Record, synchronize


@dataclass(frozen=True)
class Windows:
    """How a configuration is timed.

    Args:
        warmup: untimed steps first (cuDNN autotuning, compilation, allocator growth); the last
            one's duration sizes the windows. At least 2, so that it is not the first step.
        window_s: target seconds per timed window (a window holds whole steps).
        count: timed windows (the median and spread are over these).
        min_steps: steps per window at least, however slow a step.
        clock: ``"wall"`` (``time.perf_counter``, what a user waits) or ``"cpu"`` (this
            process's CPU time, ``time.process_time``: on a CPU shared with other jobs it leaves
            out the time they hold the cores; meaningless for GPU work).
    """

    warmup: int = 2
    window_s: float = 2.0
    count: int = 5
    min_steps: int = 3
    clock: str = "wall"

    def __post_init__(self) -> None:
        if (
            self.warmup < 2
            or self.count < 1
            or self.min_steps < 1
            or self.window_s <= 0
            or self.clock not in ("wall", "cpu")
        ):
            raise ValueError(
                f"bad Windows {self}: warmup >= 2, count >= 1, min_steps >= 1, "
                "window_s > 0, clock wall or cpu"
            )


class Aborted(Exception):
    """Raised inside a configuration's thread when another configuration of its group failed."""


class Clock:
    """The clock of one configuration: call ``step_starts()`` at the start of every step.

    Warm-up steps are timed one by one (the first holds compilation); then windows of
    ``steps_per_window`` whole steps, each from the start of its first step to the start of the
    step after its last (so whatever runs between steps, hooks and data fetching, counts),
    device-synchronised at both ends. Between windows the clock hands over to the scheduler
    (``pause``), and the next window starts when it is this configuration's turn again.
    """

    def __init__(self, device: torch.device, windows: Windows) -> None:
        self.device, self.plan = device, windows
        self.warmup_marks: list[float] = []
        self.window_times: list[float] = []
        self.steps_per_window: int | None = None
        self.done = False
        self.pause: Callable[[], None] = lambda: None  # set by ``interleave``
        self._window_start: float | None = None
        self._in_window = 0

    def _now(self) -> float:
        synchronize(self.device)
        return time.process_time() if self.plan.clock == "cpu" else time.perf_counter()

    def step_starts(self) -> bool:
        """Mark the start of a step. ``False``: the timing is complete, stop training (the step
        need not run)."""
        if self.done:
            return False
        if len(self.warmup_marks) <= self.plan.warmup:  # warm-up step starts, then the end mark
            self.warmup_marks.append(self._now())
            if len(self.warmup_marks) <= self.plan.warmup:
                return True
            step_s = self.warmup_marks[-1] - self.warmup_marks[-2]
            self.steps_per_window = max(self.plan.min_steps, math.ceil(self.plan.window_s / step_s))
        elif self._in_window < self.steps_per_window:
            self._in_window += 1
            return True
        else:
            self.window_times.append(self._now() - self._window_start)
            if len(self.window_times) == self.plan.count:
                self.done = True
                return False
        self.pause()  # the scheduler runs the other configurations' windows here
        self._window_start, self._in_window = self._now(), 1
        return True

    @property
    def first_step_s(self) -> float | None:
        """Duration of the first step (compilation, autotuning and first allocations)."""
        marks = self.warmup_marks
        return marks[1] - marks[0] if len(marks) > 1 else None


@dataclass
class Result:
    """What ``interleave`` returns per configuration: its clock, its run's return value, and the
    peak memory over its warm-up (``PeakMemory``'s ``mb`` and ``kind``)."""

    clock: Clock
    value: Any = None
    peak_memory_mb: float | None = None
    memory: str = ""
    error: BaseException | None = field(default=None, repr=False)


class _Runner:
    """One configuration's run in its own thread, let go one window at a time."""

    def __init__(self, name: str, run: Callable[[Clock], Any], clock: Clock) -> None:
        self.name, self.run, self.clock = name, run, clock
        self.result = Result(clock)
        self.finished = False
        self.abort = False
        self._go, self._back = threading.Semaphore(0), threading.Semaphore(0)
        clock.pause = self._hand_back
        self._thread = threading.Thread(target=self._main, name=f"bench:{name}", daemon=True)
        self._started = False

    def _main(self) -> None:
        self._go.acquire()
        try:
            if not self.abort:
                self.result.value = self.run(self.clock)
        except BaseException as error:  # re-raised by the scheduler, in the main thread
            self.result.error = error
        finally:
            self.finished = True
            self._back.release()

    def _hand_back(self) -> None:  # in the runner's thread
        self._back.release()
        self._go.acquire()
        if self.abort:
            raise Aborted(self.name)

    def turn(self) -> None:
        """Let the run go on until it pauses (a window or its warm-up is over) or ends."""
        if not self._started:
            self._started = True
            self._thread.start()
        self._go.release()
        self._back.acquire()

    def stop(self) -> None:
        self.abort = True
        if self._started and not self.finished:
            self._go.release()
            self._thread.join()


def interleave(
    runs: dict[str, Callable[[Clock], Any]],
    device: torch.device,
    windows: Windows,
    interleaved: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Result]:
    """Time each ``run(clock)`` (it trains, calling ``clock.step_starts()`` at every step start,
    until that returns ``False``), windows taken in turn.

    Warm-ups run one configuration at a time, each under ``PeakMemory``; then round ``r`` runs
    window ``r`` of every configuration, in the order given on even rounds and reversed on odd ones.
    ``interleaved=False`` runs each
    configuration's windows back to back instead (for DataLoader workers, which would prefetch
    while their configuration waits for its turn).

    Returns:
        ``Result`` per name, in the order given. The first error of any run is re-raised.
    """
    say = progress or (lambda message: None)
    start = time.perf_counter()
    runners = [_Runner(name, run, Clock(device, windows)) for name, run in runs.items()]
    try:
        for c in runners:
            with PeakMemory(device) as memory:
                c.turn()
            c.result.peak_memory_mb, c.result.memory = memory.mb, memory.kind
            _check(c)
            say(
                f"warmed up {c.name} ({c.clock.steps_per_window} steps per window) "
                f"at {time.perf_counter() - start:.0f} s"
            )
            if not interleaved:
                while not c.finished:
                    c.turn()
                    _check(c)
        for r in range(windows.count if interleaved else 0):
            # A, B, B, A, A, B, ...: every configuration goes first as often as last, so neither a
            # steady drift nor what the previous window left behind (caches, clocks) favours one.
            for c in runners if r % 2 == 0 else runners[::-1]:
                c.turn()
                _check(c)
            say(f"window {r + 1}/{windows.count} of each at {time.perf_counter() - start:.0f} s")
        for c in runners:
            if not c.finished:
                raise RuntimeError(f"{c.name} did not stop after its last window")
    finally:
        for c in runners:
            c.stop()
    return {c.name: c.result for c in runners}


def _check(c: _Runner) -> None:
    if c.result.error is not None:
        raise c.result.error
    if c.finished and not c.clock.done:
        raise RuntimeError(
            f"{c.name} stopped after {len(c.clock.window_times)} of {c.clock.plan.count} timed windows"
        )


def summary(rates: list[float]) -> tuple[float, float]:
    """(median, spread): spread = (max - min) / median, a fraction."""
    median = statistics.median(rates)
    return median, (max(rates) - min(rates)) / median


def to_record(
    name: str,
    device: torch.device,
    result: Result,
    batch_size: int,
    group: str,
    interleaved: bool = True,
    **details: Any,
) -> Record:
    """The ``Record`` of one configuration of a group timed by ``interleave``."""
    clock = result.clock
    rates = [batch_size * clock.steps_per_window / t for t in clock.window_times]  # images/s
    median, spread = summary(rates)
    return Record(
        name=name,
        device=device.type,
        images_per_s=median,
        batch_size=batch_size,
        peak_memory_mb=result.peak_memory_mb,
        memory=result.memory,
        spread=spread,
        details={
            **details,
            "group": group,
            "interleaved": interleaved,
            "steps_per_window": clock.steps_per_window,
            "warmup_steps": clock.plan.warmup,
            "first_step_s": clock.first_step_s,
            "clock": clock.plan.clock,
            "times_s": clock.window_times,
            "window_images_per_s": rates,
        },
    )


def against_the_first(
    runs: dict[str, Callable[[Clock], Any]],
    device: torch.device,
    windows: Windows,
    batch_size: int,
    group: str,
    interleaved: bool = True,
    **details: Any,
) -> list[Record]:
    """``interleave`` ``runs``; their records in the order given, each compared with the first."""
    results = interleave(runs, device, windows, interleaved=interleaved)
    first, *others = (
        to_record(name, device, results[name], batch_size, group, interleaved, **details) for name in runs
    )
    return [first, *(compare(record, first) for record in others)]


def compare(record: Record, reference: Record) -> Record:
    """Set ``record``'s ratio to ``reference``: paired window by window when both were interleaved
    in the same group (``ratio_spread`` then says how much the pairs disagree)."""
    mine, theirs = record.details, reference.details
    record.reference = reference.name
    paired = (
        mine.get("interleaved")
        and theirs.get("interleaved")
        and mine.get("group") == theirs.get("group")
        and len(mine["window_images_per_s"]) == len(theirs["window_images_per_s"])
    )
    if paired:
        pairs = [a / b for a, b in zip(mine["window_images_per_s"], theirs["window_images_per_s"])]
        record.ratio, record.details["ratio_spread"] = summary(pairs)
        record.details["window_ratios"] = pairs
    else:
        record.ratio = record.images_per_s / reference.images_per_s
        record.details.pop("ratio_spread", None)
        record.details.pop("window_ratios", None)
    return record
