"""The LightningModule (pyramid_lab.training.Classifier) and SAM's (SAMClassifier): steps, schedulers,
settings, and the settings that moved out of the module."""

from __future__ import annotations

import copy
import inspect
from functools import partial
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from pytorch_lightning import Trainer
from torch import nn

from pyramid_lab.build import instantiate
from pyramid_lab.errors import ConfigError
from pyramid_lab.evaluate import evaluate
from pyramid_lab.optim import WarmupPlateau
from pyramid_lab.runs.folder_config import CONFIG_NAME, config_changes, saved_config
from pyramid_lab.runs.recorder import RUN_STATE_KEY
from pyramid_lab.train import train
from pyramid_lab.training.module import Classifier, CrossEntropy
from pyramid_lab.training.sam import SAMClassifier
from tests.helpers import TINY, compose_config


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
    original = SAMClassifier._update

    def spy(self, x, y):
        forward = self.criterion.forward

        def recording(logits, target):
            loss = forward(logits, target)
            losses.append(loss.item())
            return loss

        with monkeypatch.context() as patch:  # the SAM step only, not validation and test
            patch.setattr(self.criterion, "forward", recording)
            return original(self, x, y)

    monkeypatch.setattr(SAMClassifier, "_update", spy)
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
    "build, setting",
    [
        (lambda: tiny_classifier(scheduler_interval="batch"), "module.scheduler_interval='batch'"),
        (lambda: tiny_classifier(loss=CrossEntropy(1.0)), "module.loss.label_smoothing=1.0"),
    ],
)
def test_bad_settings_name_themselves(build, setting):
    with pytest.raises(ConfigError, match=setting.replace("[", r"\[")) as err:
        build()
    assert "\n" not in str(err.value)


def test_the_module_takes_at_most_eight_arguments():
    # The step and its metrics; SAM, divergence, EMA, TTA, compile live around it (issue 22).
    assert len(inspect.signature(Classifier.__init__).parameters) - 1 <= 8


def test_sam_module_refuses_a_plain_optimizer():
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 10))
    with pytest.raises(ConfigError, match="^SAMClassifier needs optimizer=sam"):
        SAMClassifier(net, optimizer=partial(torch.optim.SGD, lr=0.1))


def test_old_scheduler_keys_name_the_new_ones(tmp_path):
    from tests.helpers import run_app

    result = run_app(["scheduler=cosine_restarts", "scheduler.scheduler.T_0=46"], tmp_path, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: scheduler.scheduler.T_0 is now scheduler.T_0 (scheduler settings are flat; see README)"
    )
    result = run_app(["scheduler.monitor=train/loss"], tmp_path, timeout=60)
    assert "scheduler.monitor is now module.scheduler_monitor" in result.stderr


@pytest.mark.parametrize(
    "override, new",
    [
        ("module.label_smoothing=0.1", "module.loss.label_smoothing"),
        ("module.tta=true", "tricks=tta (callbacks.tta)"),
        ("module.compile_backend=aot_eager", "callbacks.compile.backend"),
        ("module.compile=true", "callbacks.compile.enabled"),
        ("++module.warmup_epochs=5", "module.scheduler.warmup_epochs"),
        ("module.divergence_check_every=10", "callbacks.divergence.check_every"),
    ],
)
def test_old_module_keys_stop_with_one_line_naming_the_new_key(override, new, capsys):
    from pyramid_lab.__main__ import refuse_moved_keys

    with pytest.raises(SystemExit) as stop:
        refuse_moved_keys(["trainer.max_epochs=1", override])
    key = override.lstrip("+").split("=")[0]
    assert stop.value.code == 2
    assert capsys.readouterr().err == f"error: {key} is now {new} (see README)\n"


# --- checkpoints and run folders written before the module's settings moved (issue 22) -----------

# What the Classifier of 2026-12 saved: its hyper-parameters, and its config section.
OLD_HPARAMS = {
    "scheduler_interval": "epoch",
    "scheduler_monitor": "val/loss",
    "label_smoothing": 0.1,
    "channels_last": False,
    "compile": False,
    "compile_backend": "inductor",
    "compile_mode": "default",
    "divergence_check_every": 100,
    "tta": True,
    "warmup_epochs": 0,
    "warmup_start_factor": 0.1,
}


def old_layout(config: dict) -> dict:
    """A resolved config of today as the old code wrote it: the module's flat settings, no
    callbacks for divergence, compile, channels_last and TTA."""
    old = copy.deepcopy(config)
    module, callbacks = old["module"], old["callbacks"]
    module["scheduler"] = module["scheduler"]["scheduler"]  # was ${scheduler}
    module.update({key: OLD_HPARAMS[key] for key in OLD_HPARAMS if key not in module})
    module["label_smoothing"] = module.pop("loss")["label_smoothing"]
    module["tta"] = "tta" in callbacks
    for name in ("tta", "divergence", "compile", "channels_last"):
        callbacks.pop(name, None)
    return old


@pytest.fixture(scope="module")
def tta_run(tmp_path_factory) -> tuple[Path, dict]:
    """A tiny run with TTA and label smoothing: its folder and its record."""
    run_dir = tmp_path_factory.mktemp("old_layout") / "run"
    record = train(compose_config([*TINY, "tricks=[tta,label_smoothing]"], run_dir))
    assert record["status"] == "completed" and "test/acc_tta" in record
    return run_dir, record


def test_a_checkpoint_of_the_old_module_tests_the_same(tta_run, tmp_path):
    run_dir, record = tta_run
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    state = checkpoint[RUN_STATE_KEY]
    # The old Classifier's state_dict held the network and the best validation accuracy only.
    net = instantiate(OmegaConf.create(state["config"]["model"])).state_dict()
    assert set(checkpoint["state_dict"]) == {f"net.{k}" for k in net} | {"val_acc_best.max_value"}
    checkpoint["hyper_parameters"] = {**OLD_HPARAMS, "num_classes": state["config"]["data"]["num_classes"]}
    state["config"] = old_layout(state["config"])
    assert state["config"]["module"]["tta"] and "loss" not in state["config"]["module"]
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    overrides = ["mode=test", f"ckpt_path={old}"]
    result = evaluate(compose_config(overrides, tmp_path / "test"), overrides=overrides)
    assert result["status"] == "completed"
    # The same weights, data and TTA: the numbers of the run's own test.
    assert result["test/acc"] == record["test/acc"] and result["test/acc_tta"] == record["test/acc_tta"]


def test_a_run_folder_of_the_old_module_resumes_without_a_config_change(tta_run):
    run_dir, _ = tta_run
    cfg = compose_config([*TINY, "tricks=[tta,label_smoothing]"], run_dir)
    today = OmegaConf.to_container(cfg, resolve=True)
    (run_dir / "old").mkdir()
    OmegaConf.save(OmegaConf.create(old_layout(today)), run_dir / "old" / CONFIG_NAME)
    saved = saved_config(run_dir / "old")
    assert saved["module"]["loss"]["label_smoothing"] == 0.1 and "tta" in saved["callbacks"]
    assert config_changes(saved, cfg) == []
    # A real change is still one.
    assert config_changes(saved, compose_config([*TINY, "tricks=[label_smoothing]"], run_dir)) == [
        "callbacks.tta"
    ]
