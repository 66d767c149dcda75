"""train(cfg) end to end: the Hydra app composed in-process, the run record, bad input."""

from __future__ import annotations

import json
import math

import pytest

from pyramid_lab.errors import ConfigError
from pyramid_lab.runs.record_file import read_record
from pyramid_lab.train import train
from tests.helpers import compose_config, run_app


def test_fast_dev_run_of_the_composed_app(tmp_path, tiny_overrides):
    cfg = compose_config([*tiny_overrides, "+trainer.fast_dev_run=true"], tmp_path)
    record = train(cfg, overrides=["experiment=quickstart"])
    assert record["status"] == "completed"
    assert 0.0 <= record["test/acc"] <= 1.0
    assert record["params"] > 0
    on_disk = read_record(tmp_path)
    assert on_disk["status"] == "completed"
    assert on_disk["overrides"] == ["experiment=quickstart"]
    assert on_disk["wall_time_s"] > 0


def test_record_has_history_checkpoint_and_tensorboard(tmp_path, tiny_overrides):
    overrides = [o for o in tiny_overrides if o != "logger=none"] + ["trainer.max_epochs=2"]
    record = train(compose_config(overrides, tmp_path))
    assert record["status"] == "completed"
    assert record["epochs"] == 2
    assert [entry["epoch"] for entry in record["history"]] == [1, 2]
    assert {"train/loss", "train/acc", "val/acc", "train/lr"} <= set(record["history"][-1])
    assert 0.0 <= record["test/acc"] <= 1.0 and 0.0 <= record["val/acc_best"] <= 1.0
    assert math.isfinite(record["test/loss"]) and record["test/loss"] > 0  # cross-entropy of a real run
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert (tmp_path / "config.yaml").is_file()


def test_tensorboard_tree_links_every_run_with_its_hparams(tmp_path, tiny_overrides):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    overrides = [o for o in tiny_overrides if o != "logger=none"]
    run_dir = tmp_path / "2026-11-28" / "10-00-00"
    train(compose_config(overrides, run_dir), overrides=["experiment=quickstart", "scheduler=cosine"])
    (link,) = (run_dir / "logs" / "quickstart").iterdir()
    assert link.name == "2026-11-28_10-00-00_scheduler=cosine"
    assert link.resolve() == (run_dir / "tensorboard").resolve()
    events = EventAccumulator(str(link))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "train/acc", "val/acc", "test/acc", "train/lr", "hp/test_acc"} <= scalars
    assert events.PluginTagToContent("hparams")  # the HPARAMS tab has this run
    assert "model/summary/text_summary" in events.Tags()["tensors"]


def test_budget_refuses_a_model_before_training(tmp_path, tiny_overrides):
    cfg = compose_config([*tiny_overrides, "budget.max_params=1000"], tmp_path)
    with pytest.raises(ConfigError, match=r"trainable parameters, over budget.max_params=1,000"):
        train(cfg)
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["status"] == "failed"
    assert "budget.max_params" in record["error"]


def test_diverged_run_is_recorded(tmp_path, tiny_overrides):
    from pyramid_lab.errors import DivergedError

    cfg = compose_config([*tiny_overrides, "optimizer.lr=1e30"], tmp_path)
    with pytest.raises(DivergedError):
        train(cfg)
    record = read_record(tmp_path)
    assert record["status"] == "diverged"
    assert "train/loss became" in record["error"]


# Bad settings through the command line (one `error:` line, exit 2, a failed record) are
# tests/test_bad_input.py's: model.depth, model.alpha, activation.name, a missing CINIC-10 root.


@pytest.mark.slow
def test_unknown_config_option_lists_the_valid_ones(tmp_path):
    result = run_app(["model=pyramidnet999"], cwd=tmp_path)
    assert result.returncode != 0
    assert "pyramidnet999" in result.stderr and "pyramidnet196_a48" in result.stderr
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow
def test_quickstart_reaches_95_percent(tmp_path):
    """The README's quickstart, for real: a ShakeDrop PyramidNet on the digits, about a minute."""
    result = run_app(["experiment=quickstart", f"hydra.run.dir={tmp_path}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    record = read_record(tmp_path)
    assert record["status"] == "completed"
    assert record["epochs"] == 15
    assert record["test/acc"] >= 0.95
    assert f"test/acc={record['test/acc']:.4f}" in result.stdout
    assert str(tmp_path) in result.stdout


@pytest.mark.slow  # torch.compile's tracing: several seconds
def test_gpu_path_settings_train_through_the_config_on_cpu(tmp_path, tiny_overrides):
    """channels_last, bf16 autocast and torch.compile (no code generation) from the command line."""
    cfg = compose_config(
        [
            *tiny_overrides,
            "callbacks.channels_last.enabled=true",
            "trainer.precision=bf16-mixed",
            "callbacks.compile.enabled=true",
            "callbacks.compile.backend=aot_eager",
            "optimizer=sam",
        ],
        tmp_path,
    )
    record = train(cfg)
    assert record["status"] == "completed"
    assert math.isfinite(record["train/loss"]) and 0.0 <= record["test/acc"] <= 1.0
