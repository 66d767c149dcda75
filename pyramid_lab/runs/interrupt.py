"""SIGTERM and Ctrl-C stop a fit between two training steps, with a checkpoint that resumes exactly.

A signal handled where it lands would stop a step half done (some weights updated, the RNG
advanced by an augmentation whose batch never trained) or stop validation half way (its metrics
lost, EMA weights swapped in); a checkpoint of that state cannot continue to the weights an
uninterrupted run reaches. So while a fit trains, SIGTERM and the first Ctrl-C (SIGINT) only set
Lightning's SIGTERM flag, which its loops read after a training step and its validation are done,
or after the epoch when the step was the epoch's last; outside validation at once, during
validation when it ends. Lightning then raises ``SIGTERMException``, and :class:`InterruptCheckpoint`
saves ``last.ckpt``: the weights, optimizer, scheduler, loop counters, the training loader's place
in its shuffle (pyramid_lab.data.sampler), the RNG states and the epoch's metric sums
(pyramid_lab.training.module). A second Ctrl-C stops at once, and then nothing is saved: the last
checkpoint written at a clean point stays the one a rerun resumes from. (submitit's SIGUSR2 requeue
exits where it lands, and its checkpoint is saved there: resumable, not deferred.)
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import pytorch_lightning as pl

from pyramid_lab.runs.checkpoint import LAST

log = logging.getLogger(__name__)
_DEFERRED = (signal.SIGTERM, signal.SIGINT)


class InterruptCheckpoint(pl.Callback):
    """Stops a fit on SIGTERM (what SLURM and ``kill`` send) or Ctrl-C after the current training
    step, and saves ``last.ckpt`` there, so that a rerun resumes to the same weights as an
    uninterrupted run (see the module's docstring).

    Args:
        dirpath: the checkpoint folder (``last.ckpt`` is written in it).
    """

    def __init__(self, dirpath: str | Path) -> None:
        self.path = Path(dirpath) / LAST
        self.received: signal.Signals | None = None  # the signal that is stopping the fit
        self._trainer: pl.Trainer | None = None
        self._previous: dict[signal.Signals, Any] = {}
        self._validating = False
        self._trained = False  # whether this process trained a step: else the last checkpoint holds all

    # Installed after Lightning's own SIGTERM handler (registered just before the sanity check),
    # which would otherwise set the flag during validation too.
    def on_sanity_check_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._install(trainer)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._install(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._uninstall()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self._trained = True

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._validating = True
        if self.received is not None:  # our signal, during the step just done: after validation
            _set_stop_flag(trainer, False)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._validating = False
        if self.received is not None:
            _set_stop_flag(trainer, True)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._uninstall()
        # Before the first step nothing changed since the checkpoint the fit started from (and a
        # save then would lack the training loader's place, which is restored with the loader).
        if trainer.state.fn != "fit" or not self._trained:
            return
        # Lightning's stop between steps leaves a state that resumes exactly. submitit's requeue
        # on SIGUSR2 (a SystemExit wherever it lands) is saved too: a run at its time limit must
        # leave something to continue from. A KeyboardInterrupt (a second Ctrl-C) may have stopped
        # a step half way: the last clean checkpoint stays.
        if isinstance(exception, SystemExit):
            trainer.save_checkpoint(self.path)
            log.info("saved %s; rerun the same command to resume", self.path)

    @property
    def stop_name(self) -> str:
        """What stopped the fit, in words for the run record (SIGTERM when no handler saw it)."""
        return "Ctrl-C (SIGINT)" if self.received == signal.SIGINT else "SIGTERM"

    def _install(self, trainer: pl.Trainer) -> None:
        if self._previous or threading.current_thread() is not threading.main_thread():
            return  # installed already, or not possible (signal handlers belong to the main thread)
        self._trainer = trainer
        self._previous = {signum: signal.signal(signum, self._handle) for signum in _DEFERRED}

    def _uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            if signum == signal.SIGINT:  # a second Ctrl-C: stop now, save nothing
                self._uninstall()
                raise KeyboardInterrupt
            return
        self.received = signal.Signals(signum)
        launcher = getattr(getattr(self._trainer, "strategy", None), "launcher", None)
        if signum == signal.SIGTERM and launcher is not None:
            launcher.kill(signum)  # as Lightning's own handler does: the other ranks' processes
        log.warning(
            "%s: stopping after the current training step and saving %s%s",
            self.stop_name,
            self.path,
            " (Ctrl-C again stops at once, without saving)" if signum == signal.SIGINT else "",
        )
        if not self._validating:
            _set_stop_flag(self._trainer, True)


def _set_stop_flag(trainer: pl.Trainer | None, value: bool) -> None:
    # Lightning's SIGTERM flag (Trainer.received_sigterm reads it): its loops stop at their
    # clean points when it is set, and save nothing themselves.
    connector = getattr(trainer, "_signal_connector", None)
    if connector is not None:
        connector.received_sigterm = value


def stop_signal(trainer: pl.Trainer | None) -> signal.Signals:
    """The signal that stopped ``trainer``'s fit (SIGTERM unless an InterruptCheckpoint saw SIGINT)."""
    for callback in getattr(trainer, "callbacks", None) or []:
        if isinstance(callback, InterruptCheckpoint) and callback.received is not None:
            return callback.received
    return signal.SIGTERM
