"""Test-time augmentation: the image and its horizontal flip, averaged (``TTA``: a callback that
logs its accuracy)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy

__all__ = ["TTA", "tta_logits"]


def tta_logits(model: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """Log of the mean softmax of ``x`` and of its left-right mirror image.

    The two views are averaged as probabilities, like any ensemble here (the snapshot ensemble's
    ``test/acc_ensemble`` averages softmax outputs too): each view contributes its confidence,
    and the result is a proper distribution. Averaging logits instead would weight a view by the
    scale of its logits. The log makes the result a drop-in for logits: ``argmax`` gives the
    ensemble's prediction and ``cross_entropy`` its negative log-likelihood. Both views go through
    the model as one batch of ``2B`` (one forward pass; in eval mode BatchNorm does not mix them).

    Args:
        model: ``[N, C, H, W] -> [N, K]`` logits, in eval mode.
        x: ``[B, C, H, W]`` images, as the model takes them (normalised).

    Returns:
        ``[B, K]`` float32 log-probabilities.
    """
    b = x.shape[0]
    probs = model(torch.cat([x, x.flip(-1)])).float().softmax(-1)
    return ((probs[:b] + probs[b:]) / 2).log()


class TTA(pl.Callback):
    """Also log ``val/acc_tta`` and ``test/acc_tta``: the accuracy of :func:`tta_logits` (each
    image and its mirror), beside the plain ``val/acc``/``test/acc``, which it does not change.

    It runs the module as evaluation does (the EMA weights under ``callbacks.ema``, compiled
    under ``callbacks.compile``), on the batches already transferred and normalised. The
    accuracy is summed over the epoch and synced across ranks by torchmetrics at ``compute``.
    """

    def __init__(self) -> None:
        self._accuracy: MulticlassAccuracy | None = None

    def _start(self, pl_module: pl.LightningModule) -> None:
        self._accuracy = MulticlassAccuracy(pl_module.hparams.num_classes, average="micro").to(
            pl_module.device
        )

    @torch.no_grad()
    def _update(self, pl_module: pl.LightningModule, batch: tuple[Tensor, Tensor]) -> None:
        x, y = batch
        self._accuracy.update(tta_logits(pl_module, x), y)

    def _end(self, pl_module: pl.LightningModule, prefix: str) -> None:
        pl_module.log(f"{prefix}/acc_tta", self._accuracy.compute())
        self._accuracy = None

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start(pl_module)

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._update(pl_module, batch)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._end(pl_module, "val")

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start(pl_module)

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._update(pl_module, batch)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._end(pl_module, "test")
