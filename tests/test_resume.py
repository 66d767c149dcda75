"""Resume after a crash: atomic checkpoints, SIGKILL and SIGTERM mid-run, resumed sweeps."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pyramid_lab.errors import ConfigError
from pyramid_lab.runs.checkpoint import AtomicCheckpointIO
from pyramid_lab.runs.record import read_record
from pyramid_lab.train import train
from tests.helpers import compose_config

# A run of about a second per epoch on the digits: long enough to be killed mid-way.
RUN = [
    "experiment=quickstart",
    "model.depth=8",
    "model.alpha=8",
    "trainer.max_epochs=6",
    "~callbacks.progress_bar",
    "+trainer.enable_progress_bar=false",
    "scheduler=exp",
]


def start(run_dir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pyramid_lab", *RUN, f"hydra.run.dir={run_dir}", *extra],
        cwd=run_dir.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


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
    assert record["status"] == "completed" and record["epochs"] == 6
    assert [entry["epoch"] for entry in record["history"]] == [1, 2, 3, 4, 5, 6]
    assert record["resumed_from"].endswith("last.ckpt")
    # The learning rate continues its schedule (ExponentialLR, gamma 0.95) across the resume.
    lrs = [entry["train/lr"] for entry in record["history"]]
    assert lrs == pytest.approx([0.1 * 0.95**i for i in range(6)])
    # TensorBoard gets a second event file in the same folder: the curves continue.
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) >= 2


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_marks_interrupted_and_exits(tmp_path):
    run_dir = tmp_path / "run"
    process = start(run_dir)
    wait_for_epochs(run_dir, 1, process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err[-2000:]
    record = read_record(run_dir)
    assert record["status"] == "interrupted" and "SIGTERM" in record["error"]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()

    rerun = start(run_dir)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-2000:]
    record = read_record(run_dir)
    assert record["status"] == "completed" and record["epochs"] == 6
    assert [entry["epoch"] for entry in record["history"]] == [1, 2, 3, 4, 5, 6]


def test_resume_continues_exactly_where_an_uninterrupted_run_would_be(tmp_path, tiny_overrides):
    """Optimizer, scheduler and RNG state (ShakeDrop, augmentation) come back with the weights."""
    common = [*tiny_overrides, "scheduler=exp", "tricks=[augment,shakedrop]", "model.shakedrop=0.5"]
    straight = train(compose_config([*common, "trainer.max_epochs=3"], tmp_path / "straight"))
    train(compose_config([*common, "trainer.max_epochs=2"], tmp_path / "split"))
    resumed = train(compose_config([*common, "trainer.max_epochs=3"], tmp_path / "split"))
    assert resumed["resumed_from"].endswith("last.ckpt")
    assert [e["epoch"] for e in resumed["history"]] == [1, 2, 3]
    for key in ("train/loss", "train/acc", "test/acc", "test/loss", "val/acc_best"):
        assert resumed[key] == straight[key], key
    weights = [
        torch.load(tmp_path / run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
        for run in ("straight", "split")
    ]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


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
        sys.executable,
        "-m",
        "pyramid_lab",
        "-m",
        "experiment=quickstart",
        "scale=smoke",
        "logger=none",
        "~callbacks.progress_bar",
        "optimizer.lr=0.1,0.05",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    assert subprocess.run(command, cwd=tmp_path, capture_output=True).returncode == 0
    done = (sweep_dir / "0" / "metrics.json").read_text()
    # Job 1 "crashed": its record says running, as a killed job's does.
    record = json.loads((sweep_dir / "1" / "metrics.json").read_text())
    record["status"] = "running"
    (sweep_dir / "1" / "metrics.json").write_text(json.dumps(record))
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (sweep_dir / "0" / "metrics.json").read_text() == done  # skipped, untouched
    assert read_record(sweep_dir / "1")["status"] == "completed"
    assert "2 of 2 jobs completed" in result.stdout
