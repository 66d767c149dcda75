"""A loss that becomes NaN stops the run within callbacks.divergence.check_every steps, naming the step
it diverged at, although the training step never waits for the device to check it."""

from __future__ import annotations

import json

import pytest
import pytorch_lightning as pl
import torch

from pyramid_lab.errors import ConfigError, DivergedError
from pyramid_lab.train import train
from pyramid_lab.training.divergence import FirstNonFinite
from tests.helpers import TINY, compose_config


class PoisonBatch(pl.Callback):
    """Turns the images of training step ``step`` into NaN; remembers the last step that started."""

    last_step = -1

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx):
        PoisonBatch.last_step = trainer.global_step
        if trainer.global_step == self.step:
            batch[0].fill_(float("nan"))


@pytest.mark.parametrize(
    "k, every, stops_at",
    [
        (5, 4, 7),  # read after steps 3 and 7: the NaN of step 5 is seen at step 7 = k + N - 1 at most
        pytest.param(2, 100, 9, marks=pytest.mark.slow),  # no read in the epoch's 10 steps: its end reads
    ],
)
def test_a_nan_at_step_k_stops_the_run_by_step_k_plus_n(tmp_path, k, every, stops_at):
    PoisonBatch.last_step = -1
    overrides = [o for o in TINY if "limit_train_batches" not in o]
    cfg = compose_config(
        [
            *overrides,
            "+trainer.limit_train_batches=10",
            "trainer.max_epochs=2",
            f"callbacks.divergence.check_every={every}",
            f"+callbacks.poison._target_={__name__}.PoisonBatch",
            f"+callbacks.poison.step={k}",
        ],
        tmp_path,
    )
    with pytest.raises(
        DivergedError,
        match=rf"became nan at step {k} \(epoch 0, batch {k}\); stopped at step "
        rf"{stops_at} ",
    ):
        train(cfg)
    assert PoisonBatch.last_step == stops_at <= k + every - 1
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["status"] == "diverged" and f"at step {k} " in record["error"]


def test_the_flag_keeps_the_first_bad_step_without_reading_the_device():
    flag = FirstNonFinite()
    for step, loss in enumerate([1.0, 2.0, float("inf"), float("nan"), 3.0]):
        flag.update(torch.tensor(loss), step, epoch=0, batch_idx=step)
    assert flag.read() == (2, 0, 2, float("inf"))
    fresh = FirstNonFinite()
    fresh.update(torch.tensor(0.5), 0, 0, 0)
    assert fresh.read() is None and FirstNonFinite().read() is None


def test_a_bad_check_interval_is_one_line(tmp_path):
    cfg = compose_config([*TINY, "callbacks.divergence.check_every=0"], tmp_path)
    with pytest.raises(ConfigError, match=r"^callbacks.divergence.check_every=0 must be an integer >= 1"):
        train(cfg)
