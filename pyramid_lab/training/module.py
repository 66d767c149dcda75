"""The LightningModule: loss, accuracy, optimisers and schedulers (SAM included) for any backbone."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import WeightAveraging
from torch import nn
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torchmetrics import MaxMetric, MeanMetric, SumMetric
from torchmetrics.classification import MulticlassAccuracy

from pyramid_lab.errors import ConfigError, DivergedError
from pyramid_lab.optim import SAM, frozen_bn_stats
from pyramid_lab.optim.schedule import build_schedule
from pyramid_lab.optim.settings import check_optimizer_numbers
from pyramid_lab.runs.rng import restore_rng_states, rng_states
from pyramid_lab.training.compile import CompileFallback
from pyramid_lab.training.mixing import MixCut, dominant_label
from pyramid_lab.training.tta import tta_logits

# Where a checkpoint written mid-epoch keeps the epoch's running sums (a fixed string: renaming
# the class must not orphan checkpoints).
EPOCH_IN_PROGRESS_KEY = "pyramid_lab.epoch_in_progress"
_EPOCH_SUMS = ("train_loss", "train_acc", "train_samples")

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


def is_sam(optimizer: OptimizerFactory) -> bool:
    target = optimizer.func if isinstance(optimizer, partial) else optimizer
    return isinstance(target, type) and issubclass(target, SAM)


class Classifier(pl.LightningModule):
    """Image classification with an injected backbone.

    Args:
        net: the backbone, (B, 3, H, W) -> logits (B, num_classes).
        optimizer: a partial that takes the parameters (``torch.optim.SGD`` with its settings, or
            ``pyramid_lab.optim.SAM``, which switches training to SAM's two passes per step).
        scheduler: a partial that takes the optimizer and returns its lr scheduler, or None for
            a constant learning rate.
        scheduler_interval: step the scheduler every ``"epoch"`` or every optimizer ``"step"``.
        scheduler_monitor: the metric a plateau scheduler (a ``ReduceLROnPlateau``) watches;
            other schedulers ignore it.
        num_classes: classes for the accuracy metrics.
        label_smoothing: cross-entropy label smoothing in [0, 1) (0.1 in the study's trick).
        channels_last: NHWC memory format for the network and its inputs (faster convs on GPUs,
            with bf16 tensor cores).
        compile: run the network through ``torch.compile``; where compilation fails (no
            compiler, an unsupported op) it warns once and trains on in eager mode.
        compile_backend: the ``torch.compile`` backend: ``"inductor"`` (generated kernels),
            ``"aot_eager"`` or ``"eager"`` (no code generation: fast to start, for tests), or a
            backend callable.
        compile_mode: ``torch.compile``'s mode (inductor): ``"default"``, ``"reduce-overhead"``
            (CUDA graphs), ``"max-autotune"``, ``"max-autotune-no-cudagraphs"``.
        divergence_check_every: steps between reads of the device-side record of a non-finite
            training loss (each read waits for the device once; the record itself is kept without
            waiting). A loss that becomes NaN or inf at step k stops the run by step k + N - 1, and
            at the end of the epoch (before validation) at the latest, naming step k.
        mixing: MixUp/CutMix of training batches (``pyramid_lab.training.mixing.MixCut``): the
            loss takes its soft targets (label smoothing still applies) and train accuracy is
            counted against the dominant label, logged as ``train/acc_dominant``.
        tta: also log ``val/acc_tta`` and ``test/acc_tta``, the accuracy of the mean softmax of
            each image and its mirror (``pyramid_lab.training.tta``); ``val/acc``/``test/acc``
            stay the plain numbers.
        warmup_epochs: linear lr warm-up over this many epochs in front of the scheduler
            (``pyramid_lab.optim.warmup``), which keeps its own timeline; 0 = none.
        warmup_start_factor: the first warm-up lr as a fraction of the scheduled lr, in (0, 1].

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
        label_smoothing: float = 0.0,
        channels_last: bool = False,
        compile: bool = False,
        compile_backend: str | Callable[..., Any] = "inductor",
        compile_mode: str = "default",
        divergence_check_every: int = 100,
        mixing: MixCut | None = None,
        tta: bool = False,
        warmup_epochs: int = 0,
        warmup_start_factor: float = 0.1,
    ) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(
                f"module.label_smoothing={label_smoothing} must be in [0, 1) (0.1 in the study)"
            )
        check_optimizer_numbers(optimizer.keywords if isinstance(optimizer, partial) else {})
        # Kept in checkpoints, not sent to the trackers: they get the whole recipe, these flags
        # included, from pyramid_lab.runs.params (the module's own would be a second, partial copy).
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler", "mixing"], logger=False)
        self.mixing = mixing
        self.net = net
        self.optimizer_factory = optimizer
        if scheduler_interval not in ("epoch", "step"):
            raise ConfigError(f"module.scheduler_interval={scheduler_interval!r} must be epoch or step")
        self.scheduler_factory = scheduler
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        # SAM needs two forward/backward passes per step: Lightning's manual optimisation.
        self.uses_sam = is_sam(optimizer)
        self.automatic_optimization = not self.uses_sam
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        # Set in setup(); kept off the submodules so that checkpoints hold `net.*` either way.
        self._compiled: CompileFallback | None = None
        if int(divergence_check_every) != divergence_check_every or divergence_check_every < 1:
            raise ConfigError(
                f"module.divergence_check_every={divergence_check_every!r} must be an "
                "integer >= 1 (steps between reads of the finite-loss flag)"
            )
        self._nonfinite = FirstNonFinite()
        # nan_strategy="disable": the default "warn" tests `isnan(x).any()` in a Python `if`, a
        # host-device sync every step; a NaN loss is _check_finite's job.
        self.train_loss, self.val_loss, self.test_loss = (
            MeanMetric(nan_strategy="disable") for _ in range(3)
        )
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        # Kept in checkpoints: a resumed run's best is over all its epochs, not those since the resume.
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)
        if tta:
            self.val_acc_tta = MulticlassAccuracy(num_classes, average="micro")
            self.test_acc_tta = MulticlassAccuracy(num_classes, average="micro")
        self._ema = False  # set in setup(): whether evaluation sees averaged weights
        # Images trained on per epoch, summed over ranks: DDP must see each sample once.
        self.train_samples = SumMetric(nan_strategy="disable")
        self._epoch_lr: float | None = None  # train/lr: the lr the current epoch started with
        self._resumed_epoch_lr: float | None = None  # to log at the first batch after a resume

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=self.memory_format)
        return self._compiled(x) if self._compiled is not None else self.net(x)

    def setup(self, stage: str) -> None:
        check_sam_precision(self.uses_sam, self.trainer.precision)
        self.net.to(memory_format=self.memory_format)
        # Lightning's WeightAveraging swaps the averaged weights in for validation and copies
        # them in when fit ends; a checkpoint's state_dict holds them (mode=test).
        self._ema = any(isinstance(c, WeightAveraging) for c in self.trainer.callbacks)
        if self.hparams.compile and self._compiled is None:  # fit then test: compile once
            self._compiled = CompileFallback(
                self.net, self.hparams.compile_backend, self.hparams.get("compile_mode", "default")
            )

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        target = y
        if self.mixing is not None:  # soft targets; the criterion takes probabilities
            x, target = self.mixing(x, y)
            y = dominant_label(target)
        if self.uses_sam:
            logits, loss = self._sam_step(x, target)
        else:
            logits = self(x)
            loss = self.criterion(logits, target)
        self._check_finite(loss, batch_idx)
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
        self._stop_if_diverged()
        if self.uses_sam:
            self._step_schedulers("epoch")

    def _step_schedulers(self, interval: str) -> None:
        # Lightning steps schedulers only under automatic optimisation; SAM steps its own.
        scheduler = self.lr_schedulers()
        if scheduler is None or self.hparams.scheduler_interval != interval:
            return
        if isinstance(scheduler, ReduceLROnPlateau):
            scheduler.step(self.trainer.callback_metrics[self.hparams.scheduler_monitor])
        else:
            scheduler.step()

    def _check_finite(self, loss: torch.Tensor, batch_idx: int) -> None:
        # The training step's index over the whole fit (SAM and gradient accumulation included).
        step = self.trainer.fit_loop.epoch_loop.total_batch_idx if self._trainer else batch_idx
        self._nonfinite.update(loss, step, self.current_epoch, batch_idx)
        if (step + 1) % self.hparams.divergence_check_every == 0:
            self._stop_if_diverged()

    def on_validation_start(self) -> None:
        # Before validation and the checkpoints written after it see the diverged weights.
        if not self.trainer.sanity_checking:
            self._stop_if_diverged()

    def _stop_if_diverged(self) -> None:
        found = self._nonfinite.read()  # waits for the device: every N steps, not every step
        # Every rank reads at the same steps; if any diverged, all stop (none waits in a collective).
        if self.trainer.strategy.reduce_boolean_decision(found is not None, all=False):
            where = (
                "on another rank"
                if found is None
                else f"{found[3]} at step {found[0]} (epoch {found[1]}, batch {found[2]})"
            )
            raise DivergedError(
                f"train/loss became {where}; stopped at step "
                f"{self.trainer.fit_loop.epoch_loop.total_batch_idx} (the loss is "
                f"read every module.divergence_check_every="
                f"{self.hparams.divergence_check_every} steps)"
            )

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
        if self.hparams.tta:
            tta_metric = getattr(self, f"{prefix}_acc_tta")
            tta_metric(tta_logits(self, x), y)
            self.log(f"{prefix}/acc_tta", tta_metric, on_step=False, on_epoch=True)
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
            warmup_epochs=self.hparams.warmup_epochs,
            warmup_start_factor=self.hparams.warmup_start_factor,
        )
        scheduler = {"scheduler": built, "interval": self.hparams.scheduler_interval}
        if isinstance(built, ReduceLROnPlateau) and self.automatic_optimization:
            scheduler["monitor"] = self.hparams.scheduler_monitor  # under SAM, _step_schedulers reads it
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def _steps_per_epoch(self) -> int:
        # Lightning's estimate loads the training data first: its batches per epoch then count
        # limit_train_batches and the DDP shard; an optimizer step takes accumulate_grad_batches.
        if self.trainer.estimated_stepping_batches == float("inf"):
            raise ConfigError("a scheduler that counts optimizer steps needs a training set of known length")
        return math.ceil(self.trainer.num_training_batches / self.trainer.accumulate_grad_batches)


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


class FirstNonFinite:
    """The first training step whose loss was NaN or infinite, kept on the loss's device.

    ``update`` runs every step without waiting for the device (``torch.where`` on device
    tensors, no Python ``if`` on a device value); ``read`` waits for it once. Host-side, the
    epoch and batch of each step since the last read are kept to name the step in the error.
    """

    def __init__(self) -> None:
        self._step: torch.Tensor | None = None  # -1 while every loss was finite
        self._value: torch.Tensor | None = None
        self._where: dict[int, tuple[int, int]] = {}

    def update(self, loss: torch.Tensor, step: int, epoch: int, batch_idx: int) -> None:
        loss = loss.detach().float()
        if self._step is None or self._step.device != loss.device:
            self._step = torch.full((), -1, dtype=torch.long, device=loss.device)
            self._value = torch.zeros((), device=loss.device)
        first = ~torch.isfinite(loss) & (self._step < 0)
        self._step = torch.where(first, step, self._step)
        self._value = torch.where(first, loss, self._value)
        self._where[step] = (epoch, batch_idx)

    def read(self) -> tuple[int, int, int, float] | None:
        """``(step, epoch, batch, loss)`` of the first non-finite loss, or ``None``."""
        if self._step is None:
            return None
        step = int(self._step)
        if step < 0:
            self._where.clear()
            return None
        epoch, batch = self._where.get(step, (-1, -1))
        return step, epoch, batch, float(self._value)
