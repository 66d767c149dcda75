"""The LightningModule: loss, accuracy, optimisers and schedulers (SAM included) for any backbone."""

from __future__ import annotations

import warnings
from functools import partial
from typing import Any, Callable

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from pyramid_lab.errors import ConfigError
from pyramid_lab.optim import SAM, frozen_bn_stats

OptimizerFactory = Callable[..., torch.optim.Optimizer]


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite; the run stops instead of training on."""


def _is_sam(optimizer: OptimizerFactory) -> bool:
    target = optimizer.func if isinstance(optimizer, partial) else optimizer
    return isinstance(target, type) and issubclass(target, SAM)


class Classifier(pl.LightningModule):
    """Image classification with an injected backbone.

    Args:
        net: the backbone, (B, 3, H, W) -> logits (B, num_classes).
        optimizer: a partial that takes the parameters (``torch.optim.SGD`` with its settings, or
            ``pyramid_lab.optim.SAM``, which switches training to SAM's two passes per step).
        scheduler: ``{"scheduler": partial taking the optimizer, "interval": "epoch" | "step",
            "monitor": metric name or None}``, or None for a constant learning rate.
        num_classes: classes for the accuracy metrics.
        label_smoothing: cross-entropy label smoothing in [0, 1) (0.1 in the study's trick).
        channels_last: NHWC memory format for the network and its inputs (faster convs on GPUs).
        compile: wrap the network in ``torch.compile``; falls back to eager with a warning.
        divergence_check_every: steps between checks that the loss is finite (1 = every step;
            each check waits for the device).
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: dict[str, Any] | None = None,
        num_classes: int = 10,
        label_smoothing: float = 0.0,
        channels_last: bool = False,
        compile: bool = False,
        divergence_check_every: int = 1,
    ) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(
                f"module.label_smoothing={label_smoothing} must be in [0, 1) (0.1 in the study)"
            )
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_config = dict(scheduler) if scheduler else None
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        # SAM needs two forward/backward passes per step: Lightning's manual optimisation.
        self.uses_sam = _is_sam(optimizer)
        self.automatic_optimization = not self.uses_sam
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc_best = MaxMetric()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.contiguous(memory_format=self.memory_format))

    def setup(self, stage: str) -> None:
        if self.uses_sam and self.trainer.precision == "16-mixed":
            raise ConfigError(
                "trainer.precision=16-mixed cannot drive SAM (its loss scaler steps once per "
                "backward); use bf16-mixed or 32-true"
            )
        self.net.to(memory_format=self.memory_format)
        if self.hparams.compile and not isinstance(self.net, torch._dynamo.eval_frame.OptimizedModule):
            self.net = _compile_or_warn(self.net)

    def on_train_start(self) -> None:
        # The sanity check runs validation before training: start val/acc_best from scratch.
        self.val_acc_best.reset()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        if self.uses_sam:
            logits, loss = self._sam_step(x, y)
        else:
            logits = self(x)
            loss = self.criterion(logits, y)
        self._check_finite(loss, batch_idx)
        self.train_loss(loss.detach())
        self.train_acc(logits.detach(), y)
        self.log("train/loss", self.train_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def _sam_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One SAM update (Foret et al. 2021, Alg. 1): gradient at w, ascend to w + e(w), gradient
        there, descend from w. BatchNorm statistics are updated by the first pass only."""
        optimizer = self.optimizers()
        logits = self(x)
        loss = self.criterion(logits, y)
        optimizer.zero_grad()
        self.manual_backward(loss)

        def second_pass() -> torch.Tensor:
            with frozen_bn_stats(self.net):
                perturbed_loss = self.criterion(self(x), y)
            self.manual_backward(perturbed_loss)
            return perturbed_loss

        # Through the LightningOptimizer, so that global_step advances once per SAM update.
        optimizer.step(closure=second_pass)
        optimizer.zero_grad()
        self._step_schedulers("step")
        return logits, loss

    def on_train_epoch_end(self) -> None:
        if self.uses_sam:
            self._step_schedulers("epoch")

    def _step_schedulers(self, interval: str) -> None:
        # Lightning steps schedulers only under automatic optimisation; SAM steps its own.
        config = self.scheduler_config
        scheduler = self.lr_schedulers()
        if scheduler is None or config.get("interval", "epoch") != interval:
            return
        monitor = config.get("monitor")
        if monitor:
            scheduler.step(self.trainer.callback_metrics[monitor])
        else:
            scheduler.step()

    def _check_finite(self, loss: torch.Tensor, batch_idx: int) -> None:
        if batch_idx % self.hparams.divergence_check_every == 0 and not torch.isfinite(loss):
            raise DivergedError(
                f"train/loss became {loss.item()} at epoch {self.current_epoch}, batch {batch_idx}"
            )

    def on_train_epoch_start(self) -> None:
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], on_step=False, on_epoch=True)

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], prefix: str) -> None:
        x, y = batch
        logits = self(x)
        loss_metric, acc_metric = getattr(self, f"{prefix}_loss"), getattr(self, f"{prefix}_acc")
        loss_metric(self.criterion(logits, y))
        acc_metric(logits, y)
        self.log(f"{prefix}/loss", loss_metric, on_step=False, on_epoch=True, prog_bar=True)
        self.log(f"{prefix}/acc", acc_metric, on_step=False, on_epoch=True, prog_bar=True)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_config is None:
            return {"optimizer": optimizer}
        config = self.scheduler_config
        scheduler = {"scheduler": config["scheduler"](optimizer), "interval": config.get("interval", "epoch")}
        if config.get("monitor") and self.automatic_optimization:
            scheduler["monitor"] = config["monitor"]  # under SAM, _step_schedulers reads it
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


def _compile_or_warn(net: nn.Module) -> nn.Module:
    try:
        return torch.compile(net)
    except Exception as error:  # compile is an optional speed-up: never fail a run for it
        warnings.warn(f"module.compile=true fell back to eager: {error}", stacklevel=2)
        return net
