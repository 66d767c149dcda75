"""Resume after a crash: atomic checkpoints, SIGKILL, SIGTERM and Ctrl-C mid-run, resumed sweeps."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch

import pyramid_lab.train as train_module
from pyramid_lab.data.sampler import ShuffledBatchSampler
from pyramid_lab.errors import ConfigError
from pyramid_lab.runs.checkpoint import AtomicCheckpointIO
from pyramid_lab.runs.record_file import read_record
from pyramid_lab.train import train
from tests.helpers import TINY, compose_config, run_app, start_app

# A run of about a second per epoch on the digits: long enough to be killed mid-way. No pictures
# (predictions, confusion matrix, augmented images: tests/test_predictions.py), seconds per
# process that resuming does not touch; the default logger stays, its curves continue.
RUN = [
    "experiment=quickstart",
    "model.depth=8",
    "model.alpha=8",
    "trainer.max_epochs=4",
    "~callbacks.progress_bar",
    "~callbacks.predictions",
    "~callbacks.images",
    "+trainer.enable_progress_bar=false",
    "scheduler=exp",
]


def start(run_dir: Path, *extra: str) -> subprocess.Popen:
    return start_app([*RUN, f"hydra.run.dir={run_dir}", *extra], cwd=run_dir.parent)


def wait_for_epochs(run_dir: Path, epochs: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            if (
                len(read_record(run_dir)["history"]) >= epochs
                and (run_dir / "checkpoints" / "last.ckpt").exists()
            ):
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"no {epochs} epochs in {timeout} s")


@pytest.mark.parametrize("rank", [0, 1])
def test_the_shuffle_resumes_after_the_batches_handed_out_and_only_in_their_epoch(rank):
    def sampler() -> ShuffledBatchSampler:
        return ShuffledBatchSampler(50, 4, seed=3, rank=rank, world_size=2, repeats=2)

    whole = sampler()
    whole.set_epoch(5)
    epoch5 = list(whole)
    stopped = sampler()
    stopped.set_epoch(5)
    batches = iter(stopped)
    handed_out = [next(batches) for _ in range(4)]
    state = stopped.state_dict()
    assert state == {"epoch": 5, "batches": 4}

    resumed = sampler()
    resumed.load_state_dict(state)
    resumed.set_epoch(5)  # Lightning sets the epoch after restoring the state, before iterating
    rest = list(resumed)
    assert [b.tolist() for b in handed_out + rest] == [b.tolist() for b in epoch5]
    assert resumed.state_dict() == {"epoch": 5, "batches": len(epoch5)}
    # The next epoch, and any epoch other than the saved one, is whole.
    resumed.set_epoch(6)
    whole.set_epoch(6)
    assert [b.tolist() for b in resumed] == [b.tolist() for b in whole]
    other = sampler()
    other.load_state_dict(state)
    other.set_epoch(6)
    assert len(list(other)) == len(epoch5)


def test_atomic_checkpoint_keeps_the_old_file_when_a_write_dies(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"epoch": 1}, path)

    def dies_half_way(obj, file):
        file.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=False) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_resumes_without_training_an_epoch_twice(tmp_path):
    run_dir = tmp_path / "run"
    process = start(run_dir)
    wait_for_epochs(run_dir, 2, process)
    time.sleep(0.3)  # into the next epoch
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed = read_record(run_dir)
    assert killed["status"] == "running"  # never looks finished

    rerun = start(run_dir)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-2000:]
    record = read_record(run_dir)
    assert record["status"] == "completed" and record["epochs"] == 4
    assert [entry["epoch"] for entry in record["history"]] == [1, 2, 3, 4]
    assert record["resumed_from"].endswith("last.ckpt")
    # The learning rate continues its schedule (ExponentialLR, gamma 0.95) across the resume.
    lrs = [entry["train/lr"] for entry in record["history"]]
    assert lrs == pytest.approx([0.1 * 0.95**i for i in range(4)])
    # TensorBoard gets a second event file in the same folder: the curves continue.
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) >= 2


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_signal_saves_a_checkpoint_marks_interrupted_and_exits(tmp_path, signum):
    run_dir = tmp_path / "run"
    process = start(run_dir)
    wait_for_epochs(run_dir, 1, process)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, err[-2000:]
    record = read_record(run_dir)
    assert record["status"] == "interrupted" and signum.name in record["error"]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()

    rerun = start(run_dir)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-2000:]
    record = read_record(run_dir)
    assert record["status"] == "completed" and record["epochs"] == 4
    assert [entry["epoch"] for entry in record["history"]] == [1, 2, 3, 4]


# Four epochs of five steps, with everything that draws random numbers or keeps state across
# steps: augmentation and ShakeDrop (the global RNG), EMA (a second set of weights), a per-step lr
# warm-up in front of a per-epoch scheduler. A few seconds per run.
EXACT = [
    *(o for o in TINY if not o.startswith("+trainer.limit_train_batches")),
    "+trainer.limit_train_batches=5",
    "data.batch_size=16",
    "trainer.max_epochs=4",
    "scheduler=exp",
    "tricks=[augment,shakedrop,ema,warmup]",
    "model.shakedrop=0.5",
]
STEPS_PER_EPOCH = 5


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[dict[str, Any], dict[str, Any]]:
    """The EXACT run trained without a stop: its record and its last checkpoint."""
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    record = train(compose_config(EXACT, run_dir))
    return record, _last_checkpoint(run_dir)


def _last_checkpoint(run_dir: Path) -> dict[str, Any]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)


def assert_same_run(run_dir: Path, record: dict[str, Any], uninterrupted) -> None:
    """Bit-identical weights (trained and EMA), optimizer state and per-epoch history."""
    expected_record, expected = uninterrupted
    got = _last_checkpoint(run_dir)
    for key in ("state_dict", "current_model_state"):  # EMA weights, trained weights
        assert got[key].keys() == expected[key].keys()
        different = [name for name in expected[key] if not torch.equal(got[key][name], expected[key][name])]
        assert not different, f"{key}: {len(different)} tensors differ, e.g. {different[:3]}"
    for got_state, expected_state in zip(got["optimizer_states"], expected["optimizer_states"]):
        for got_param, expected_param in zip(got_state["state"].values(), expected_state["state"].values()):
            assert all(torch.equal(got_param[k], expected_param[k]) for k in expected_param)
    # train/samples, train/loss, train/lr and val/* of every epoch, the interrupted one included.
    assert record["history"] == expected_record["history"]
    for key in ("test/acc", "test/loss", "val/acc_best"):
        assert record[key] == expected_record[key], key


def test_resume_at_an_epoch_end_continues_exactly_where_an_uninterrupted_run_would_be(
    tmp_path, uninterrupted
):
    """Optimizer, scheduler, EMA and RNG state (ShakeDrop, augmentation) come back with the weights."""
    train(compose_config([*EXACT, "trainer.max_epochs=2"], tmp_path))
    resumed = train(compose_config(EXACT, tmp_path))
    assert resumed["resumed_from"].endswith("last.ckpt")
    assert [e["epoch"] for e in resumed["history"]] == [1, 2, 3, 4]
    assert_same_run(tmp_path, resumed, uninterrupted)


class SignalAt(pl.Callback):
    """Sends ``signum`` to this process at ``hook`` of optimizer step ``step`` (0-based): after
    the batch was drawn and augmented, between backward and the optimizer step, or after the
    step; each leaves a step half done if the signal were handled where it lands."""

    HOOKS = ("on_train_batch_start", "on_before_optimizer_step", "on_train_batch_end")

    def __init__(self, step: int, hook: str, signum: int, times: int = 1) -> None:
        self.step, self.hook, self.signum, self.times = step, hook, signum, times

    def _maybe_signal(self, trainer: pl.Trainer, hook: str, step: int) -> None:
        if hook == self.hook and step == self.step:
            for _ in range(self.times):
                os.kill(os.getpid(), self.signum)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._maybe_signal(trainer, "on_train_batch_start", trainer.global_step)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self._maybe_signal(trainer, "on_before_optimizer_step", trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._maybe_signal(trainer, "on_train_batch_end", trainer.global_step - 1)


def train_with(monkeypatch, callback: pl.Callback, cfg) -> dict[str, Any]:
    """train(cfg) with ``callback`` among the trainer's (the config stays the run's own)."""
    build = train_module.build

    def build_with_callback(cfg, **kwargs):
        kwargs["extra_callbacks"] = [*kwargs.get("extra_callbacks", ()), callback]
        return build(cfg, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(train_module, "build", build_with_callback)
        return train(cfg)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_signal_mid_epoch_then_rerun_reaches_the_uninterrupted_weights(
    tmp_path, monkeypatch, uninterrupted, signum
):
    # A step of epoch 3 (of 4) drawn by a seeded random, other than the epoch's last (which stops
    # at the epoch's end instead). Where in the step: SIGTERM after the batch was drawn and
    # augmented, Ctrl-C after the step (the second-Ctrl-C test signals between backward and step).
    step = 2 * STEPS_PER_EPOCH + random.Random(f"mid-epoch {signum.name}").randrange(STEPS_PER_EPOCH - 1)
    hook = {signal.SIGTERM: "on_train_batch_start", signal.SIGINT: "on_train_batch_end"}[signum]
    with pytest.raises(SystemExit) as stopped:
        train_with(monkeypatch, SignalAt(step, hook, signum), compose_config(EXACT, tmp_path))
    assert stopped.value.code == 128 + signum
    record = read_record(tmp_path)
    assert record["status"] == "interrupted" and signum.name in record["error"]
    assert [e["epoch"] for e in record["history"]] == [1, 2]
    # Saved mid-epoch: the step the signal landed in was finished, none after it began.
    checkpoint = _last_checkpoint(tmp_path)
    assert checkpoint["global_step"] == step + 1
    assert checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [
        {"epoch": 2, "batches": step + 1 - 2 * STEPS_PER_EPOCH}
    ]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = train(compose_config(EXACT, tmp_path))
    assert not [w for w in caught if "not resumable" in str(w.message)]
    assert resumed["status"] == "completed" and resumed["resumed_from"].endswith("last.ckpt")
    assert_same_run(tmp_path, resumed, uninterrupted)


@pytest.mark.slow
def test_a_second_ctrl_c_stops_at_once_and_the_rerun_is_still_exact(tmp_path, monkeypatch, uninterrupted):
    # Both presses inside one step: the second stops it half done, so nothing is saved there and
    # the rerun resumes from the epoch-end checkpoint before it.
    step = 2 * STEPS_PER_EPOCH + 2
    with pytest.raises(SystemExit):
        train_with(
            monkeypatch,
            SignalAt(step, "on_before_optimizer_step", signal.SIGINT, times=2),
            compose_config(EXACT, tmp_path),
        )
    assert read_record(tmp_path)["status"] == "interrupted"
    assert _last_checkpoint(tmp_path)["global_step"] == 2 * STEPS_PER_EPOCH
    resumed = train(compose_config(EXACT, tmp_path))
    assert_same_run(tmp_path, resumed, uninterrupted)


def test_completed_run_is_skipped_when_rerun(tmp_path, tiny_overrides):
    cfg = compose_config(tiny_overrides, tmp_path)
    first = train(cfg)
    again = train(cfg)
    assert again == first
    assert read_record(tmp_path)["wall_time_s"] == first["wall_time_s"]


def test_resuming_a_different_model_names_both(tmp_path, tiny_overrides):
    train(compose_config(tiny_overrides, tmp_path))
    (tmp_path / "metrics.json").unlink()  # not completed: it would resume
    # resume=force: past the run folder's own check (another config), to the checkpoint's.
    overrides = [*tiny_overrides, "model.depth=14", "trainer.max_epochs=2", "resume=force"]
    cfg = compose_config(overrides, tmp_path)
    with pytest.raises(ConfigError) as info:
        train(cfg)
    message = str(info.value)
    assert "holds PyramidNet" in message and "but the config builds PyramidNet" in message
    assert "\n" not in message


def test_missing_ckpt_path(tmp_path, tiny_overrides):
    with pytest.raises(ConfigError, match="ckpt_path=/nonexistent.ckpt does not exist"):
        train(compose_config([*tiny_overrides, "ckpt_path=/nonexistent.ckpt"], tmp_path))


@pytest.mark.slow
def test_a_resumed_sweep_skips_completed_jobs(tmp_path):
    sweep_dir = tmp_path / "sweep"
    command = [
        "-m",
        "experiment=quickstart",
        "scale=smoke",
        "logger=none",
        "~callbacks.progress_bar",
        "optimizer.lr=0.1,0.05",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    first = run_app(command, tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    done = (sweep_dir / "0" / "metrics.json").read_text()
    # Job 1 "crashed": its record says running, as a killed job's does.
    record = json.loads((sweep_dir / "1" / "metrics.json").read_text())
    record["status"] = "running"
    (sweep_dir / "1" / "metrics.json").write_text(json.dumps(record))
    result = run_app(command, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (sweep_dir / "0" / "metrics.json").read_text() == done  # skipped, untouched
    assert read_record(sweep_dir / "1")["status"] == "completed"
    assert "2 of 2 jobs completed" in result.stdout
