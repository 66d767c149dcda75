"""One TensorBoard tree for all runs: ``tensorboard --logdir logs`` compares a whole sweep.

Each run keeps its event files in its own folder (``<run>/tensorboard``, so a resumed run appends
to the same curves) and gets a link ``logs/<task>/<date>_<time>[_job<n>]_<overrides>`` to them;
TensorBoard follows links and names the run by the link.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities.model_summary import ModelSummary

# Overrides that say where or how big a run is, not what it trains: not part of its name.
_NOT_IN_NAME = ("hydra.", "hydra/", "paths.", "experiment=", "scale=", "logger", "~", "+trainer.enable")


def run_label(run_dir: Path, overrides: list[str]) -> str:
    parts = run_dir.resolve().parts
    when = f"{parts[-3]}_{parts[-2]}_job{parts[-1]}" if parts[-1].isdigit() else f"{parts[-2]}_{parts[-1]}"
    swept = [o for o in overrides if not o.startswith(_NOT_IN_NAME)]
    return "_".join([when, *swept]).replace("/", "-")


def link_into_log_tree(event_dir: Path, log_dir: Path, task_name: str, label: str) -> Path:
    link = log_dir / task_name / label
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        os.symlink(event_dir.resolve(), link, target_is_directory=True)
    return link


def log_model_summary(loggers: list[Any], module: Any) -> None:
    summary = str(ModelSummary(module, max_depth=2))
    for logger in _tensorboards(loggers):
        logger.experiment.add_text("model/summary", f"```\n{summary}\n```")


def log_hparams_with_results(loggers: list[Any], params: dict[str, Any], record: dict[str, Any]) -> None:
    """The run's settings in TensorBoard's HPARAMS tab, with its final numbers as the metrics."""
    metrics = {
        f"hp/{k.replace('/', '_')}": record[k]
        for k in ("test/acc", "val/acc_best", "test/loss")
        if k in record
    }
    for logger in _tensorboards(loggers):
        logger.log_hyperparams(params, metrics=metrics)
        logger.finalize("success")  # the trainer closed its writer after testing: flush this one


def _tensorboards(loggers: list[Any]) -> list[TensorBoardLogger]:
    return [logger for logger in loggers if isinstance(logger, TensorBoardLogger)]
