"""Checkpoints that survive a kill: atomic writes, a checkpoint on SIGTERM, and resume checks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from pyramid_lab.errors import ConfigError

LAST = "last.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file in the same folder, flushes it to disk, then
    renames it over the target: a kill at any moment leaves either the old file or the new one."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        try:
            with open(tmp, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


class InterruptCheckpoint(pl.Callback):
    """On SIGTERM (what SLURM and ``kill`` send), a requeue signal or Ctrl-C, saves ``last.ckpt``
    where training stands, so that a rerun resumes there instead of at the last epoch boundary."""

    def __init__(self, dirpath: str | Path) -> None:
        self.path = Path(dirpath) / LAST

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        # SystemExit covers SIGTERM (Lightning's SIGTERMException) and submitit's requeue on USR2.
        if isinstance(exception, (SystemExit, KeyboardInterrupt)) and trainer.state.fn == "fit":
            trainer.save_checkpoint(self.path)


def load_checkpoint_meta(path: Path) -> dict[str, Any]:
    """The parts of a checkpoint that a resume checks, without building anything."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    record = checkpoint.get("callbacks", {}).get("RunRecord", {})
    return {"model": record.get("model"), "params": record.get("params"), "epoch": checkpoint.get("epoch")}


def check_same_model(path: Path, model: str, params: int) -> None:
    """Refuse to resume a run of one model from a checkpoint of another (name both)."""
    saved = load_checkpoint_meta(path)
    if saved["model"] is None:
        return  # not written by pyramid_lab: Lightning's own state-dict check still applies
    if (saved["model"], saved["params"]) != (model, params):
        raise ConfigError(
            f"ckpt_path={path} holds {saved['model']} ({saved['params']:,} parameters) but the "
            f"config builds {model} ({params:,} parameters); use the same model or a new run folder"
        )
