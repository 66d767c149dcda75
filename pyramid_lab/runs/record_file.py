"""The run record's file, ``metrics.json``, in plain Python: what runs write and reports read.

Kept free of torch and Lightning, so that reading runs (pyramid_lab.report, the sweep summary)
starts in well under a second. The Lightning callback that keeps it up to date during a run is
:class:`pyramid_lab.runs.recorder.RunRecord`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pyramid_lab.runs.atomic import atomic_write

RECORD_NAME = "metrics.json"
# running while it trains; then how it ended. pruned: stopped early by a search's pruner.
STATUSES = ("running", "completed", "failed", "diverged", "interrupted", "pruned")


def write_record(path: Path, data: dict[str, Any]) -> None:
    """Write a record (or any JSON document) atomically: a reader never sees half of it."""
    atomic_write(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def read_record(run_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / RECORD_NAME).read_text())


def latest_completed(record: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The record a report should use, and a note when that is not the latest attempt.

    A rerun into a run folder that failed (or was interrupted) after an earlier attempt completed
    leaves the folder's record saying how the rerun ended; the earlier result is still in
    ``attempts``. This returns the record as its latest completed attempt left it (that attempt's
    status, epochs and final metrics; the history up to its last epoch) with a one-line note saying
    so, or the record itself and None when its latest attempt completed or none ever did.
    """
    if not isinstance(record, dict) or not isinstance(record.get("attempts"), list):
        return record, None
    attempts = [a for a in record["attempts"] if isinstance(a, dict)]
    done = [a for a in attempts if a.get("status") == "completed"]
    if record.get("status") == "completed" or not done:
        return record, None
    chosen = done[-1]
    view = {k: v for k, v in record.items() if "/" not in k and k not in ("error", "resumed_from")}
    view.update(
        {k: v for k, v in chosen.items() if k not in ("attempt", "started", "ended") and v is not None}
    )
    epochs = chosen.get("epochs") or 0
    view["history"] = [h for h in record.get("history") or [] if (h.get("epoch") or 0) <= epochs]
    latest = f"the latest attempt ({len(attempts)}) {record.get('status')}"
    if record.get("error"):
        latest += f": {record['error']}"
    ended = f", ended {chosen['ended']}" if chosen.get("ended") else ""
    return view, f"attempt {chosen.get('attempt')} of {len(attempts)} (completed{ended}); {latest}"
