"""scheduler=cosine_periodic through the path a user takes: composed as the command line does,
trained by Lightning, stepped every optimizer step (pyramid_lab.optim.cosine_periodic), with
warm-up, SAM and a resume. The schedule's own arithmetic is in test_optim.py."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl

from pyramid_lab import train as train_module
from pyramid_lab.build import check_run_settings
from pyramid_lab.errors import ConfigError
from pyramid_lab.train import train
from tests.helpers import compose_config

STEPS_PER_EPOCH = 4  # +trainer.limit_train_batches
# Half-periods of one epoch: the lr falls over epoch 1 and rises over epoch 2.
PERIODIC = [
    "scheduler=cosine_periodic",
    "scheduler.half_period=1",
    f"trainer.limit_train_batches={STEPS_PER_EPOCH}",
]


class LrPerStep(pl.Callback):
    """The lr each training step trains with (read before the step, as the optimizer uses it)."""

    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def train_recording(monkeypatch, cfg) -> tuple[dict, list[float]]:
    recorder, build = LrPerStep(), train_module.build

    def build_with_recorder(cfg, **kwargs):
        kwargs["extra_callbacks"] = [*kwargs.get("extra_callbacks", ()), recorder]
        return build(cfg, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(train_module, "build", build_with_recorder)
        return train(cfg), recorder.lrs


def cosine(step: int, peak: float, half_period: int = STEPS_PER_EPOCH) -> float:
    """pyramid_lab.optim.PeriodicCosine with eta_min 0: the cosine at the step's middle."""
    return peak * (1 + math.cos(math.pi * (step + 0.5) / half_period)) / 2


def test_every_step_trains_at_a_positive_lr_on_the_cosine(tmp_path, tiny_overrides, monkeypatch):
    cfg = compose_config([*tiny_overrides, *PERIODIC, "trainer.max_epochs=2"], tmp_path)
    assert cfg.module.scheduler_interval == "step"  # set by the scheduler's own config
    record, lrs = train_recording(monkeypatch, cfg)
    assert record["status"] == "completed"
    peak = cfg.optimizer.lr
    assert len(lrs) == 2 * STEPS_PER_EPOCH and min(lrs) > 0
    assert lrs == pytest.approx([cosine(k, peak) for k in range(len(lrs))])
    # Falls through epoch 1 to its trough between the epochs, rises through epoch 2.
    assert lrs[0] > lrs[3] == pytest.approx(lrs[4]) and lrs[4] < lrs[7] == pytest.approx(lrs[0])


def test_warm_up_counts_epochs_and_sam_steps_the_schedule(tmp_path, tiny_overrides, monkeypatch):
    overrides = ["optimizer=sam", "tricks=warmup", "module.scheduler.warmup_epochs=1", "trainer.max_epochs=2"]
    cfg = compose_config([*tiny_overrides, *PERIODIC, *overrides], tmp_path)
    record, lrs = train_recording(monkeypatch, cfg)
    assert record["status"] == "completed"
    start, peak = cfg.module.scheduler.warmup_start_factor, cfg.optimizer.lr
    warm = [start + (1 - start) * k / STEPS_PER_EPOCH for k in range(STEPS_PER_EPOCH)] + [
        1.0
    ] * STEPS_PER_EPOCH
    assert lrs == pytest.approx([w * cosine(k, peak) for k, w in enumerate(warm)])


def test_an_epoch_interval_is_refused_in_one_line(tmp_path, tiny_overrides):
    cfg = compose_config([*tiny_overrides, *PERIODIC, "module.scheduler_interval=epoch"], tmp_path)
    with pytest.raises(ConfigError, match=r"module\.scheduler_interval='epoch' .*step") as err:
        train(cfg)
    assert "\n" not in str(err.value)
    # Refused by the checks that run before anything is built or loaded, not inside fit.
    with pytest.raises(ConfigError, match=r"module\.scheduler_interval='epoch'"):
        check_run_settings(cfg)
    check_run_settings(compose_config([*tiny_overrides, *PERIODIC], tmp_path / "step"))


@pytest.mark.slow
def test_a_resumed_run_continues_the_cosine(tmp_path, tiny_overrides, monkeypatch):
    whole, lrs = train_recording(
        monkeypatch, compose_config([*tiny_overrides, *PERIODIC, "trainer.max_epochs=3"], tmp_path / "a")
    )
    first, _ = train_recording(
        monkeypatch, compose_config([*tiny_overrides, *PERIODIC, "trainer.max_epochs=2"], tmp_path / "b")
    )
    # A longer rerun into the same folder continues its checkpoint, scheduler state included.
    resumed, resumed_lrs = train_recording(
        monkeypatch, compose_config([*tiny_overrides, *PERIODIC, "trainer.max_epochs=3"], tmp_path / "b")
    )
    assert whole["status"] == first["status"] == resumed["status"] == "completed"
    assert resumed["resumed_from"].endswith("last.ckpt")
    assert resumed_lrs == pytest.approx(lrs[2 * STEPS_PER_EPOCH :])  # epoch 3 falls again
    assert resumed_lrs[0] > resumed_lrs[-1]
