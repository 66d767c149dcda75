"""The LightningModule: loss, accuracy, optimisers and schedulers (SAM included) for any backbone."""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.seed import _collect_rng_states, _set_rng_states
from torch import nn
from torchmetrics import MaxMetric, MeanMetric, SumMetric
from torchmetrics.classification import MulticlassAccuracy

from pyramid_lab.compile_fallback import CompileFallback
from pyramid_lab.errors import ConfigError
from pyramid_lab.optim import SAM, frozen_bn_stats

OptimizerFactory = Callable[..., torch.optim.Optimizer]


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite; the run stops instead of training on."""


def is_sam(optimizer: OptimizerFactory) -> bool:
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
        channels_last: NHWC memory format for the network and its inputs (faster convs on GPUs,
            with bf16 tensor cores).
        compile: run the network through ``torch.compile``; where compilation fails (no
            compiler, an unsupported op) it warns once and trains on in eager mode.
        compile_backend: the ``torch.compile`` backend: ``"inductor"`` (generated kernels),
            ``"aot_eager"`` or ``"eager"`` (no code generation: fast to start, for tests), or a
            backend callable.
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
        compile_backend: str | Callable[..., Any] = "inductor",
        divergence_check_every: int = 1,
    ) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(
                f"module.label_smoothing={label_smoothing} must be in [0, 1) (0.1 in the study)"
            )
        _check_optimizer_settings(optimizer)
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_config = dict(scheduler) if scheduler else None
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        # SAM needs two forward/backward passes per step: Lightning's manual optimisation.
        self.uses_sam = is_sam(optimizer)
        self.automatic_optimization = not self.uses_sam
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        # Set in setup(); kept off the submodules so that checkpoints hold `net.*` either way.
        self._compiled: CompileFallback | None = None
        # nan_strategy="disable": the default "warn" tests `isnan(x).any()` in a Python `if`, a
        # host-device sync every step; a NaN loss is _check_finite's job.
        self.train_loss, self.val_loss, self.test_loss = (
            MeanMetric(nan_strategy="disable") for _ in range(3)
        )
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc_best = MaxMetric()
        # Images trained on per epoch, summed over ranks: DDP must see each sample once.
        self.train_samples = SumMetric(nan_strategy="disable")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=self.memory_format)
        return self._compiled(x) if self._compiled is not None else self.net(x)

    def setup(self, stage: str) -> None:
        check_sam_precision(self.uses_sam, self.trainer.precision)
        self.net.to(memory_format=self.memory_format)
        if self.hparams.compile and self._compiled is None:  # fit then test: compile once
            self._compiled = CompileFallback(self.net, self.hparams.compile_backend)

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
        # update(), not __call__: the per-batch value that __call__ also computes goes unused and
        # costs ~1 ms of host time per step (pyramid_lab.bench). torch.full, not torch.tensor:
        # a tensor made from host data is a blocking host-to-device copy (a sync) on a GPU.
        self.train_loss.update(loss.detach())
        self.train_acc.update(logits.detach(), y)
        self.train_samples.update(torch.full((), float(y.shape[0]), device=y.device))
        self.log("train/samples", self.train_samples, on_step=False, on_epoch=True)
        self.log("train/loss", self.train_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def _sam_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One SAM update (Foret et al. 2021, Alg. 1): gradient at w, ascend to w + e(w), gradient
        there, descend from w. BatchNorm statistics are updated by the first pass only, and the
        second pass replays the first one's random draws (ShakeDrop), as the official SAM code
        does by reusing one dropout key for both gradients: both see the same sub-network."""
        optimizer = self.optimizers()
        rng = _capture_rng(x.device)
        logits = self(x)
        loss = self.criterion(logits, y)
        optimizer.zero_grad()
        self.manual_backward(loss)

        def second_pass() -> torch.Tensor:
            _restore_rng(x.device, rng)
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

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # ShakeDrop and augmentation draw from the global generators: a resumed run continues
        # their streams instead of replaying the seed's.
        checkpoint["rng_states"] = _collect_rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "rng_states" in checkpoint:
            _set_rng_states(checkpoint["rng_states"])

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_config is None:
            return {"optimizer": optimizer}
        config = self.scheduler_config
        scheduler = {"scheduler": config["scheduler"](optimizer), "interval": config.get("interval", "epoch")}
        if config.get("monitor") and self.automatic_optimization:
            scheduler["monitor"] = config["monitor"]  # under SAM, _step_schedulers reads it
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


def _capture_rng(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    # A CUDA generator's state (seed, offset) lives on the host: reading it does not sync.
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _restore_rng(device: torch.device, state: tuple[torch.Tensor, torch.Tensor | None]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def check_sam_precision(uses_sam: bool, precision: str | int | None) -> None:
    if uses_sam and str(precision) in ("16-mixed", "16"):
        raise ConfigError(
            f"trainer.precision={precision} cannot drive SAM (its loss scaler steps once per "
            "backward); use bf16-mixed or 32-true"
        )


def _check_optimizer_settings(optimizer: OptimizerFactory) -> None:
    # torch's own message ("Invalid learning rate: -1") names no setting.
    settings = optimizer.keywords if isinstance(optimizer, partial) else {}
    lr = settings.get("lr")
    if lr is not None and not lr > 0:
        raise ConfigError(f"optimizer.lr={lr} must be > 0 (the study: 0.1 for SGD)")
    weight_decay = settings.get("weight_decay")
    if weight_decay is not None and weight_decay < 0:
        raise ConfigError(f"optimizer.weight_decay={weight_decay} must be >= 0")
