"""One TensorBoard tree for all runs: ``tensorboard --logdir logs`` compares a whole sweep.

Each run keeps its event files in its own folder (``<run>/tensorboard``, so a resumed run appends
to the same curves) and gets a link ``logs/<task>/<date>_<time>[_job<n>]_<overrides>`` to them;
TensorBoard follows links and names the run by the link. A link name is one path component, at
most 255 bytes on every common file system: a long override list (a search trial's dozen sampled
values) is cut to a readable prefix plus a hash of the whole list.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities.model_summary import ModelSummary

# Overrides that say where or how big a run is, not what it trains: not part of its name. The
# search's own ``search.*`` overrides (its storage URL, study name and trial number) say where the
# trial reports, and its ``row`` is its number; the trial number is already the job number of the name.
_NOT_IN_NAME = (
    "hydra.",
    "hydra/",
    "paths.",
    "experiment=",
    "scale=",
    "logger",
    "trainer.enable",
    "search.",
    "row=",
)
# (deletions such as ``~callbacks.progress_bar`` are left out too)
# Bytes of a link name (the limit of a path component is 255): short enough to read in
# TensorBoard's run list.
MAX_LABEL_BYTES = 120
_HASH_CHARS = 8


def run_label(run_dir: Path, overrides: list[str]) -> str:
    """The run's name in the log tree: ``<date>_<time>[_job<n>]_<what its overrides set>``.

    Names differ where the overrides differ: a name that had to be cut or changed (``/`` is not
    allowed in a file name) ends in a hash of the full override list. Never over
    ``MAX_LABEL_BYTES`` bytes.
    """
    parts = run_dir.resolve().parts
    when = f"{parts[-3]}_{parts[-2]}_job{parts[-1]}" if parts[-1].isdigit() else f"{parts[-2]}_{parts[-1]}"
    swept = [o for o in overrides if not o.startswith("~") and not o.lstrip("+").startswith(_NOT_IN_NAME)]
    full = "_".join([when, *swept])
    label = _file_name(full)
    if label == full and len(label.encode()) <= MAX_LABEL_BYTES:
        return label
    return _with_hash(label, "\0".join([when, *swept]))


def _with_hash(label: str, key: str) -> str:
    digest = hashlib.sha256(key.encode()).hexdigest()[:_HASH_CHARS]
    return _cut(label, MAX_LABEL_BYTES - _HASH_CHARS - 1) + "_" + digest


def _file_name(text: str) -> str:
    """``text`` as one path component: no separators, no control characters, no leading dot."""
    text = "".join("-" if ch in "/\\" or not ch.isprintable() else ch for ch in text)
    return text.lstrip(".") or "run"


def _cut(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` of at most ``max_bytes`` bytes in UTF-8 (whole characters)."""
    return text.encode()[:max_bytes].decode(errors="ignore")


def link_into_log_tree(event_dir: Path, log_dir: Path, task_name: str, label: str) -> Path:
    """Link ``logs/<task>/<label>`` to the run's event folder (kept when it is already there).

    A name already taken by another run's folder (two run folders whose last parts and overrides
    agree) gets a hash of this run's folder instead, so neither run's curves are hidden.
    """
    target = event_dir.resolve()
    link = log_dir / task_name / label
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() and Path(os.readlink(link)) != target:
        link = link.with_name(_with_hash(label, str(target)))
    if not link.is_symlink():
        os.symlink(target, link, target_is_directory=True)
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
