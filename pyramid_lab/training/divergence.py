"""Stop a run whose training loss became NaN or infinite, without waiting for the device each step."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

from pyramid_lab.errors import ConfigError, DivergedError

__all__ = ["DivergenceWatch", "FirstNonFinite"]


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


class DivergenceWatch(pl.Callback):
    """Raise ``DivergedError`` once the training loss has been NaN or infinite.

    The loss of every training step (``training_step``'s return value) is recorded on the device
    without waiting for it; the record is read every ``check_every`` steps (each read waits for
    the device once), at the end of each training epoch and before each validation (so that
    neither validation nor the checkpoints written after it see the diverged weights). A loss
    that becomes NaN or inf at step k stops the run by step k + N - 1, naming step k.

    Args:
        check_every: N, training steps between reads of the record (an integer >= 1).
    """

    def __init__(self, check_every: int = 100) -> None:
        if isinstance(check_every, bool) or int(check_every) != check_every or check_every < 1:
            raise ConfigError(
                f"callbacks.divergence.check_every={check_every!r} must be an "
                "integer >= 1 (steps between reads of the finite-loss flag)"
            )
        self.check_every = int(check_every)
        self._nonfinite = FirstNonFinite()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        # The training step's index over the whole fit (SAM and gradient accumulation included).
        step = trainer.fit_loop.epoch_loop.total_batch_idx
        self._nonfinite.update(loss, step, trainer.current_epoch, batch_idx)
        if (step + 1) % self.check_every == 0:
            self._stop_if_diverged(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop_if_diverged(trainer)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._stop_if_diverged(trainer)

    def _stop_if_diverged(self, trainer: pl.Trainer) -> None:
        found = self._nonfinite.read()  # waits for the device: every N steps, not every step
        # Every rank reads at the same steps; if any diverged, all stop (none waits in a collective).
        if trainer.strategy.reduce_boolean_decision(found is not None, all=False):
            where = (
                "on another rank"
                if found is None
                else f"{found[3]} at step {found[0]} (epoch {found[1]}, batch {found[2]})"
            )
            raise DivergedError(
                f"train/loss became {where}; stopped at step "
                f"{trainer.fit_loop.epoch_loop.total_batch_idx} (the loss is read every "
                f"callbacks.divergence.check_every={self.check_every} steps)"
            )
