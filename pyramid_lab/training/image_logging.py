"""TensorBoard's images tab: what the augmentation does, and what the model confuses.

``ImageLogger`` logs, to every TensorBoard logger of the run (other loggers, or none, are
skipped):

- ``train/augmented_images``: a grid of the first training batch after augmentation (crops,
  flips, noise: what the network is actually fed), once at the start of training;
- ``val/confusion_matrix``: the validation confusion matrix as a picture at the end of every
  ``every_n_epochs``-th validation epoch (it needs ``validation_step`` to return
  ``{"logits": ..., "target": ...}``).

``callbacks.images.enabled=false`` turns both off (``~callbacks.images`` removes the callback).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor
from torchmetrics.classification import MulticlassConfusionMatrix
from torchvision.utils import make_grid

from pyramid_lab.runs.pictures import confusion_figure, figure_to_array


def class_names(trainer: pl.Trainer, num_classes: int) -> list[str]:
    """The data set's class names (ImageDataModule's ``splits.classes``), else "0", "1", ..."""
    classes = getattr(getattr(trainer.datamodule, "splits", None), "classes", None)
    return (
        [str(c) for c in classes]
        if classes and len(classes) == num_classes
        else [str(i) for i in range(num_classes)]
    )


class Pixels:
    """Normalised image batches back to uint8 pixels for pictures (``x * std + mean``, x 255).

    The statistics are those ImageDataModule normalised with (``datamodule.splits``); without
    them each image is stretched to its own range. Kept on the batch's device: one small copy
    per device, not one per batch.
    """

    def __init__(self) -> None:
        self._stats: dict[torch.device, tuple[Tensor, Tensor] | None] = {}

    def __call__(self, x: Tensor, trainer: pl.Trainer) -> Tensor:
        """``float [B, 3, H, W]`` normalised -> ``uint8 [B, 3, H, W]``."""
        x = x.detach().float()
        if x.device not in self._stats:
            splits = getattr(trainer.datamodule, "splits", None)
            self._stats[x.device] = (
                None
                if splits is None
                else tuple(
                    torch.tensor(v, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
                    for v in (splits.mean, splits.std)
                )
            )
        stats = self._stats[x.device]
        if stats is None:
            low = x.amin(dim=(1, 2, 3), keepdim=True)
            x = (x - low) / (x.amax(dim=(1, 2, 3), keepdim=True) - low).clamp_min(1e-8)
        else:
            x = x * stats[1] + stats[0]
        return (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


class ImageLogger(pl.Callback):
    """Training images and the validation confusion matrix in TensorBoard's images tab.

    Args:
        enabled: False logs nothing (the setting that turns the images off).
        train_images: images of the first augmented training batch to show (0: none).
        every_n_epochs: log the validation confusion matrix every this many epochs (0: never).
    """

    def __init__(self, enabled: bool = True, train_images: int = 32, every_n_epochs: int = 1) -> None:
        if train_images < 0 or every_n_epochs < 0:
            raise ValueError(
                f"callbacks.images: train_images={train_images} and every_n_epochs={every_n_epochs} "
                "must be >= 0 (0 turns that picture off)"
            )
        self.enabled = enabled
        self.train_images = train_images
        self.every_n_epochs = every_n_epochs
        self._pixels = Pixels()
        self._logged_train_images = False
        self._confusion: MulticlassConfusionMatrix | None = None
        self._warned = False

    def _writers(self, trainer: pl.Trainer) -> list[Any]:
        if not self.enabled or not trainer.is_global_zero:
            return []
        return [logger.experiment for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]

    def _wanted(self, trainer: pl.Trainer) -> bool:
        # Decided on every rank alike: the confusion matrix is summed across ranks.
        return (
            self.enabled
            and self.every_n_epochs > 0
            and not trainer.sanity_checking
            and any(isinstance(logger, TensorBoardLogger) for logger in trainer.loggers)
            and (trainer.current_epoch + 1) % self.every_n_epochs == 0
        )

    @torch.no_grad()
    def on_train_batch_start(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        batch: Any,
        batch_idx: int,
    ) -> None:
        # The batch here has been through on_after_batch_transfer: augmented and normalised.
        if self._logged_train_images or self.train_images == 0:
            return
        self._logged_train_images = True
        writers = self._writers(trainer)
        if not writers:
            return
        pixels = self._pixels(batch[0][: self.train_images], trainer)
        grid = make_grid(pixels, nrow=8, padding=2).cpu()
        for writer in writers:
            writer.add_image("train/augmented_images", grid, trainer.global_step)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._wanted(trainer):
            self._confusion = None
            return
        num_classes = pl_module.hparams.get("num_classes")
        if self._confusion is None and num_classes:
            self._confusion = MulticlassConfusionMatrix(int(num_classes))
        if self._confusion is not None:
            self._confusion = self._confusion.to(pl_module.device)
            self._confusion.reset()

    @torch.no_grad()
    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._confusion is None:
            return
        if not isinstance(outputs, Mapping) or "logits" not in outputs:
            if not self._warned:
                rank_zero_warn("ImageLogger: validation_step returns no logits; no confusion matrix")
                self._warned = True
            self._confusion = None
            return
        self._confusion.update(outputs["logits"].detach(), outputs["target"].detach())

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._confusion is None or not self._confusion.update_called:
            return
        matrix = self._confusion.compute().cpu().numpy()  # summed across ranks under DDP
        for writer in self._writers(trainer):
            classes = class_names(trainer, len(matrix))
            title = f"validation, epoch {trainer.current_epoch + 1}"
            image = figure_to_array(confusion_figure(matrix, classes, title))
            writer.add_image("val/confusion_matrix", image, trainer.global_step, dataformats="HWC")
