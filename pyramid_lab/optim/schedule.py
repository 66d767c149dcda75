"""The lr scheduler of a run from its factory: the optimizer, the steps per epoch, the warm-up.

A scheduler factory (the ``scheduler`` group, ``_partial_: true``) is called with the optimizer;
one that also takes ``steps_per_epoch`` (``pyramid_lab.optim.cosine_periodic``, or torch's
``OneCycleLR``) counts optimizer steps and is given the number of optimizer steps in a training
epoch, which only the trainer knows once the training data is loaded (so it is asked for only
then). Such a scheduler must be stepped every optimizer step (``module.scheduler_interval=step``;
its config sets it).

The warm-up (``pyramid_lab.optim.warmup``, ``module.scheduler.warmup_epochs``) is
``warmup_epochs`` epochs whatever the interval: a scheduler stepped every optimizer step warms up
over ``warmup_epochs * steps_per_epoch`` steps.
Knows nothing of Lightning or Hydra.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from pyramid_lab.errors import ConfigError
from pyramid_lab.optim.warmup import WarmedUp, linear_warmup

__all__ = ["build_schedule", "check_interval", "counts_steps"]

SchedulerFactory = Callable[..., LRScheduler | ReduceLROnPlateau]


def counts_steps(factory: SchedulerFactory) -> bool:
    """Whether ``factory`` takes ``steps_per_epoch``: a schedule in optimizer steps."""
    try:
        return "steps_per_epoch" in inspect.signature(factory).parameters
    except (TypeError, ValueError):  # no signature to read (a builtin): an epoch schedule
        return False


def check_interval(factory: SchedulerFactory, interval: str) -> None:
    """Raise a one-line ConfigError when a scheduler that counts optimizer steps would be stepped
    once per epoch (checked before a run starts, and again when the schedule is built)."""
    if counts_steps(factory) and interval != "step":
        name = getattr(getattr(factory, "func", factory), "__name__", "the scheduler")
        raise ConfigError(
            f"module.scheduler_interval={interval!r} but the scheduler ({name}) counts "
            "optimizer steps; set module.scheduler_interval=step"
        )


def build_schedule(
    factory: SchedulerFactory,
    optimizer: Optimizer,
    *,
    interval: str,
    steps_per_epoch: Callable[[], int],
    warmup_epochs: int = 0,
    warmup_start_factor: float = 0.1,
) -> LRScheduler | ReduceLROnPlateau:
    """``factory(optimizer)`` (with ``steps_per_epoch`` if it takes it) behind a linear warm-up.

    Args:
        factory: the ``scheduler`` group's partial, or the module's
            :class:`~pyramid_lab.optim.warmup.WarmedUp` of it, whose warm-up then applies.
        optimizer: the optimizer (or SAM) to schedule.
        interval: ``"epoch"`` or ``"step"``: when the scheduler will be stepped
            (``module.scheduler_interval``).
        steps_per_epoch: returns the optimizer steps per training epoch; called only when needed
            (a step-counting factory, or a warm-up under ``interval="step"``).
        warmup_epochs: linear warm-up length in epochs; 0 = none.
        warmup_start_factor: the first warm-up lr as a fraction of the scheduled lr, in (0, 1].

    Raises:
        ConfigError: a step-counting scheduler with ``interval="epoch"``.
    """
    if isinstance(factory, WarmedUp):
        factory, warmup_epochs, warmup_start_factor = (
            factory.scheduler,
            factory.warmup_epochs,
            factory.start_factor,
        )
    check_interval(factory, interval)
    if counts_steps(factory):
        scheduler = factory(optimizer, steps_per_epoch=steps_per_epoch())
    else:
        scheduler = factory(optimizer)
    warmup_steps = warmup_epochs
    if interval == "step" and isinstance(warmup_epochs, int) and warmup_epochs > 0:
        warmup_steps = warmup_epochs * steps_per_epoch()  # a bad value is named as given, below
    return linear_warmup(optimizer, scheduler, warmup_steps, warmup_start_factor)
