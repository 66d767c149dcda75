"""Keep a run's test predictions, image by image, so that any two runs on one test set can be
compared later without rerunning them (pyramid_lab.report's paired tests), and picture its errors.

``TestPredictions`` needs ``test_step`` to return ``{"logits": [B, C], "target": [B]}``. At the
end of testing (``trainer.test``: the end of every training run, and ``mode=test``) rank 0 writes
into ``dirpath`` (the run folder):

``test_predictions.npz`` (its keys and its reader: pyramid_lab.runs.predictions_file);
``confusion.png`` (rows: true class, columns: predicted class); and ``confident_wrong.png``: the
``wrong_images`` test images the model gets wrong with the highest confidence, with their true
and predicted class. ``summary`` then holds, for metrics.json, ``test/acc_per_class`` (class name
-> accuracy as a fraction, classes with test images only) and ``test/confusion_matrix``
(``[C][C]`` counts, rows the true class in the order of ``classes``).

Under DDP every rank keeps its own share and the shares are gathered (``all_gather``) to rank 0,
which writes; padding images that ImageDataModule repeats to even out the ranks are dropped.
A callback with a ``test_probs`` attribute (``{"ensemble": [n, C] tensor}``, this rank's images
in test order: SnapshotEnsemble) adds its predictions as ``pred_<name>``/``probs_<name>``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torchmetrics.functional.classification import multiclass_confusion_matrix

from pyramid_lab.runs.pictures import confusion_figure, image_grid_figure, save_png
from pyramid_lab.runs.predictions_file import write_predictions
from pyramid_lab.training.image_logging import Pixels, class_names


class TestPredictions(pl.Callback):
    """Writes the test predictions, the confusion matrix and the most confident errors of a run.

    Args:
        dirpath: the run folder.
        wrong_images: how many of the most confidently wrong test images to draw (0: no grid).
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, dirpath: str | Path, wrong_images: int = 32) -> None:
        if wrong_images < 0:
            raise ValueError(f"callbacks.predictions.wrong_images={wrong_images} must be >= 0")
        self.dirpath = Path(dirpath)
        self.wrong_images = wrong_images
        self.summary: dict[str, Any] = {}
        self._pixels = Pixels()
        self._reset()

    def _reset(self) -> None:
        self._probs: list[Tensor] = []
        self._targets: list[Tensor] = []
        # The most confidently wrong images so far, on the device (no host sync per batch).
        self._wrong: tuple[Tensor, Tensor, Tensor, Tensor] | None = None

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._reset()
        self.summary = {}

    @torch.no_grad()
    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not isinstance(outputs, Mapping) or "logits" not in outputs or "target" not in outputs:
            raise RuntimeError(
                "TestPredictions needs test_step to return {'logits': logits, 'target': y}; "
                f"{type(pl_module).__name__}.test_step returned {type(outputs).__name__}"
            )
        probs = outputs["logits"].detach().float().softmax(-1)
        target = outputs["target"].detach()
        self._probs.append(probs)
        self._targets.append(target)
        if self.wrong_images:
            self._keep_wrong(probs, target, batch[0], trainer)

    def _keep_wrong(self, probs: Tensor, target: Tensor, images: Tensor, trainer: pl.Trainer) -> None:
        confidence, pred = probs.max(-1)
        # Right answers rank below every wrong one (confidence is >= 1/C > -1).
        score = torch.where(pred != target, confidence, torch.full_like(confidence, -1.0))
        top = score.topk(min(self.wrong_images, len(score))).indices
        candidate = (
            score[top],
            self._pixels(images[top], trainer),
            target[top],
            pred[top],
        )
        if self._wrong is not None:
            candidate = tuple(torch.cat([old, new]) for old, new in zip(self._wrong, candidate))
            keep = candidate[0].topk(min(self.wrong_images, len(candidate[0]))).indices
            candidate = tuple(t[keep] for t in candidate)
        self._wrong = candidate

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._probs:
            return
        probs, target = torch.cat(self._probs), torch.cat(self._targets)
        extra = {
            name: value
            for callback in trainer.callbacks
            for name, value in (getattr(callback, "test_probs", None) or {}).items()
            if isinstance(value, Tensor) and len(value) == len(target)
        }
        gathered = [_gather(pl_module, t, trainer.world_size) for t in (probs, target, *extra.values())]
        wrong = None
        if self._wrong is not None:
            wrong = tuple(_gather(pl_module, t, trainer.world_size) for t in self._wrong)
        if not trainer.is_global_zero:
            return
        probs, target, *extra_probs = (t.cpu() for t in gathered)
        order = self._positions(trainer, len(target) // max(trainer.world_size, 1), trainer.world_size)
        index, first = np.unique(order, return_index=True)  # drops DDP's repeated padding images
        probs, target = probs[first], target[first]
        extra = {name: p.cpu()[first] for name, p in zip(extra, extra_probs)}
        classes = class_names(trainer, probs.shape[-1])
        self.dirpath.mkdir(parents=True, exist_ok=True)
        others = {name: p.float().numpy() for name, p in extra.items()}
        write_predictions(
            self.dirpath, probs.numpy(), target.numpy(), index, classes, self._test_set(trainer), others
        )
        matrix = multiclass_confusion_matrix(probs.argmax(-1), target, num_classes=len(classes))
        self.summary = summary(matrix.numpy(), classes)
        save_png(confusion_figure(matrix.numpy(), classes, "test"), self.dirpath / "confusion.png")
        if wrong is not None:
            self._draw_wrong(wrong, classes)

    def _positions(self, trainer: pl.Trainer, per_rank_seen: int, world_size: int) -> np.ndarray:
        """Each gathered prediction's position in the test split.

        ImageDataModule gives rank r the contiguous block starting at ``r * ceil(M / W)`` of the
        ``M`` test images, wrapping around to pad the last one (SequentialBatchSampler).
        """
        splits = getattr(trainer.datamodule, "splits", None)
        total = len(splits.test) if splits is not None else per_rank_seen * world_size
        block = math.ceil(total / world_size) if splits is not None else per_rank_seen
        starts = np.arange(world_size)[:, None] * block
        return ((starts + np.arange(per_rank_seen)[None, :]) % total).ravel()

    @staticmethod
    def _test_set(trainer: pl.Trainer) -> str:
        splits = getattr(trainer.datamodule, "splits", None)
        if splits is None:
            return ""
        digest = hashlib.blake2b(digest_size=16)
        for tensor in (splits.test.images, splits.test.labels):
            digest.update(np.ascontiguousarray(tensor.numpy()))  # no copy of the images
        return digest.hexdigest()

    def _draw_wrong(self, wrong: tuple[Tensor, ...], classes: list[str]) -> None:
        score, images, target, pred = (t.cpu() for t in wrong)
        keep = score.topk(min(self.wrong_images, len(score))).indices
        keep = keep[score[keep] >= 0]  # drop the right answers that filled up the list
        titles = [
            f"true: {classes[t]}\npred: {classes[p]} {c:.2f}"
            for t, p, c in zip(target[keep].tolist(), pred[keep].tolist(), score[keep].tolist())
        ]
        figure = image_grid_figure(
            images[keep].permute(0, 2, 3, 1).numpy(),
            titles,
            title="most confidently wrong test images",
        )
        save_png(figure, self.dirpath / "confident_wrong.png")


def summary(matrix: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """metrics.json's ``test/acc_per_class`` and ``test/confusion_matrix`` from a confusion matrix.

    Args:
        matrix: int ``[C, C]``, rows the true class, columns the predicted class.
        classes: the ``C`` class names.
    """
    totals = matrix.sum(axis=1)
    per_class = {name: float(matrix[i, i] / totals[i]) for i, name in enumerate(classes) if totals[i] > 0}
    return {
        "test/acc_per_class": per_class,
        "test/confusion_matrix": matrix.astype(int).tolist(),
    }


def _gather(pl_module: pl.LightningModule, tensor: Tensor, world_size: int) -> Tensor:
    """Every rank's ``[n, ...]`` (equal n) as ``[world_size * n, ...]`` in rank order."""
    if world_size == 1:
        return tensor
    return pl_module.all_gather(tensor).flatten(0, 1)
