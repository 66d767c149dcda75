"""An exponential moving average of the weights, evaluated and checkpointed (Lightning's
``WeightAveraging`` over ``torch.optim.swa_utils.AveragedModel``).

What Lightning 2.6's ``WeightAveraging`` does, and why it fits (read from its source):

- BatchNorm: ``use_buffers=True`` (its default) averages the buffers with the weights, so the
  running mean/variance are the EMA of the trained model's statistics (as timm's ``ModelEmaV2``),
  consistent with the averaged weights without a pass over the data (``update_bn``).
- Evaluation: it swaps the averaged weights in for every validation epoch (``val/*`` and the best
  checkpoint by ``val/acc`` are the EMA model's) and copies them into the model when training ends,
  so the ``trainer.test`` that follows fit tests the EMA model.
- Checkpoints: ``state_dict`` holds the averaged weights (so ``mode=test``/``predict`` from any
  checkpoint use the EMA model), ``current_model_state`` the trained ones and ``averaging_state``
  the update count; resuming a fit restores both models.

What we add: a decay warm-up, ``decay_t = min(decay, (1 + t) / (10 + t))`` after ``t`` updates
(TensorFlow's ``ExponentialMovingAverage(num_updates=...)``, timm's ``ModelEma`` warm-up), so that
short runs (a few hundred steps) are not dominated by the initial weights; ``warmup=False`` is
``torch.optim.swa_utils.get_ema_avg_fn(decay)`` exactly. The step count comes from
``trainer.global_step`` (host-side: no device read, and right after a resume).
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import WeightAveraging
from torch import Tensor

from pyramid_lab.errors import ConfigError

__all__ = ["EMA"]


class EMA(WeightAveraging):
    """EMA of the weights and BatchNorm buffers, updated after every optimizer step.

    Args:
        decay: per-step decay (0.999: a horizon of ~1,000 steps, ~1.4 CINIC-10 epochs at batch 256).
        warmup: ramp the decay up as ``min(decay, (1 + t) / (10 + t))``.
        use_buffers: average the buffers (BatchNorm statistics) too; ``False`` leaves them to
            ``torch.optim.swa_utils.update_bn``.
        device: where the averaged copy lives (default: the model's device).
    """

    def __init__(
        self, decay: float = 0.999, warmup: bool = True, use_buffers: bool = True, device: str | None = None
    ) -> None:
        if not 0 <= decay < 1:
            raise ConfigError(f"callbacks.ema.decay={decay!r} must be in [0, 1) (e.g. 0.999)")
        super().__init__(device=device, use_buffers=use_buffers, multi_avg_fn=self._average)
        self.decay, self.warmup = float(decay), bool(warmup)
        self._updates = 0  # updates done before the current one (set from trainer.global_step)

    def decay_at(self, updates: int) -> float:
        """The decay of update ``updates + 1`` (the first update copies the weights)."""
        return min(self.decay, (1 + updates) / (10 + updates)) if self.warmup else self.decay

    def _average(self, averaged: list[Tensor], current: list[Tensor], num_averaged: Tensor) -> None:
        decay = self.decay_at(self._updates)
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, 1.0 - decay)
        else:  # num_batches_tracked: the trained model's count
            for a, c in zip(averaged, current, strict=True):
                a.copy_(c)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # global_step counts optimizer steps already taken, this one included: the first EMA
        # update (a copy) comes after step 1, so update t + 1 follows step t + 1.
        self._updates = max(trainer.global_step - 1, 0)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(decay={self.decay}, warmup={self.warmup})"
