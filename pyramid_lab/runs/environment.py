"""What a run ran on, as its trainer resolved it: metrics.json's ``precision``, ``device``,
``device_count``, ``device_name``, ``cpu_bf16``, ``torch`` and ``lightning`` fields, and the
trackers' ``env/*`` params (pyramid_lab.runs.params).

``precision`` is Lightning's precision plugin's (``trainer.precision``): ``trainer.precision=auto``
shows as what pyramid_lab.training.precision chose for this machine (``bf16-mixed`` on a CPU with
native bf16, else ``32-true``), not as ``auto``.
"""

from __future__ import annotations

import platform
import re
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch


def environment(trainer: pl.Trainer) -> dict[str, Any]:
    """The precision, device and library versions of ``trainer``'s run."""
    device = _device(trainer)
    fields: dict[str, Any] = {
        "precision": str(trainer.precision),
        "device": device.type,
        "device_count": trainer.num_devices * trainer.num_nodes,
        "device_name": _device_name(device),
    }
    if device.type == "cpu":
        from pyramid_lab.training.precision import native_cpu_bf16

        fields["cpu_bf16"] = native_cpu_bf16()[1]
    # str(): torch.__version__ is a TorchVersion, which YAML (CSV's hparams.yaml) writes as an object.
    return {**fields, "torch": str(torch.__version__), "lightning": str(pl.__version__)}


def _device(trainer: pl.Trainer) -> torch.device:
    try:
        return trainer.strategy.root_device
    except Exception:  # a strategy that knows its device only once launched: ask the accelerator
        name = type(trainer.accelerator).__name__.removesuffix("Accelerator").lower()
        return torch.device({"cuda": "cuda", "mps": "mps"}.get(name, "cpu"))


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return _cpu_model() or platform.processor() or platform.machine()
    return device.type


def _cpu_model() -> str | None:
    try:
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    except OSError:
        return None
    return match.group(1).strip() if match else None
