"""SAM's training step: two forward/backward passes per update, as its own LightningModule.

``SAMClassifier`` is ``Classifier`` with the update replaced (Foret et al. 2021, Alg. 1) and,
because that update is driven by hand (Lightning's manual optimisation), the scheduler stepping
Lightning does only under automatic optimisation. ``pyramid_lab.build`` picks it whenever the
optimizer is ``pyramid_lab.optim.SAM``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau

from pyramid_lab.errors import ConfigError
from pyramid_lab.optim import SAM, frozen_bn_stats
from pyramid_lab.training.module import Classifier, OptimizerFactory

__all__ = ["SAMClassifier", "check_sam_precision", "is_sam"]


def is_sam(optimizer: OptimizerFactory) -> bool:
    """Whether ``optimizer`` (a class or a partial of one) builds a ``pyramid_lab.optim.SAM``."""
    target = optimizer.func if isinstance(optimizer, partial) else optimizer
    return isinstance(target, type) and issubclass(target, SAM)


def check_sam_precision(precision: str | int | None) -> None:
    """Refuse fp16 mixed precision for SAM: checked on what the user asked for, since on a CPU
    Lightning silently swaps 16-mixed for bf16-mixed."""
    if str(precision) in ("16-mixed", "16"):
        raise ConfigError(
            f"trainer.precision={precision} cannot drive SAM (its loss scaler steps once per "
            "backward); use bf16-mixed or 32-true"
        )


class SAMClassifier(Classifier):
    """``Classifier`` trained by SAM (``optimizer`` must build a ``pyramid_lab.optim.SAM``).

    BatchNorm statistics are updated by the first pass only, and the second pass replays the
    first one's random draws (ShakeDrop), as the official SAM code does by reusing one dropout key
    for both gradients: both see the same sub-network. Every scheduler works as under plain
    training: stepped per ``scheduler_interval``, a plateau scheduler fed ``scheduler_monitor``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not is_sam(self.optimizer_factory):
            raise ConfigError("SAMClassifier needs optimizer=sam (a pyramid_lab.optim.SAM)")
        self.automatic_optimization = False  # two forward/backward passes per step

    def _update(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One SAM update: gradient at w, ascend to w + e(w), gradient there, descend from w."""
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
        self._step_schedulers("epoch")

    def _step_schedulers(self, interval: str) -> None:
        # Lightning steps schedulers only under automatic optimisation.
        scheduler = self.lr_schedulers()
        if scheduler is None or self.hparams.scheduler_interval != interval:
            return
        if isinstance(scheduler, ReduceLROnPlateau):
            scheduler.step(self.trainer.callback_metrics[self.hparams.scheduler_monitor])
        else:
            scheduler.step()

    def configure_optimizers(self) -> dict[str, Any]:
        config = super().configure_optimizers()
        config.get("lr_scheduler", {}).pop("monitor", None)  # _step_schedulers reads it
        return config


def _capture_rng(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    # A CUDA generator's state (seed, offset) lives on the host: reading it does not sync.
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _restore_rng(device: torch.device, state: tuple[torch.Tensor, torch.Tensor | None]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)
