"""The tricks beyond the study: EMA of the weights, flip TTA, and warm-up in front of each scheduler."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_avg_fn

from pyramid_lab.errors import ConfigError
from pyramid_lab.optim import WarmupPlateau, multistep
from pyramid_lab.optim.warmup import LinearWarmup, LinearWarmupPlateau, linear_warmup
from pyramid_lab.training.ema import EMA
from pyramid_lab.training.tta import tta_logits


class _Net(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)).mean((2, 3))


def _train_steps(ema: EMA, steps: int) -> tuple[_Net, AveragedModel]:
    """Drive the callback's hooks as Lightning does, beside a plain AveragedModel."""
    torch.manual_seed(0)
    net = _Net()
    ema.setup(SimpleNamespace(), net, "fit")
    reference = AveragedModel(net, multi_avg_fn=None, avg_fn=get_ema_avg_fn(ema.decay), use_buffers=True)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    for step in range(1, steps + 1):
        optimizer.zero_grad()
        net(torch.randn(8, 3, 8, 8)).pow(2).sum().backward()  # BN running stats move too
        optimizer.step()
        ema.on_train_batch_end(SimpleNamespace(global_step=step), net, None, None, step - 1)
        reference.update_parameters(net)
    return net, reference


def test_ema_matches_averaged_model_with_the_same_decay() -> None:
    ema = EMA(decay=0.9, warmup=False)
    net, reference = _train_steps(ema, steps=20)
    averaged = dict(ema._average_model.module.named_parameters()) | dict(
        ema._average_model.module.named_buffers()
    )
    expected = dict(reference.module.named_parameters()) | dict(reference.module.named_buffers())
    assert {k for k in averaged if "running" in k} == {"bn.running_mean", "bn.running_var"}
    for name, value in expected.items():
        if value.is_floating_point():
            torch.testing.assert_close(averaged[name], value, msg=name)
    assert not torch.allclose(averaged["conv.weight"], net.conv.weight)  # an average, not a copy


def test_ema_warmup_ramps_the_decay() -> None:
    ema = EMA(decay=0.999, warmup=True)
    assert ema.decay_at(0) == pytest.approx(0.1)
    assert ema.decay_at(90) == pytest.approx(91 / 100)
    assert ema.decay_at(100_000) == 0.999
    # With the ramp the average follows a short run closely; without, it stays near the start.
    net, _ = _train_steps(ema, steps=30)
    drift = (ema._average_model.module.conv.weight - net.conv.weight).abs().max()
    stale, _ = _train_steps(plain := EMA(decay=0.999, warmup=False), steps=30)
    assert drift < (plain._average_model.module.conv.weight - stale.conv.weight).abs().max()


def test_ema_checkpoint_holds_the_average_and_the_trained_weights() -> None:
    ema = EMA(decay=0.9, warmup=False)
    net, _ = _train_steps(ema, steps=5)
    checkpoint = {"state_dict": net.state_dict()}
    ema.on_save_checkpoint(SimpleNamespace(), net, checkpoint)
    torch.testing.assert_close(checkpoint["state_dict"]["conv.weight"], ema._average_model.module.conv.weight)
    torch.testing.assert_close(checkpoint["current_model_state"]["conv.weight"], net.conv.weight)


def test_bad_ema_decay_names_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"callbacks\.ema\.decay=1\.5"):
        EMA(decay=1.5)


def test_tta_of_a_flip_invariant_model_equals_its_plain_output() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 10, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    x = torch.randn(4, 3, 8, 8)
    torch.testing.assert_close(tta_logits(net, x), net(x).log_softmax(-1))


def test_tta_averages_the_probabilities_of_both_views() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10)).eval()  # not flip-invariant
    x = torch.randn(4, 3, 8, 8)
    expected = ((net(x).softmax(-1) + net(x.flip(-1)).softmax(-1)) / 2).log()
    torch.testing.assert_close(tta_logits(net, x), expected)
    assert not torch.allclose(tta_logits(net, x), net(x).log_softmax(-1))


# Each scheduler of conf/scheduler/ (its class and our settings), on 12 epochs.
SCHEDULERS = {
    "multistep": lambda o: multistep(o, [0.32, 0.64], max_epochs=12),
    "cosine": lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=12),
    "cosine_restarts": lambda o: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=5),
    "exp": lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.95),
    "plateau": lambda o: WarmupPlateau(o, warmup_epochs=2, patience=1),
}


def _optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)


@pytest.mark.parametrize("name", SCHEDULERS)
def test_warmup_then_each_scheduler_gives_the_expected_lrs(name: str) -> None:
    warm, plain = _optimizer(), _optimizer()
    scheduler = linear_warmup(warm, SCHEDULERS[name](warm), warmup_epochs=3, start_factor=0.1)
    reference = SCHEDULERS[name](plain)
    plateau = name == "plateau"
    assert isinstance(scheduler, LinearWarmupPlateau if plateau else LinearWarmup)
    # A loss that stalls from epoch 4 on, so that the plateau scheduler reduces too.
    losses = [1.0, 0.8, 0.6, 0.5] + [0.5] * 8
    lrs, expected = [], []
    for epoch, loss in enumerate(losses):
        lrs.append(warm.param_groups[0]["lr"])
        # Warm-up: 0.1, 0.4, 0.7 of the schedule's own lr, then the schedule in absolute epochs.
        expected.append(plain.param_groups[0]["lr"] * min(1.0, 0.1 + 0.9 * epoch / 3))
        warm.step(), plain.step()  # no gradients: only the order of calls matters
        scheduler.step(*([loss] if plateau else []))
        reference.step(*([loss] if plateau else []))
    assert lrs == pytest.approx(expected, rel=1e-12)
    assert scheduler.get_last_lr() == [warm.param_groups[0]["lr"]]
    assert len(set(lrs[3:])) > 1  # the schedule itself moved after the warm-up


def test_warmup_state_round_trips() -> None:
    first = _optimizer()
    scheduler = linear_warmup(first, SCHEDULERS["exp"](first), warmup_epochs=4)
    for _ in range(2):
        first.step()
        scheduler.step()
    state = scheduler.state_dict()
    second = _optimizer()
    resumed = linear_warmup(second, SCHEDULERS["exp"](second), warmup_epochs=4)
    resumed.load_state_dict(state)
    for _ in range(4):
        assert second.param_groups[0]["lr"] == pytest.approx(first.param_groups[0]["lr"])
        first.step(), second.step()
        scheduler.step()
        resumed.step()


def test_zero_warmup_is_the_scheduler_itself_and_bad_settings_are_named() -> None:
    optimizer = _optimizer()
    inner = SCHEDULERS["cosine"](optimizer)
    assert linear_warmup(optimizer, inner, warmup_epochs=0) is inner
    with pytest.raises(ConfigError, match=r"module\.scheduler\.warmup_epochs=-1"):
        linear_warmup(optimizer, inner, warmup_epochs=-1)
    with pytest.raises(ConfigError, match=r"module\.scheduler\.warmup_start_factor=0"):
        linear_warmup(optimizer, inner, warmup_epochs=2, start_factor=0)


# Through the path a user takes: the composed config, train(cfg), the run record.


@pytest.mark.slow
def test_every_trick_runs_and_names_its_metrics(tmp_path, tiny_overrides):
    from pyramid_lab.runs.record_file import read_record
    from pyramid_lab.train import train
    from tests.helpers import compose_config

    tricks = "tricks=[augment_crop_flip,trivialaugment,cutout,mixup,cutmix,ema,tta,warmup,nesterov]"
    cfg = compose_config([*tiny_overrides, tricks, "trainer.max_epochs=2"], tmp_path)
    record = train(cfg)
    assert record["status"] == "completed"
    # Mixed targets: train accuracy only against the dominant label, under a name that says so.
    assert "train/acc_dominant" in record and "train/acc" not in record
    # EMA: test/acc is the EMA model's, and the record says so; TTA beside the plain numbers.
    assert record["test/acc_ema"] == record["test/acc"]
    assert {"val/acc_tta", "test/acc_tta", "val/acc_ema"} <= set(record)
    # Warm-up: epoch 0 at 0.1x of the cosine's lr, epoch 1 at 0.28x (5 warm-up epochs).
    lrs = [entry["train/lr"] for entry in read_record(tmp_path)["history"]]
    assert lrs == pytest.approx([0.1 * 0.1, 0.1 * 0.28 * 0.5], rel=1e-6)


def test_recipe_beyond_builds_the_final_recipe_plus_the_literatures_tricks(tmp_path):
    from hydra.utils import instantiate

    from pyramid_lab.data.cutout import Cutout
    from pyramid_lab.data.policy import AutoAugment
    from pyramid_lab.optim import SAM
    from tests.helpers import compose_config

    final = compose_config(["recipe=final"], tmp_path)
    beyond = compose_config(["recipe=beyond"], tmp_path)
    for key in ("model", "activation", "scheduler", "trainer", "budget"):
        assert beyond[key] == final[key], key
    assert beyond.module.loss.label_smoothing == final.module.loss.label_smoothing == 0.1
    assert beyond.data.merge_val and beyond.data.dataset == final.data.dataset
    data = instantiate(beyond.data)
    assert isinstance(data.policy, AutoAugment) and data.policy.policy == "cifar10"
    assert isinstance(data.cutout, Cutout) and data.cutout.size == 16
    assert (data.augment.crop_padding, data.augment.flip) == (4, True)
    assert issubclass(instantiate(beyond.optimizer).func, SAM) and "tta" in beyond.callbacks
