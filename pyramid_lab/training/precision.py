"""``trainer.precision=auto``: bf16 mixed precision on CPUs that compute bf16 natively, fp32 elsewhere.

On an x86 CPU with AMX (``amx_bf16``) or AVX512-BF16 (``avx512_bf16``), oneDNN runs bf16
convolutions and matrix products in hardware, and ``bf16-mixed`` (``torch.autocast("cpu",
dtype=torch.bfloat16)``) is the faster choice. Without them bf16 is emulated through fp32 and
slower: a training step at about 0.3x fp32's on an AMD EPYC with AVX2 only (``python -m
pyramid_lab.bench --quick``, the README's Speed section), so ``auto`` keeps fp32 there; an EPYC
with ``avx512_bf16`` (Zen 4 on) gets bf16. An explicit precision (``trainer.precision=32-true``,
``bf16-mixed``, ...) is always used as given. What a run used is recorded in its ``metrics.json``
(``precision``, ``cpu_bf16``: pyramid_lab.runs.environment).
"""

from __future__ import annotations

import functools
import logging
import re
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

log = logging.getLogger(__name__)

AUTO = "auto"
# Linux's names for the CPU features (arch/x86/include/asm/cpufeatures.h), as /proc/cpuinfo lists
# them: AMX's bf16 tile instructions and AVX-512's bf16 dot products and conversions.
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
_CPUINFO = Path("/proc/cpuinfo")


def cpu_bf16_flags(cpuinfo: str | None = None) -> list[str]:
    """The native-bf16 features of this CPU, of ``NATIVE_BF16_FLAGS``; empty when it has none.

    Reads the ``flags`` line of ``/proc/cpuinfo`` (Linux); elsewhere asks the cpuinfo library
    that PyTorch ships (``torch.cpu._is_amx_tile_supported``, ``_is_avx512_bf16_supported``).

    Args:
        cpuinfo: the text of ``/proc/cpuinfo`` (for tests); ``None`` reads the file.
    """
    if cpuinfo is None:
        try:
            cpuinfo = _CPUINFO.read_text()
        except OSError:
            return _torch_bf16_flags()
    match = re.search(r"^flags\s*:(.*)$", cpuinfo, re.MULTILINE)
    flags = set(match.group(1).split()) if match else set()
    return [flag for flag in NATIVE_BF16_FLAGS if flag in flags]


def _torch_bf16_flags() -> list[str]:
    import torch

    checks = {"amx_bf16": "_is_amx_tile_supported", "avx512_bf16": "_is_avx512_bf16_supported"}
    return [flag for flag, name in checks.items() if getattr(torch.cpu, name, lambda: False)()]


@functools.cache
def native_cpu_bf16() -> tuple[bool, str]:
    """Whether this CPU computes bf16 natively, and why, in words (read once per process)."""
    import torch

    flags = cpu_bf16_flags()
    capability = torch.backends.cpu.get_cpu_capability()  # the ATen kernels' ISA, e.g. AVX512
    if flags:
        return True, f"native bf16 ({', '.join(flags)}; ATen {capability})"
    return False, f"no native bf16 (no {' or '.join(NATIVE_BF16_FLAGS)}; ATen {capability})"


def runs_on_cpu(accelerator: str | Any) -> bool:
    """Whether Lightning will train on the CPU for this ``trainer.accelerator`` setting."""
    if not isinstance(accelerator, str):
        return False  # an Accelerator instance: not ours to second-guess
    if accelerator == "cpu":
        return True
    if accelerator != "auto":
        return False
    from pytorch_lightning.accelerators import CUDAAccelerator, MPSAccelerator

    return not (CUDAAccelerator.is_available() or MPSAccelerator.is_available())


def resolve_precision(precision: str | int | None, accelerator: str | Any = "auto") -> str | int | None:
    """The Lightning precision for a ``trainer.precision`` setting.

    Args:
        precision: ``"auto"``, or anything Lightning accepts (returned unchanged).
        accelerator: ``trainer.accelerator`` (``"cpu"``, ``"gpu"``, ``"auto"``, ...).

    Returns:
        For ``"auto"``: ``"bf16-mixed"`` when training on a CPU with native bf16 (AMX or
        AVX512-BF16), else ``"32-true"`` (GPUs: ``trainer=gpu`` asks for bf16-mixed explicitly).
        The choice is logged once per process.
    """
    if precision != AUTO:
        return precision
    if runs_on_cpu(accelerator):
        native, why = native_cpu_bf16()
        choice = "bf16-mixed" if native else "32-true"
        _log_once(
            f"trainer.precision=auto: {choice} on this CPU, {why}; trainer.precision=<value> overrides it"
        )
    else:
        choice = "32-true"
        _log_once(
            f"trainer.precision=auto: 32-true on accelerator {accelerator!r} (trainer=gpu for bf16-mixed)"
        )
    return choice


@functools.cache
def _log_once(message: str) -> None:
    log.info(message)


def make_trainer(
    precision: str | int | None = AUTO, accelerator: str | Any = "auto", **kwargs: Any
) -> pl.Trainer:
    """``pytorch_lightning.Trainer`` with ``precision`` resolved by ``resolve_precision``: the
    ``_target_`` of ``conf/trainer/default.yaml``, so every ``trainer.*`` setting passes through.
    """
    return pl.Trainer(precision=resolve_precision(precision, accelerator), accelerator=accelerator, **kwargs)
