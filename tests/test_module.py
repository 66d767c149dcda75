"""The LightningModule (pyramid_lab.training.Classifier): SAM's steps, schedulers, settings."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from pytorch_lightning import Trainer
from torch import nn

from pyramid_lab.errors import ConfigError
from pyramid_lab.optim import WarmupPlateau
from pyramid_lab.train import train
from pyramid_lab.training.module import Classifier
from tests.helpers import compose_config


def tiny_classifier(**kwargs) -> Classifier:
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 10))
    return Classifier(net, optimizer=partial(torch.optim.SGD, lr=0.1), **kwargs)


def test_sam_advances_global_step_once_per_update(tmp_path, tiny_overrides, monkeypatch):
    seen = {}
    original_test = Trainer.test

    def spy(self, *args, **kwargs):
        seen["global_step"] = self.global_step
        return original_test(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "test", spy)
    cfg = compose_config([*tiny_overrides, "optimizer=sam", "trainer.max_epochs=2"], tmp_path)
    assert train(cfg)["status"] == "completed"
    assert seen["global_step"] == 4  # 2 epochs x 2 batches, one SAM update each


def test_sam_second_pass_sees_the_same_shakedrop_draws(tmp_path, tiny_overrides, monkeypatch):
    """With a vanishing rho the perturbed loss equals the first pass's only if ShakeDrop's random
    coefficients are replayed; fresh draws at p 0.5 change the loss far more than 1e-3."""
    losses = []
    original = Classifier._sam_step

    def spy(self, x, y):
        forward = self.criterion.forward

        def recording(logits, target):
            loss = forward(logits, target)
            losses.append(loss.item())
            return loss

        with monkeypatch.context() as patch:  # the SAM step only, not validation and test
            patch.setattr(self.criterion, "forward", recording)
            return original(self, x, y)

    monkeypatch.setattr(Classifier, "_sam_step", spy)
    cfg = compose_config(
        [*tiny_overrides, "optimizer=sam", "optimizer.rho=1e-9", "model.shakedrop=1.0"], tmp_path
    )
    assert train(cfg)["status"] == "completed"
    assert len(losses) == 4  # two steps, two passes each
    for first, second in (losses[0:2], losses[2:4]):
        assert second == pytest.approx(first, rel=1e-4)


def test_a_plateau_scheduler_watches_the_monitored_metric():
    module = tiny_classifier(
        scheduler=partial(WarmupPlateau, warmup_epochs=0), scheduler_monitor="train/loss"
    )
    config = module.configure_optimizers()["lr_scheduler"]
    assert config["monitor"] == "train/loss" and config["interval"] == "epoch"


def test_other_schedulers_have_no_monitor_and_follow_the_interval():
    module = tiny_classifier(
        scheduler=partial(torch.optim.lr_scheduler.StepLR, step_size=1), scheduler_interval="step"
    )
    config = module.configure_optimizers()["lr_scheduler"]
    assert "monitor" not in config and config["interval"] == "step"
    assert "lr_scheduler" not in tiny_classifier().configure_optimizers()  # a constant lr


@pytest.mark.parametrize(
    "kwargs, setting",
    [
        ({"scheduler_interval": "batch"}, "module.scheduler_interval='batch'"),
        ({"label_smoothing": 1.0}, "module.label_smoothing=1.0"),
    ],
)
def test_bad_settings_name_themselves(kwargs, setting):
    with pytest.raises(ConfigError, match=setting.replace("[", r"\[")) as err:
        tiny_classifier(**kwargs)
    assert "\n" not in str(err.value)


def test_old_scheduler_keys_name_the_new_ones(tmp_path):
    from tests.helpers import run_app

    result = run_app(["scheduler=cosine_restarts", "scheduler.scheduler.T_0=46"], tmp_path, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: scheduler.scheduler.T_0 is now scheduler.T_0 (scheduler settings are flat; see README)"
    )
    result = run_app(["scheduler.monitor=train/loss"], tmp_path, timeout=60)
    assert "scheduler.monitor is now module.scheduler_monitor" in result.stderr
