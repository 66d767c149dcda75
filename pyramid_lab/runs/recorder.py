"""The run record kept up to date through a run: ``metrics.json`` in its output folder (the one
file reports and tests read, pyramid_lab.runs.record_file) and the run's state in every checkpoint.

The record is written atomically at the start of a run with status ``running``, after every epoch
with the history so far, and at the end with the final status (``completed``, ``failed``,
``diverged``, ``interrupted``, ``pruned``). A run killed outright therefore still says
``running``: it never looks finished. From the trainer's setup on, it names what the run ran on as
Lightning resolved it (``precision``, ``device``, ``device_count``, ``device_name``, ``torch``,
``lightning``: pyramid_lab.runs.environment).

A rerun into the same folder (a resume, a longer run, ``resume=false``) is a new attempt: the
record's ``attempts`` lists every attempt (status, epochs, error, start and end, final metrics, its
overrides and its config file ``attempts/<n>/config.yaml``, pyramid_lab.runs.folder_config),
carried over from the ``metrics.json`` already there, so no attempt's result is ever lost; an
unreadable ``metrics.json`` is kept aside as ``metrics.json.unreadable-<time>``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from lightning_fabric.utilities.rank_zero import rank_zero_only

from pyramid_lab.runs.environment import environment
from pyramid_lab.runs.record_file import RECORD_NAME, STATUSES, write_record

log = logging.getLogger(__name__)

# Where a checkpoint keeps the run's state (pyramid_lab.runs.checkpoint.read_run_state reads it).
# Fixed strings, not class names: renaming a class must not orphan existing checkpoints.
RECORD_STATE_KEY = "pyramid_lab.run_record"  # Lightning's callback state: the history, resumed
RUN_STATE_KEY = "pyramid_lab.run_state"  # what using the model needs: config, classes, statistics


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
        attempts = earlier_attempts(self.path) if rank_zero_only.rank == 0 else []
        self.earlier = [dict(attempt) for attempt in attempts]  # as the folder's record had them
        attempts.append({"attempt": len(attempts) + 1, "status": "running", "started": _now(), "ended": None})
        self.data: dict[str, Any] = {
            "status": "running",
            "run_dir": str(Path(run_dir).resolve()),
            "overrides": list(overrides),
            **(extra or {}),
            "history": [],
            "attempts": attempts,
        }

    def update(self, **fields: Any) -> None:
        self.data.update(fields)
        self.data["wall_time_s"] = round(self.wall_time_before + time.time() - self.started, 3)
        self._sum_up_attempt()
        if rank_zero_only.rank == 0:  # under DDP every rank runs train(); one writes
            write_record(self.path, self.data)

    def _sum_up_attempt(self) -> None:
        """This attempt's line in ``attempts``: how it stands, and its final metrics once known."""
        attempt = self.data["attempts"][-1]
        status = self.data["status"]
        metrics = {k: v for k, v in self.data.items() if "/" in k and isinstance(v, (int, float))}
        attempt.update(
            status=status,
            ended=None if status == "running" else (attempt.get("ended") or _now()),
            epochs=self.data.get("epochs", 0),
            wall_time_s=round(time.time() - self.started, 3),
            error=self.data.get("error"),
            resumed_from=self.data.get("resumed_from"),
            **metrics,
        )

    @property
    def attempt(self) -> int:
        """This attempt's number (1 for the folder's first)."""
        return self.data["attempts"][-1]["attempt"]

    def note_attempt(self, **fields: Any) -> None:
        """Add ``fields`` to this attempt's line in ``attempts`` (its config file, its overrides,
        ``resume=force`` and what it changed) and write the record."""
        self.data["attempts"][-1].update(fields)
        self.update()

    def finish(self, status: str, error: str | None = None, **fields: Any) -> dict[str, Any]:
        assert status in STATUSES, status
        if error is not None:
            fields["error"] = error
        self.update(status=status, **fields)
        return self.data

    @property
    def state_key(self) -> str:
        return RECORD_STATE_KEY

    def state_dict(self) -> dict[str, Any]:
        # Saved in every checkpoint: a resumed run continues this history.
        return {"history": self.data["history"], "wall_time_s": self.data.get("wall_time_s")}

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # What resuming checks and what mode=test/predict rebuild the model from, without the
        # data set: the config, the model, and the data's class names and pixel statistics.
        data = getattr(trainer, "datamodule", None)
        data_state = data.state_dict() if data is not None else {}
        checkpoint[RUN_STATE_KEY] = {
            "config": self.config,
            "model": self.data.get("model"),
            "params": self.data.get("params"),
            **{key: data_state.get(key) for key in ("classes", "mean", "std")},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.data["history"] = list(state_dict["history"])
        self.wall_time_before = state_dict.get("wall_time_s") or 0.0

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # What the run ran on, as Lightning resolved it (precision=auto -> bf16-mixed or 32-true).
        self.update(**environment(trainer))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = {k: _as_float(v) for k, v in trainer.callback_metrics.items()}
        entry = {"epoch": trainer.current_epoch + 1, **{k: v for k, v in metrics.items() if v is not None}}
        self.data["history"].append(entry)
        self.update(epochs=trainer.current_epoch + 1)


def earlier_attempts(path: Path) -> list[dict[str, Any]]:
    """The attempts a run folder's ``metrics.json`` already records (one for a record written
    before attempts were); an unreadable file is renamed aside, never overwritten."""
    try:
        previous = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as error:
        kept = path.with_name(f"{path.name}.unreadable-{dt.datetime.now():%Y%m%d-%H%M%S}")
        path.replace(kept)
        log.warning("%s could not be read (%s); kept as %s", path, error, kept.name)
        return []
    if not isinstance(previous, dict):
        return []
    attempts = previous.get("attempts")
    if isinstance(attempts, list):
        return [a for a in attempts if isinstance(a, dict)]
    if "status" not in previous:
        return []
    # A record from before attempts were kept: its one attempt, summed up.
    keep = ("status", "epochs", "wall_time_s", "error", "resumed_from")
    return [
        {
            "attempt": 1,
            "started": None,
            "ended": None,
            **{k: v for k, v in previous.items() if k in keep or ("/" in k and isinstance(v, (int, float)))},
        }
    ]


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
