"""Linear learning-rate warm-up in front of any scheduler, plateau schedulers included.

Goyal et al. 2017 ("Accurate, Large Minibatch SGD") ramp the lr linearly over the first epochs and
then follow the usual schedule in absolute epochs; so does this wrapper: the wrapped scheduler
steps from the start as if there were no warm-up, and during the first ``warmup_epochs`` steps its
lr is multiplied by ``start_factor + (1 - start_factor) * t / warmup_epochs``. A cosine schedule
over ``max_epochs`` therefore still ends at its minimum on the last epoch, and a milestone at epoch
32 stays at epoch 32 (``torch.optim.lr_scheduler.SequentialLR`` would delay the whole schedule
by the warm-up, and it cannot hold a ``ReduceLROnPlateau``).

The wrapped scheduler keeps its own lr: before each of its steps the wrapper puts that lr back in
the optimizer, so recursive schedulers (``ExponentialLR``, ``MultiStepLR`` and ``CosineAnnealingLR``
compute the next lr from the current one) and ``ReduceLROnPlateau`` (which scales the current one)
never see the warm-up factor. Wrapping a ``ReduceLROnPlateau`` gives a ``ReduceLROnPlateau``
(:class:`LinearWarmupPlateau`), so Lightning still passes it the monitored metric. Knows nothing of
Lightning or Hydra.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, SupportsFloat

from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from pyramid_lab.errors import ConfigError

__all__ = ["LinearWarmup", "LinearWarmupPlateau", "WarmedUp", "linear_warmup", "with_warmup"]


def _set_lrs(optimizer: Optimizer, lrs: list[float]) -> None:
    for group, lr in zip(optimizer.param_groups, lrs, strict=True):
        if isinstance(group["lr"], Tensor):  # capturable/fused optimizers keep lr on the device
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def _check(warmup_epochs: int, start_factor: float) -> None:
    if isinstance(warmup_epochs, bool) or int(warmup_epochs) != warmup_epochs or warmup_epochs < 0:
        raise ConfigError(
            f"module.scheduler.warmup_epochs={warmup_epochs!r} must be an integer >= 0 "
            "(scheduler steps: epochs; 0 = no warm-up)"
        )
    if not 0 < start_factor <= 1:
        raise ConfigError(
            f"module.scheduler.warmup_start_factor={start_factor!r} must be in (0, 1] "
            "(the first lr as a fraction of the scheduled lr)"
        )


class _Warmup:
    """What both wrappers share; ``scheduler`` was built on ``optimizer`` just before."""

    optimizer: Optimizer
    scheduler: LRScheduler
    last_epoch: int
    _last_lr: list[float]

    def _init_warmup(
        self, optimizer: Optimizer, scheduler: LRScheduler, warmup_epochs: int, start_factor: float
    ) -> None:
        _check(warmup_epochs, start_factor)
        if scheduler.optimizer is not optimizer:
            raise ValueError("the wrapped scheduler must schedule the same optimizer")
        self.optimizer, self.scheduler = optimizer, scheduler
        self.warmup_epochs, self.start_factor = int(warmup_epochs), float(start_factor)
        self.last_epoch = 0
        self._scheduled = [float(group["lr"]) for group in optimizer.param_groups]
        self._apply()

    def factor(self, epoch: int) -> float:
        """The warm-up factor at step count ``epoch`` (1 from ``warmup_epochs`` on)."""
        if epoch >= self.warmup_epochs:
            return 1.0
        return self.start_factor + (1.0 - self.start_factor) * epoch / self.warmup_epochs

    def _apply(self) -> None:
        factor = self.factor(self.last_epoch)
        _set_lrs(self.optimizer, [lr * factor for lr in self._scheduled])
        self._last_lr = [float(group["lr"]) for group in self.optimizer.param_groups]

    def _step(self, *args: Any) -> None:
        _set_lrs(self.optimizer, self._scheduled)  # the wrapped scheduler's own lr
        self.scheduler.step(*args)
        self._scheduled = [float(group["lr"]) for group in self.optimizer.param_groups]
        self.last_epoch += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return self._last_lr

    def state_dict(self) -> dict[str, Any]:
        return {
            "last_epoch": self.last_epoch,
            "scheduled": self._scheduled,
            "warmup_epochs": self.warmup_epochs,
            "start_factor": self.start_factor,
            "scheduler": self.scheduler.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state_dict["scheduler"])
        self.last_epoch, self._scheduled = state_dict["last_epoch"], list(state_dict["scheduled"])
        self.warmup_epochs, self.start_factor = state_dict["warmup_epochs"], state_dict["start_factor"]
        self._apply()


class LinearWarmup(_Warmup, LRScheduler):
    """Linear warm-up over ``warmup_epochs`` steps, then ``scheduler`` (any ``LRScheduler``).

    Args:
        optimizer: the optimizer that ``scheduler`` schedules.
        scheduler: the schedule after (and, in absolute epochs, under) the warm-up.
        warmup_epochs: warm-up length in scheduler steps (epochs with ``interval: epoch``).
        start_factor: the first lr as a fraction of the scheduled one, in (0, 1].
    """

    def __init__(
        self, optimizer: Optimizer, scheduler: LRScheduler, warmup_epochs: int = 5, start_factor: float = 0.1
    ) -> None:
        # LRScheduler.__init__ is not called: it would take a step; this class steps the wrapped one.
        self._init_warmup(optimizer, scheduler, warmup_epochs, start_factor)

    def step(self, epoch: int | None = None) -> None:  # type: ignore[override]
        if epoch is not None:
            raise ValueError("LinearWarmup.step() takes no epoch (deprecated in torch as well)")
        self._step()


class LinearWarmupPlateau(_Warmup, ReduceLROnPlateau):
    """Linear warm-up over ``warmup_epochs`` steps in front of a ``ReduceLROnPlateau``; the
    metric goes to the wrapped scheduler at every step (during the warm-up the loss usually falls,
    so it rarely reduces then). Arguments as :class:`LinearWarmup`."""

    def __init__(
        self,
        optimizer: Optimizer,
        scheduler: ReduceLROnPlateau,
        warmup_epochs: int = 5,
        start_factor: float = 0.1,
    ) -> None:
        self._init_warmup(optimizer, scheduler, warmup_epochs, start_factor)

    def step(  # type: ignore[override]
        self, metrics: SupportsFloat | None = None, epoch: int | None = None
    ) -> None:
        if epoch is not None:
            raise ValueError("LinearWarmupPlateau.step() takes no epoch")
        self._step(*(() if metrics is None else (metrics,)))


def linear_warmup(
    optimizer: Optimizer, scheduler: LRScheduler, warmup_epochs: int = 5, start_factor: float = 0.1
) -> LinearWarmup | LinearWarmupPlateau | LRScheduler:
    """``scheduler`` with a linear warm-up in front (the right wrapper for its kind); the scheduler
    itself when ``warmup_epochs`` is 0.

    Args:
        optimizer: the optimizer ``scheduler`` was built on.
        scheduler: any ``torch.optim.lr_scheduler`` scheduler, ``ReduceLROnPlateau`` included.
        warmup_epochs: warm-up length in scheduler steps.
        start_factor: the first lr as a fraction of the scheduled one, in (0, 1].
    """
    _check(warmup_epochs, start_factor)
    if warmup_epochs == 0:
        return scheduler
    cls = LinearWarmupPlateau if isinstance(scheduler, ReduceLROnPlateau) else LinearWarmup
    return cls(optimizer, scheduler, warmup_epochs, start_factor)


SchedulerFactory = Callable[[Optimizer], Any]


@dataclass(frozen=True)
class WarmedUp:
    """A scheduler factory with a linear warm-up of ``warmup_epochs`` epochs in front
    (:func:`with_warmup`). Called with the optimizer it counts the warm-up in the scheduler's own
    steps; :func:`pyramid_lab.optim.schedule.build_schedule` reads the fields instead, to turn the
    epochs into optimizer steps when the scheduler is stepped every optimizer step."""

    scheduler: SchedulerFactory
    warmup_epochs: int
    start_factor: float

    def __call__(self, optimizer: Optimizer) -> LinearWarmup | LinearWarmupPlateau | LRScheduler:
        return linear_warmup(optimizer, self.scheduler(optimizer), self.warmup_epochs, self.start_factor)


def with_warmup(
    scheduler: SchedulerFactory | None, warmup_epochs: int = 0, warmup_start_factor: float = 0.1
) -> SchedulerFactory | None:
    """A scheduler factory (``optimizer -> scheduler``) with :func:`linear_warmup` in front: what
    the LightningModule takes (conf/config.yaml's ``module.scheduler``). ``scheduler`` itself
    when there is no warm-up or no scheduler (a constant lr has nothing to warm up)."""
    _check(warmup_epochs, warmup_start_factor)
    if scheduler is None or warmup_epochs == 0:
        return scheduler
    return WarmedUp(scheduler, warmup_epochs, warmup_start_factor)
