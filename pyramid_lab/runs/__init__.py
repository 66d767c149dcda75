"""A run's files: the run record, checkpoints, atomic writes, the run lock, the TensorBoard tree, and
the test predictions file and pictures that training writes and the report reads.

The names below are importable from ``pyramid_lab.runs`` (the configs' ``_target_`` paths), but
loaded on first use: reading records (``pyramid_lab.runs.record_file``, the report, the sweep summary)
must not import torch or Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AtomicCheckpointIO": "pyramid_lab.runs.checkpoint",
    "InterruptCheckpoint": "pyramid_lab.runs.interrupt",
    "RunRecord": "pyramid_lab.runs.recorder",
    "read_record": "pyramid_lab.runs.record_file",
    "atomic_write": "pyramid_lab.runs.atomic",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pyramid_lab.runs' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
