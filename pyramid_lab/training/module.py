"""The LightningModule: loss, accuracy, optimiser and scheduler for any backbone.

The step and its metrics, nothing else. Around it, as Lightning places them: SAM's two passes
(``pyramid_lab.training.sam.SAMClassifier``), divergence detection
(``pyramid_lab.training.divergence``), EMA (``pyramid_lab.training.ema``), test-time augmentation
(``pyramid_lab.training.tta``), torch.compile and channels_last (``pyramid_lab.training.compile``)
are callbacks or a subclass; lr warm-up is part of the scheduler factory
(``pyramid_lab.optim.warmup.with_warmup``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import WeightAveraging
from torch import nn
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torchmetrics import MaxMetric, MeanMetric, SumMetric
from torchmetrics.classification import MulticlassAccuracy

from pyramid_lab.errors import ConfigError
from pyramid_lab.optim.schedule import build_schedule
from pyramid_lab.optim.settings import check_optimizer_numbers
from pyramid_lab.runs.rng import restore_rng_states, rng_states
from pyramid_lab.training.compile import CompileFallback
from pyramid_lab.training.mixing import MixCut, dominant_label

# Where a checkpoint written mid-epoch keeps the epoch's running sums (a fixed string: renaming
# the class must not orphan checkpoints).
EPOCH_IN_PROGRESS_KEY = "pyramid_lab.epoch_in_progress"
_EPOCH_SUMS = ("train_loss", "train_acc", "train_samples")

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


class CrossEntropy(nn.CrossEntropyLoss):
    """The study's loss: ``nn.CrossEntropyLoss``, whose label smoothing (Szegedy et al. 2016) is
    checked to be in [0, 1) when built. Takes class indices or soft targets (MixUp/CutMix).

    Args:
        label_smoothing: epsilon: the targets become ``(1 - eps) * targets + eps / K``.
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(
                f"module.loss.label_smoothing={label_smoothing} must be in [0, 1) (0.1 in the study)"
            )
        super().__init__(label_smoothing=label_smoothing)


class Classifier(pl.LightningModule):
    """Image classification with an injected backbone.

    Args:
        net: the backbone, (B, 3, H, W) -> logits (B, num_classes).
        optimizer: a partial that takes the parameters (``torch.optim.SGD`` with its settings);
            SAM is :class:`pyramid_lab.training.sam.SAMClassifier`'s.
        scheduler: a partial that takes the optimizer and returns its lr scheduler (or None), or
            None for a constant learning rate.
        scheduler_interval: step the scheduler every ``"epoch"`` or every optimizer ``"step"``.
        scheduler_monitor: the metric a plateau scheduler (a ``ReduceLROnPlateau``) watches;
            other schedulers ignore it.
        num_classes: classes for the accuracy metrics.
        loss: ``(logits [B, K], targets [B] or soft [B, K]) -> loss``; default
            :class:`CrossEntropy` without label smoothing.
        mixing: MixUp/CutMix of training batches (``pyramid_lab.training.mixing.MixCut``): the
            loss takes its soft targets (label smoothing still applies) and train accuracy is
            counted against the dominant label, logged as ``train/acc_dominant``.

    With an EMA of the weights (``pyramid_lab.training.ema.EMA`` among the trainer's callbacks),
    validation and test see the EMA weights, and their accuracy is also logged as
    ``val/acc_ema``/``test/acc_ema``, so that a record says which model ``test/acc`` is.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "epoch",
        scheduler_monitor: str = "val/loss",
        num_classes: int = 10,
        loss: nn.Module | None = None,
        mixing: MixCut | None = None,
    ) -> None:
        super().__init__()
        check_optimizer_numbers(getattr(optimizer, "keywords", {}))
        # Kept in checkpoints, not sent to the trackers: they get the whole recipe from
        # pyramid_lab.runs.params (the module's own would be a second, partial copy).
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler", "loss", "mixing"], logger=False)
        self.mixing = mixing
        self.net = net
        self.optimizer_factory = optimizer
        if scheduler_interval not in ("epoch", "step"):
            raise ConfigError(f"module.scheduler_interval={scheduler_interval!r} must be epoch or step")
        self.scheduler_factory = scheduler
        self.criterion = loss if loss is not None else CrossEntropy()
        # Set by the callbacks of pyramid_lab.training.compile; off the submodules, so that
        # checkpoints hold `net.*` either way.
        self.memory_format = torch.contiguous_format
        self.compiled: CompileFallback | None = None
        # nan_strategy="disable": the default "warn" tests `isnan(x).any()` in a Python `if`, a
        # host-device sync every step; a NaN loss is pyramid_lab.training.divergence's job.
        self.train_loss, self.val_loss, self.test_loss = (
            MeanMetric(nan_strategy="disable") for _ in range(3)
        )
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        # Kept in checkpoints: a resumed run's best is over all its epochs, not those since the resume.
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)
        self._ema = False  # set in setup(): whether evaluation sees averaged weights
        # Images trained on per epoch, summed over ranks: DDP must see each sample once.
        self.train_samples = SumMetric(nan_strategy="disable")
        self._epoch_lr: float | None = None  # train/lr: the lr the current epoch started with
        self._resumed_epoch_lr: float | None = None  # to log at the first batch after a resume

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=self.memory_format)
        return self.compiled(x) if self.compiled is not None else self.net(x)

    def setup(self, stage: str) -> None:
        # Lightning's WeightAveraging swaps the averaged weights in for validation and copies
        # them in when fit ends; a checkpoint's state_dict holds them (mode=test).
        self._ema = any(isinstance(c, WeightAveraging) for c in self.trainer.callbacks)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        target = y
        if self.mixing is not None:  # soft targets; the criterion takes probabilities
            x, target = self.mixing(x, y)
            y = dominant_label(target)
        logits, loss = self._update(x, target)
        # update(), not __call__: the per-batch value that __call__ also computes goes unused and
        # costs ~1 ms of host time per step (pyramid_lab.bench). torch.full, not torch.tensor:
        # a tensor made from host data is a blocking host-to-device copy (a sync) on a GPU.
        self.train_loss.update(loss.detach())
        self.train_acc.update(logits.detach(), y)
        self.train_samples.update(torch.full((), float(y.shape[0]), device=y.device))
        self.log("train/samples", self.train_samples, on_step=False, on_epoch=True)
        self.log("train/loss", self.train_loss, on_step=False, on_epoch=True, prog_bar=True)
        # Against mixed targets accuracy counts the dominant label, under a name that says so.
        acc_name = "train/acc" if self.mixing is None else "train/acc_dominant"
        self.log(acc_name, self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def _update(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's logits and loss; Lightning's automatic optimisation takes the step."""
        logits = self(x)
        return logits, self.criterion(logits, y)

    def on_train_epoch_start(self) -> None:
        self._epoch_lr = self.optimizers().param_groups[0]["lr"]
        self.log("train/lr", self._epoch_lr, on_step=False, on_epoch=True)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self._resumed_epoch_lr is not None:  # resumed mid-epoch: no on_train_epoch_start
            self._epoch_lr, self._resumed_epoch_lr = self._resumed_epoch_lr, None
            self.log("train/lr", self._epoch_lr, on_step=False, on_epoch=True)

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
        x, y = batch
        logits = self(x)
        loss_metric, acc_metric = getattr(self, f"{prefix}_loss"), getattr(self, f"{prefix}_acc")
        loss_metric(self.criterion(logits, y))
        acc_metric(logits, y)
        self.log(f"{prefix}/loss", loss_metric, on_step=False, on_epoch=True, prog_bar=True)
        self.log(f"{prefix}/acc", acc_metric, on_step=False, on_epoch=True, prog_bar=True)
        if self._ema:  # the same number, under a name that says it is the EMA model's
            self.log(f"{prefix}/acc_ema", acc_metric, on_step=False, on_epoch=True)
        # For the callbacks that keep predictions (TestPredictions, the validation confusion matrix).
        return {"logits": logits.detach(), "target": y}

    def validation_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> dict[str, torch.Tensor]:
        return self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:  # the sanity check's batches are no epoch's result
            return
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._eval_step(batch, "test")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # ShakeDrop and augmentation draw from the global generators: a resumed run continues
        # their streams instead of replaying the seed's. Stored as tensors and tuples: the file
        # loads with weights_only=True (pyramid_lab/runs/rng.py).
        checkpoint["rng_states"] = rng_states()
        # Written mid-epoch (SIGTERM, Ctrl-C: pyramid_lab/runs/interrupt.py): the epoch's running
        # sums and its lr, so that the resumed epoch's train/* cover all its batches. Not at the
        # epoch's end, where the sums are the finished epoch's and the next one starts from zero.
        if self._trainer is not None and not self.trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            checkpoint[EPOCH_IN_PROGRESS_KEY] = {
                "lr": self._epoch_lr,
                "metrics": {name: dict(getattr(self, name).metric_state) for name in _EPOCH_SUMS},
            }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "rng_states" in checkpoint:
            restore_rng_states(checkpoint["rng_states"])
        epoch = checkpoint.get(EPOCH_IN_PROGRESS_KEY)
        if epoch is not None:
            self._resumed_epoch_lr = epoch["lr"]
            for name, state in epoch["metrics"].items():
                getattr(self, name).merge_state(state)  # onto fresh (zero) sums: the saved ones

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        built = build_schedule(
            self.scheduler_factory,
            optimizer,
            interval=self.hparams.scheduler_interval,
            steps_per_epoch=self._steps_per_epoch,
        )
        scheduler = {"scheduler": built, "interval": self.hparams.scheduler_interval}
        if isinstance(built, ReduceLROnPlateau):
            scheduler["monitor"] = self.hparams.scheduler_monitor
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def _steps_per_epoch(self) -> int:
        # Lightning's estimate loads the training data first: its batches per epoch then count
        # limit_train_batches and the DDP shard; an optimizer step takes accumulate_grad_batches.
        if self.trainer.estimated_stepping_batches == float("inf"):
            raise ConfigError("a scheduler that counts optimizer steps needs a training set of known length")
        return math.ceil(self.trainer.num_training_batches / self.trainer.accumulate_grad_batches)
