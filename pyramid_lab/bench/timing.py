"""What every measurement shares: the record it produces, device-synchronised clocks, peak memory
and the hardware header."""

from __future__ import annotations

import ctypes
import datetime
import os
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import torch

_PROC_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass
class Record:
    """One measurement, as the JSON output holds it.

    Args:
        name: what was measured, e.g. ``train/pyramidnet110_a48/fp32/lightning``.
        device: ``cpu`` or ``cuda``.
        images_per_s: median over the timed windows.
        batch_size: images per batch.
        spread: (max - min) / median of the windows' images/s, a fraction (0.04: 4%).
        peak_memory_mb: see ``memory``; ``None`` where it could not be read.
        memory: what ``peak_memory_mb`` measures (CUDA allocator peak or CPU RSS rise).
        reference: the ``name`` of the record this one is compared with, if any.
        ratio: this one's speed over the reference's (> 1: this one is faster): the median of the
            per-window ratios where the two were interleaved (window r against window r), else
            the ratio of the medians.
        target: the goal this record is checked against, in words; ``passed`` is the verdict.
        details: settings, the raw window times (s), steps per window, and for a comparison
            ``ratio_spread`` ((max - min) / median of the per-window ratios).
    """

    name: str
    device: str
    images_per_s: float
    batch_size: int
    peak_memory_mb: float | None
    memory: str
    spread: float | None = None
    reference: str | None = None
    ratio: float | None = None
    target: str | None = None
    passed: bool | None = None
    details: dict[str, Any] = field(default_factory=dict)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock read after it counts that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _status_kb(key: str) -> int:
    match = re.search(rf"^{key}:\s+(\d+) kB", _PROC_STATUS.read_text(), re.MULTILINE)
    if match is None:
        raise OSError(f"{key} not in {_PROC_STATUS}")
    return int(match.group(1))


class PeakMemory:
    """Peak memory of a block, in MiB, in ``.mb`` after it; what it measures is in ``.kind``.

    CUDA: ``torch.cuda.max_memory_allocated`` (the caching allocator's peak, everything resident
    on the device included). CPU: how far this process's peak resident set rose above its size at
    the start (Linux: the peak is reset through ``/proc/self/clear_refs`` and read as ``VmHWM``;
    elsewhere ``getrusage``'s lifetime peak, so only a rise above every earlier block shows).
    DataLoader worker processes are not counted.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.mb: float | None = None
        self.kind = (
            "cuda max_memory_allocated" if device.type == "cuda" else "cpu peak RSS rise (this process)"
        )
        self._start_kb = 0
        self._hwm = False

    def __enter__(self) -> Self:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        _trim_heap()
        try:
            _CLEAR_REFS.write_text("5")  # 5: reset the peak RSS (VmHWM) to the current RSS
            self._start_kb, self._hwm = _status_kb("VmRSS"), True
        except OSError:
            import resource

            self._start_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mb = torch.cuda.max_memory_allocated(self.device) / 2**20
            return
        if self._hwm:
            peak_kb = _status_kb("VmHWM")
        else:
            import resource

            peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        self.mb = max(peak_kb - self._start_kb, 0) / 1024


def _trim_heap() -> None:
    # Give freed heap pages back to the OS, so that an earlier block's leftovers do not hide this
    # block's allocations inside an already-high RSS.
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def hardware(device: torch.device) -> dict[str, Any]:
    """The header of a run: where and when it was measured, with what."""
    import pytorch_lightning as pl

    cpu = platform.processor() or platform.machine()
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
        cpu = match.group(1).strip() if match else cpu
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info: dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu,
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "pytorch_lightning": pl.__version__,
        "python": platform.python_version(),
        "host": platform.node(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["device_memory_gb"] = round(props.total_memory / 2**30, 1)
        info["cudnn"] = torch.backends.cudnn.version()
    return info
