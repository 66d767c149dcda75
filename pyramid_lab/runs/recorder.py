"""The run record: ``metrics.json`` in a run's output folder, the one file reports and tests read.

It is written atomically (temporary file, then rename) at the start of a run with status
``running``, after every epoch with the history so far, and at the end with the final status:
``completed``, ``failed``, ``diverged`` or ``interrupted``. A run killed outright therefore still
says ``running``: it never looks finished.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from lightning_fabric.utilities.rank_zero import rank_zero_only

from pyramid_lab.record_file import RECORD_NAME, STATUSES, read_record, write_json_atomic

__all__ = ["RECORD_NAME", "STATUSES", "RunRecord", "read_record", "write_json_atomic"]


def _as_float(value: Any) -> float | None:
    # NaN and inf are kept as they are: in a diverged run they are the evidence.
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class RunRecord(pl.Callback):
    """Keeps ``metrics.json`` up to date through a run.

    Args:
        run_dir: the run's output folder.
        overrides: the command-line overrides that made the run.
        extra: fixed fields (e.g. the sweep row the run belongs to).
    """

    def __init__(self, run_dir: str | Path, overrides: list[str], extra: dict[str, Any] | None = None):
        self.path = Path(run_dir) / RECORD_NAME
        self.started = time.time()
        self.wall_time_before = 0.0  # time spent before a resume
        self.config: dict[str, Any] | None = None  # the composed config, kept in checkpoints
        self.data: dict[str, Any] = {
            "status": "running",
            "run_dir": str(Path(run_dir).resolve()),
            "overrides": list(overrides),
            **(extra or {}),
            "history": [],
        }

    def update(self, **fields: Any) -> None:
        self.data.update(fields)
        self.data["wall_time_s"] = round(self.wall_time_before + time.time() - self.started, 3)
        if rank_zero_only.rank == 0:  # under DDP every rank runs train(); one writes
            write_json_atomic(self.path, self.data)

    def finish(self, status: str, error: str | None = None, **fields: Any) -> dict[str, Any]:
        assert status in STATUSES, status
        if error is not None:
            fields["error"] = error
        self.update(status=status, **fields)
        return self.data

    def state_dict(self) -> dict[str, Any]:
        # Saved in every checkpoint: a resumed run continues this history and checks the model.
        state = {key: self.data.get(key) for key in ("model", "params", "history", "wall_time_s")}
        return {**state, "config": self.config}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.data["history"] = list(state_dict["history"])
        self.wall_time_before = state_dict.get("wall_time_s") or 0.0

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = {k: _as_float(v) for k, v in trainer.callback_metrics.items()}
        entry = {"epoch": trainer.current_epoch + 1, **{k: v for k, v in metrics.items() if v is not None}}
        self.data["history"].append(entry)
        self.update(epochs=trainer.current_epoch + 1)
