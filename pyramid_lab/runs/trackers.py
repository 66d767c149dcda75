"""What every tracker gets beside the metrics Lightning logs: the run's recipe as params
(pyramid_lab.runs.params), its label as the run's name, and its pictures as artifacts.

TensorBoard takes the params at the end, with the final numbers (runs/log_tree.py's
``log_hparams_with_results``: its HPARAMS tab needs both in one record); the other trackers take
them at the start, so that a run that fails or diverges still says what it was.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import MLFlowLogger, TensorBoardLogger, WandbLogger

log = logging.getLogger(__name__)

# The run folder's pictures: confusion.png and confident_wrong.png (pyramid_lab.training.predictions).
PICTURES = "*.png"


def log_recipe(loggers: list[Any], params: Mapping[str, Any], label: str) -> None:
    """Give every tracker but TensorBoard the run's params, and MLflow and W&B its label as name
    (unless the config names the run: ``logger.mlflow.run_name``, ``logger.wandb.name``)."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            continue
        logger.log_hyperparams(dict(params))
        # Their run names are set at creation from the logger's arguments (private attributes:
        # read with a default, so a renamed one only means the label is set anyway).
        if isinstance(logger, MLFlowLogger) and not getattr(logger, "_run_name", None):
            # MLflow's own way to rename a run: the mlflow.runName tag (instead of e.g. capable-auk-759).
            logger.experiment.set_tag(logger.run_id, "mlflow.runName", label)
        elif isinstance(logger, WandbLogger) and not getattr(logger, "_wandb_init", {}).get("name"):
            logger.experiment.name = label


def log_pictures(loggers: list[Any], run_dir: Path) -> list[Path]:
    """Upload the run folder's pictures (confusion.png, confident_wrong.png, ...) to the trackers
    that keep files: MLflow as artifacts under ``pictures/``, W&B as images ``pictures/<name>``.
    Returns the pictures found."""
    pictures = sorted(run_dir.glob(PICTURES))
    if not pictures:
        return []
    for logger in loggers:
        if isinstance(logger, MLFlowLogger):
            for picture in pictures:
                logger.experiment.log_artifact(logger.run_id, str(picture), artifact_path="pictures")
        elif isinstance(logger, WandbLogger):
            for picture in pictures:
                logger.log_image(key=f"pictures/{picture.stem}", images=[str(picture)])
    return pictures


def finish_trackers(loggers: list[Any], run_dir: Path) -> None:
    """The end of a run, whatever its status: its pictures to the trackers, then W&B's run closed.

    Lightning's WandbLogger reuses the process's wandb.run: without finish() the next job of a
    one-process sweep would log into this run. A tracker that fails here (a server gone) is
    reported, not raised: the run's own record is already written.
    """
    try:
        log_pictures(loggers, run_dir)
    except Exception as error:  # noqa: BLE001 - the run is done; the tracker's failure is a warning
        log.warning("could not upload the pictures of %s to a tracker: %s", run_dir, error)
    for logger in loggers:
        if isinstance(logger, WandbLogger) and getattr(logger, "_experiment", None) is not None:
            logger.experiment.finish()
