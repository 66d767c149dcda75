"""Hydra callbacks: an output folder that cannot be written stops the run before it starts, and
a sweep ends with the list of jobs that did not complete.

Jobs record their own failures in metrics.json and return, so one bad job never stops the rest;
this callback then reads every job's record and makes the sweep's exit status non-zero when any
job failed, diverged, was interrupted or left no record.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from pyramid_lab.errors import exit_with_error
from pyramid_lab.runs.record_file import RECORD_NAME, read_record


def job_statuses(sweep_dir: Path) -> dict[str, tuple[str, str]]:
    """``{job folder: (status, error)}`` for every job folder (a numbered subfolder)."""
    statuses = {}
    for job_dir in sorted((p for p in sweep_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)):
        try:
            record = read_record(job_dir)
            statuses[job_dir.name] = (record.get("status", "unknown"), record.get("error", ""))
        except (OSError, ValueError) as error:
            statuses[job_dir.name] = ("missing", f"no readable {RECORD_NAME}: {error}")
    return statuses


class SweepSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        statuses = job_statuses(sweep_dir)
        # A search's pruned trials stopped as planned: not a failure of the sweep.
        bad = {job: s for job, s in statuses.items() if s[0] not in ("completed", "pruned")}
        print(f"sweep {sweep_dir}: {len(statuses) - len(bad)} of {len(statuses)} jobs completed")
        for job, (status, error) in bad.items():
            print(f"  job {job}: {status}: {error}")
        if bad:
            sys.exit(1)


def check_writable(setting: str, folder: str) -> None:
    """Exit with one line when ``folder`` cannot be created or written (before Hydra tries)."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".pyramid_lab_write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        exit_with_error(f"{setting}={folder} is not a writable folder ({error.strerror}); choose another")


class WritableOutput(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_writable("hydra.run.dir", config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_writable("hydra.sweep.dir", config.hydra.sweep.dir)
