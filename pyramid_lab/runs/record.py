"""The metrics.json format in plain Python: what the run record writes and reports read.

Kept free of torch and Lightning, so that reading runs (pyramid_lab.report, the sweep summary)
starts in well under a second.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

RECORD_NAME = "metrics.json"
STATUSES = ("running", "completed", "failed", "diverged", "interrupted")


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


def read_record(run_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / RECORD_NAME).read_text())
