"""Learning-rate schedules of the study's Table 3 that PyTorch does not build as configured.

- ``multistep``: the baseline MultiStepLR (milestones 32 and 64 of 100 epochs, gamma 0.1), with
  milestones given as epochs or as fractions of the run.
- ``cosine_periodic``: a cosine whose half-period is shorter than the run, so the lr keeps falling
  and rising: the reading of Table 3's "CosineAnnealing" that its text describes. Stepped every
  optimizer step (its factory takes ``steps_per_epoch``, see ``pyramid_lab.optim.schedule``).
- ``WarmupPlateau``: the study's "LossPlateauDecay": a linear warm-up, then reduce-on-plateau.
- ``snapshot_epochs``: where CosineAnnealingWarmRestarts ends its cycles, the points a snapshot
  ensemble saves (Huang et al. 2017; the study, section D-3).

CosineAnnealingLR, CosineAnnealingWarmRestarts, ExponentialLR and StepLR (the staircase
exponential) are used from ``torch`` directly (``conf/scheduler/``). Every builder but
``cosine_periodic`` is stepped once per epoch (Lightning ``interval: epoch``).

A bad value raises ``ConfigError`` naming its Hydra key: the scheduler's arguments are the
``scheduler`` group's keys (``scheduler.milestones``, ...).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Literal, SupportsFloat

from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, MultiStepLR, ReduceLROnPlateau

from pyramid_lab.errors import ConfigError, is_finite_number

__all__ = ["PeriodicCosine", "WarmupPlateau", "cosine_periodic", "multistep", "snapshot_epochs"]

_KEY = "scheduler"


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_gamma(name: str, value: object) -> None:
    if not is_finite_number(value) or not 0 < value <= 1:  # type: ignore[operator]
        raise ConfigError(f"{_KEY}.{name}={value!r} must be in (0, 1] (lr multiplier per decay)")


def multistep(
    optimizer: Optimizer,
    milestones: Sequence[int | float],
    gamma: float = 0.1,
    max_epochs: int | None = None,
) -> MultiStepLR:
    """MultiStepLR with milestones as epochs or as fractions of the run.

    The study's baseline (docs/study.md, Table 3) divides the lr by 10 at epochs 32 and 64 of 100;
    ``[0.32, 0.64]`` keeps those proportions for any ``max_epochs``.

    Args:
        optimizer: the optimizer (or SAM) whose lr to schedule.
        milestones: epochs (ints, 0-based count of ``step()`` calls) at which the lr is multiplied
            by ``gamma``, or fractions of ``max_epochs`` (floats in (0, 1)), rounded to the nearest
            epoch and kept inside ``[1, max_epochs - 1]``; both may be mixed. In a run too short
            to separate them (2 epochs of [0.32, 0.64]) fractions may land on the same epoch:
            that warns, and the decays compound there, as MultiStepLR does with repeats.
        gamma: multiplicative decay per milestone, in (0, 1].
        max_epochs: length of the run in epochs; needed for fractions and used to check that every
            milestone falls inside the run. ``None`` or ``-1`` (Lightning's "no limit") skip the
            upper bound.

    Returns:
        A ``torch.optim.lr_scheduler.MultiStepLR`` over integer epochs.

    Raises:
        ConfigError: an epoch milestone outside ``[1, max_epochs - 1]``, a fraction without
            ``max_epochs``, or ``gamma`` outside (0, 1].
    """
    _check_gamma("gamma", gamma)
    bounded = max_epochs is not None and max_epochs != -1
    if bounded and (not _is_int(max_epochs) or max_epochs < 1):  # type: ignore[operator]
        raise ConfigError(f"{_KEY}.max_epochs={max_epochs!r} must be a positive number of epochs, or null")
    if isinstance(milestones, (str, bytes)) or not isinstance(milestones, Sequence):
        raise ConfigError(
            f"{_KEY}.milestones={milestones!r} must be a list of epochs (e.g. [32, 64]) or of "
            "fractions of trainer.max_epochs (e.g. [0.32, 0.64])"
        )
    valid = f"[1, {max_epochs - 1}]" if bounded else ">= 1"  # type: ignore[operator]
    epochs: list[int] = []
    for m in milestones:
        if _is_int(m):
            epoch = m
        elif is_finite_number(m) and 0 < m < 1:
            if not bounded:
                raise ConfigError(
                    f"{_KEY}.milestones={list(milestones)} has fractions but max_epochs is not "
                    "set; give epochs (ints) or set scheduler.max_epochs"
                )
            # A smoke run of a few epochs must still run: keep the decay inside the run.
            epoch = min(max(round(m * max_epochs), 1), max(max_epochs - 1, 1))  # type: ignore[operator]
        else:
            raise ConfigError(
                f"{_KEY}.milestones={list(milestones)}: {m!r} is neither an epoch (int) nor a "
                "fraction of the run in (0, 1)"
            )
        if _is_int(m) and (epoch < 1 or (bounded and epoch >= max_epochs)):  # type: ignore[operator]
            raise ConfigError(
                f"{_KEY}.milestones={list(milestones)}: {m!r} is epoch {epoch}, outside the valid "
                f"range {valid} for max_epochs={max_epochs}"
            )
        epochs.append(epoch)
    if len(set(epochs)) != len(epochs):
        warnings.warn(
            f"{_KEY}.milestones={list(milestones)} gives repeated epochs {epochs} for "
            f"max_epochs={max_epochs}: the decays at a repeated epoch compound",
            stacklevel=2,
        )
    return MultiStepLR(optimizer, milestones=sorted(epochs), gamma=gamma)


class PeriodicCosine(LRScheduler):
    """A cosine that falls from the optimizer's lr to ``eta_min`` over ``half_period`` steps, rises
    back over the next ``half_period``, and so on (CosineAnnealingLR's curve past its ``T_max``).

    Step ``k`` (0-based, one per optimizer step) trains at the cosine's value at the middle of
    the step, ``k + 1/2``::

        lr_k = eta_min + (lr - eta_min) * (1 + cos(pi * (k + 1/2) / half_period)) / 2

    so the troughs fall between two steps and no step trains at ``eta_min`` itself: with
    ``eta_min = 0`` (torch's default, and the study gives none) no step is wasted at lr 0, and the
    lowest lr, next to a trough, is about ``lr * (pi / (4 * half_period))**2``. In closed form
    from the step count, so a resumed run (``last_epoch`` comes back from the checkpoint) and a
    warm-up wrapper that rewrites the optimizer's lr see the same curve.

    Args:
        optimizer: the optimizer (or SAM) whose lr to schedule; its lr is the peak.
        half_period: steps from a peak to the next trough (>= 1).
        eta_min: the lr at the troughs, >= 0.
        last_epoch: the index of the last step taken (-1: none; torch's convention).
    """

    def __init__(
        self, optimizer: Optimizer, half_period: int, eta_min: float = 0.0, last_epoch: int = -1
    ) -> None:
        if not _is_int(half_period) or half_period < 1:
            raise ValueError(f"PeriodicCosine: half_period={half_period!r} must be an integer >= 1 (steps)")
        self.half_period, self.eta_min = half_period, float(eta_min)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:  # type: ignore[override]
        phase = math.pi * (self.last_epoch + 0.5) / self.half_period
        return [self.eta_min + (base - self.eta_min) * (1 + math.cos(phase)) / 2 for base in self.base_lrs]


def cosine_periodic(
    optimizer: Optimizer,
    half_period: int | float = 0.2,
    max_epochs: int | None = None,
    eta_min: float = 0.0,
    *,
    steps_per_epoch: int,
) -> PeriodicCosine:
    """A :class:`PeriodicCosine` whose half-period is given in epochs (or as a fraction of the
    run) and stepped every optimizer step: the lr falls from its peak to ``eta_min`` over
    ``half_period`` epochs, rises back over the next ``half_period``, and so on, smoothly.

    Table 3's text explains CosineAnnealing's gain by the lr "rising and falling periodically"
    (docs/study.md); PyTorch's CosineAnnealingLR does exactly that past ``T_max``. Stepped once
    per epoch, as it was, every trough is a whole epoch at ``eta_min`` (0: epochs 20 and 60 of
    100 trained nothing); stepped per optimizer step, a trough is a point between two steps. The
    default, a fifth of the run, gives five half-periods: troughs at the ends of epochs 20, 60 and
    100 of 100, peaks at 40 and 80.

    Args:
        optimizer: the optimizer (or SAM) whose lr to schedule.
        half_period: epochs (int) from a peak to the next trough, or a fraction of
            ``max_epochs`` (float in (0, 1]).
        max_epochs: length of the run in epochs; needed for a fraction.
        eta_min: the lr at each trough, >= 0.
        steps_per_epoch: optimizer steps per training epoch (>= 1), given by the LightningModule
            (``pyramid_lab.optim.schedule``), which then steps the scheduler every optimizer step.

    Raises:
        ConfigError: a half-period that is not a positive epoch count or a fraction in (0, 1],
            or a negative ``eta_min``.
    """
    if _is_int(half_period) and half_period >= 1:
        epochs = half_period
    elif is_finite_number(half_period) and 0 < half_period <= 1 and not _is_int(half_period):
        if not _is_int(max_epochs) or max_epochs < 1:  # type: ignore[operator]
            raise ConfigError(
                f"{_KEY}.half_period={half_period!r} is a fraction of the run but max_epochs="
                f"{max_epochs!r}; give epochs (an int) or a positive max_epochs"
            )
        epochs = max(1, round(half_period * max_epochs))  # type: ignore[operator]
    else:
        raise ConfigError(
            f"{_KEY}.half_period={half_period!r} must be epochs (an int >= 1) or a fraction of "
            "the run in (0, 1]"
        )
    if not is_finite_number(eta_min) or eta_min < 0:  # type: ignore[operator]
        raise ConfigError(f"{_KEY}.eta_min={eta_min!r} must be a number >= 0 (the lr at the troughs)")
    if not _is_int(steps_per_epoch) or steps_per_epoch < 1:
        raise ValueError(f"cosine_periodic: steps_per_epoch={steps_per_epoch!r} must be an integer >= 1")
    return PeriodicCosine(optimizer, epochs * steps_per_epoch, eta_min)


class WarmupPlateau(ReduceLROnPlateau):
    """Linear warm-up, then reduce-on-plateau: the study's "LossPlateauDecay" (Table 3).

    For the first ``warmup_epochs`` calls of :meth:`step` the lr rises linearly from
    ``warmup_start_factor * lr`` (set at construction) to the optimizer's lr, ignoring the metric;
    from then on it is ``torch.optim.lr_scheduler.ReduceLROnPlateau``: after more than
    ``patience`` epochs without an improvement of the monitored metric, the lr is multiplied by
    ``factor`` (not below ``min_lr``). The study gives neither the warm-up length nor the patience
    (conf/scheduler/plateau.yaml records our choice).

    Being a ``ReduceLROnPlateau``, Lightning recognises it as a plateau scheduler and passes the
    monitored value: ``{"scheduler": s, "interval": "epoch", "monitor": "val/loss"}``.

    Args:
        optimizer: the optimizer (or SAM) whose lr to schedule; its current lr is the peak.
        warmup_epochs: length of the linear warm-up, in ``step()`` calls; 0 disables it.
        warmup_start_factor: lr at epoch 0 as a fraction of the peak lr, in (0, 1].
        mode: ``min`` (a loss) or ``max`` (an accuracy).
        factor: lr multiplier at each reduction, in (0, 1).
        patience: epochs without improvement tolerated before a reduction.
        threshold: smallest change that counts as an improvement (see ``threshold_mode``).
        threshold_mode: ``rel`` (relative to the best value) or ``abs``.
        cooldown: epochs after a reduction during which bad epochs are not counted.
        min_lr: lower bound of the lr.
        eps: reductions smaller than this are skipped.

    Raises:
        ConfigError: any argument outside its range.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_epochs: int = 5,
        warmup_start_factor: float = 0.1,
        mode: Literal["min", "max"] = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: Literal["rel", "abs"] = "rel",
        cooldown: int = 0,
        min_lr: float = 0.0,
        eps: float = 1e-8,
    ) -> None:
        for name, value in (
            ("warmup_epochs", warmup_epochs),
            ("patience", patience),
            ("cooldown", cooldown),
        ):
            if not _is_int(value) or value < 0:
                raise ConfigError(f"{_KEY}.{name}={value!r} must be an integer >= 0 (epochs)")
        if not is_finite_number(warmup_start_factor) or not 0 < warmup_start_factor <= 1:
            raise ConfigError(
                f"{_KEY}.warmup_start_factor={warmup_start_factor!r} must be in (0, 1] "
                "(first lr of the warm-up as a fraction of the peak lr)"
            )
        if not is_finite_number(factor) or not 0 < factor < 1:
            raise ConfigError(f"{_KEY}.factor={factor!r} must be in (0, 1) (lr multiplier on a plateau)")
        if mode not in ("min", "max"):
            raise ConfigError(f"{_KEY}.mode={mode!r} must be 'min' (a loss) or 'max' (an accuracy)")
        if threshold_mode not in ("rel", "abs"):
            raise ConfigError(f"{_KEY}.threshold_mode={threshold_mode!r} must be 'rel' or 'abs'")
        for name, value in (("threshold", threshold), ("min_lr", min_lr), ("eps", eps)):
            if not is_finite_number(value) or value < 0:
                raise ConfigError(f"{_KEY}.{name}={value!r} must be a number >= 0")
        super().__init__(
            optimizer,
            mode=mode,
            factor=factor,
            patience=patience,
            threshold=threshold,
            threshold_mode=threshold_mode,
            cooldown=cooldown,
            min_lr=min_lr,
            eps=eps,
        )
        self.warmup_epochs = warmup_epochs
        self.warmup_start_factor = warmup_start_factor
        self.peak_lrs = [float(group["lr"]) for group in optimizer.param_groups]
        self._set_warmup_lr()

    def _set_warmup_lr(self) -> None:
        if self.warmup_epochs == 0:
            return
        progress = min(self.last_epoch / self.warmup_epochs, 1.0)
        scale = self.warmup_start_factor + (1.0 - self.warmup_start_factor) * progress
        for group, peak in zip(self.optimizer.param_groups, self.peak_lrs, strict=True):
            if isinstance(group["lr"], Tensor):  # capturable/fused optimizers keep lr on device
                group["lr"].fill_(peak * scale)
            else:
                group["lr"] = peak * scale
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    @property
    def in_warmup(self) -> bool:
        """Whether the next :meth:`step` is still a warm-up step (the metric is ignored)."""
        return self.last_epoch < self.warmup_epochs

    def step(self, metrics: SupportsFloat | None = None) -> None:  # type: ignore[override]
        """Advance one epoch.

        Args:
            metrics: the monitored value for the epoch just finished; ignored (may be ``None``)
                during the warm-up, required after it.

        Raises:
            ValueError: no metric after the warm-up.
        """
        if self.in_warmup:
            self.last_epoch += 1
            self._set_warmup_lr()
            return
        if metrics is None:
            raise ValueError(
                "WarmupPlateau.step() needs the monitored metric once the warm-up is over "
                f"(epoch {self.last_epoch + 1} > warmup_epochs={self.warmup_epochs})"
            )
        super().step(metrics)


def snapshot_epochs(T_0: int, T_mult: int, max_epochs: int) -> list[int]:  # noqa: N803
    """Last epoch (0-based) of each cycle of CosineAnnealingWarmRestarts that ends within the run.

    With one scheduler step per epoch, cycle ``i`` lasts ``T_0 * T_mult**i`` epochs and its last
    epoch is the one at the lowest lr: the point where a snapshot ensemble saves a model
    (Huang et al. 2017, "Snapshot Ensembles"; the study, section D-3).

    Args:
        T_0: epochs in the first cycle (>= 1).
        T_mult: growth factor of the cycle length (>= 1).
        max_epochs: epochs in the run (>= 1).

    Returns:
        E.g. ``snapshot_epochs(10, 2, 70) == [9, 29, 69]``; a cycle cut off by the end of the run
        is not included.

    Raises:
        ConfigError: an argument out of range.
    """
    for key, value, meaning in (
        (f"{_KEY}.T_0", T_0, "epochs in the first cycle"),
        (f"{_KEY}.T_mult", T_mult, "growth factor of the cycle length"),
        ("trainer.max_epochs", max_epochs, "epochs in the run"),
    ):
        if not _is_int(value) or value < 1:
            raise ConfigError(f"{key}={value!r} must be an integer >= 1 ({meaning})")
    ends, end, length = [], 0, T_0
    while end + length <= max_epochs:
        end += length
        ends.append(end - 1)
        length *= T_mult
    return ends
