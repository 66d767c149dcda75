"""Faults a run survives: damaged checkpoints, a second writer, hostile checkpoints, a full disk,
and reruns that fail after a run completed. Each fault is injected into a tiny real run."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pyramid_lab.errors import ConfigError
from pyramid_lab.evaluate import load_run
from pyramid_lab.runs import atomic, checkpoint
from pyramid_lab.runs.atomic import DiskFull
from pyramid_lab.runs.checkpoint import DamagedCheckpoint, UntrustedCheckpoint, load_checkpoint
from pyramid_lab.runs.lock import RunFolderInUse, RunLock
from pyramid_lab.runs.record_file import latest_completed, read_record
from pyramid_lab.train import train
from tests.helpers import TINY, compose_config, run_app

PACKAGE = Path(__file__).resolve().parents[1] / "pyramid_lab"


def tiny(epochs: int, *extra: str) -> list[str]:
    return [o for o in TINY if not o.startswith("trainer.max_epochs=")] + [
        f"trainer.max_epochs={epochs}",
        *extra,
    ]


def run(run_dir: Path, epochs: int, *extra: str) -> dict:
    return train(compose_config(tiny(epochs, *extra), run_dir))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def epochs_of(record: dict) -> list[int]:
    return [entry["epoch"] for entry in record["history"]]


# --- damaged checkpoints ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_damaged_last_checkpoint_falls_back_to_the_newest_intact_one(tmp_path, caplog):
    run_dir = tmp_path / "run"
    run(run_dir, 2)
    last = run_dir / "checkpoints" / "last.ckpt"
    (best,) = (run_dir / "checkpoints").glob("best-*.ckpt")
    truncate(last)
    with caplog.at_level("WARNING"):
        record = run(run_dir, 3)  # a longer run: continues from the folder's checkpoint
    assert f"{last} cannot be read" in caplog.text and f"resuming from {best}" in caplog.text, caplog.text
    assert record["status"] == "completed" and record["resumed_from"] == str(best)
    assert epochs_of(record) == [1, 2, 3]


@pytest.mark.slow
def test_a_damaged_checkpoint_and_no_intact_one_stop_with_one_line_and_keep_the_record(tmp_path):
    run_dir = tmp_path / "run"
    run(run_dir, 1)
    completed = read_record(run_dir)
    for ckpt in (run_dir / "checkpoints").glob("*.ckpt"):
        truncate(ckpt)
    result = run_app([*tiny(2), f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    (line,) = [text for text in result.stderr.splitlines() if text.startswith("error:")]
    assert "last.ckpt cannot be read" in line and "resume=false" in line and "ckpt_path=" in line, line
    assert read_record(run_dir) == completed  # still completed, with its test accuracy


# --- one writer per run folder ---------------------------------------------------------------------

HOLD = (
    "import sys, time; from pyramid_lab.runs.lock import RunLock; "
    "lock = RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(120)"
)


@pytest.mark.slow
def test_a_second_process_on_a_run_folder_refuses_at_once_naming_the_holder(tmp_path):
    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(RunFolderInUse) as refused:
            run(run_dir, 1)
        assert time.monotonic() - started < 10  # at once, not after training
        message = str(refused.value)
        assert "\n" not in message
        assert f"pid {holder.pid} on host {socket.gethostname()} since " in message, message
        assert not (run_dir / "metrics.json").exists()  # the refused process wrote nothing
    finally:
        holder.kill()  # SIGKILL: no clean-up of any kind
        holder.wait()
    # The kernel dropped the dead holder's lock: the folder is free for the rerun.
    assert run(run_dir, 1)["status"] == "completed"


def test_ddp_ranks_other_than_zero_do_not_take_the_lock(tmp_path, monkeypatch):
    from lightning_fabric.utilities.rank_zero import rank_zero_only

    with RunLock(tmp_path) as rank0:
        assert rank0.held
        monkeypatch.setattr(rank_zero_only, "rank", 1)
        with RunLock(tmp_path) as rank1:  # would raise RunFolderInUse if it tried
            assert not rank1.held


# --- safe loading ----------------------------------------------------------------------------------


class RunsCode:
    """Unpickling this calls open(marker, "w"): a stand-in for any code a pickle can run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_checkpoints_load_weights_only_and_every_load_in_the_package_does(tmp_path):
    run_dir = tmp_path / "run"
    run(run_dir, 1)
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert set(saved["rng_states"]) >= {"torch", "numpy", "python"}
    # One loader (runs/checkpoint.py), weights-only; its one weights_only=False is the trusted
    # branch; Lightning's load (train.py) is weights-only unless that branch was taken.
    lines = [
        (f.relative_to(PACKAGE).as_posix(), line.strip())
        for f in PACKAGE.rglob("*.py")
        for line in f.read_text().splitlines()
        if "torch.load(" in line or "weights_only=" in line
    ]
    assert {f for f, line in lines if "torch.load(" in line} == {"runs/checkpoint.py"}, lines
    assert [f for f, line in lines if "weights_only=False" in line] == ["runs/checkpoint.py"], lines
    assert all(
        "weights_only=True" in line
        or "resume.weights_only" in line
        or "weights_only=False" in line
        or "weights_only=not" in line
        for f, line in lines
        if "weights_only=" in line
    ), lines


def test_a_checkpoint_that_would_run_code_is_refused_and_never_runs_it(tmp_path):
    run_dir = tmp_path / "run"
    run(run_dir, 1)
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    marker = tmp_path / "code_ran"
    checkpoint["callbacks"]["Extra"] = RunsCode(marker)
    hostile = tmp_path / "sent_to_you.ckpt"
    torch.save(checkpoint, hostile)

    with pytest.raises(UntrustedCheckpoint, match=r"open\).*trust_checkpoint=true"):
        run(tmp_path / "resumed", 2, f"ckpt_path={hostile}")
    with pytest.raises(UntrustedCheckpoint) as refused:
        load_run(str(hostile))  # what mode=test and mode=predict load
    assert "\n" not in str(refused.value)
    assert not marker.exists()


def test_an_older_checkpoint_with_numpy_state_loads_when_trusted(tmp_path):
    old = tmp_path / "old.ckpt"
    import numpy as np

    torch.save({"rng_states": {"numpy": np.random.get_state()}}, old)
    with pytest.raises(UntrustedCheckpoint, match="numpy"):
        load_checkpoint(old)
    assert load_checkpoint(old, trust=True)["rng_states"]["numpy"][0] == "MT19937"


def test_a_damaged_file_is_damaged_not_untrusted(tmp_path):
    path = tmp_path / "cut.ckpt"
    torch.save({"x": torch.zeros(1000)}, path)
    truncate(path)
    with pytest.raises(DamagedCheckpoint, match="cut.ckpt cannot be read"):
        load_checkpoint(path)


# --- disk full -------------------------------------------------------------------------------------


class FullDisk:
    """An ``open`` for the run's writers (pyramid_lab.runs.atomic, .checkpoint) whose files fail
    with ENOSPC, after writing part of the data as a device that fills up does, once ``full(path)``
    says so."""

    def __init__(self, full) -> None:
        self.full = full

    def __call__(self, path, mode="r", *args, **kwargs):
        file = open(path, mode, *args, **kwargs)  # noqa: SIM115 - returned to the caller's with
        return FillingFile(file) if self.full(Path(path)) else file


class FillingFile:
    def __init__(self, file) -> None:
        self.file = file

    def write(self, data) -> int:
        self.file.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()


def test_disk_full_writing_a_checkpoint_keeps_the_previous_one_and_stops_with_one_line(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    writes = []

    def full(path: Path) -> bool:  # the second last.ckpt (epoch 2) finds the disk full
        writes.append(path.name)
        return path.name.startswith(".last.ckpt") and writes.count(path.name) >= 2

    monkeypatch.setattr(checkpoint, "open", FullDisk(full), raising=False)
    with pytest.raises(DiskFull) as stopped:
        run(run_dir, 3)
    message = str(stopped.value)
    assert "\n" not in message and str(run_dir / "checkpoints") in message, message
    monkeypatch.undo()
    last = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert last["epoch"] == 0  # the end of epoch 1: intact, the torn write was thrown away
    assert [p.name for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")] == []
    record = read_record(run_dir)
    assert record["status"] == "failed" and "no space left" in record["error"]


def test_disk_full_writing_the_record_keeps_the_previous_one(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    run(run_dir, 1)
    before = (run_dir / "metrics.json").read_text()
    monkeypatch.setattr(atomic, "open", FullDisk(lambda path: "metrics.json" in path.name), raising=False)
    with pytest.raises(DiskFull, match=re.escape(str(run_dir))):
        run(run_dir, 2)
    assert (run_dir / "metrics.json").read_text() == before


# --- no record lost --------------------------------------------------------------------------------


def test_a_failed_rerun_keeps_the_completed_attempt_readable(tmp_path):
    run_dir = tmp_path / "run"
    first = run(run_dir, 1)
    with pytest.raises(ConfigError):
        # The same run under a budget it is over: the rerun fails (a budget changes no result, so
        # the run folder takes the rerun).
        run(run_dir, 1, "budget.max_params=1000")
    record = read_record(run_dir)
    assert record["status"] == "failed"
    done, failed = record["attempts"]
    assert done["status"] == "completed" and done["test/acc"] == first["test/acc"] and done["epochs"] == 1
    assert failed["status"] == "failed" and "budget.max_params=1,000" in failed["error"]
    assert done["started"] <= done["ended"] <= failed["started"]
    view, note = latest_completed(record)
    assert view["status"] == "completed" and view["test/acc"] == first["test/acc"]
    assert note.startswith("attempt 1 of 2") and "failed" in note


def test_an_unreadable_record_is_kept_aside_not_overwritten(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text('{"status": "compl')
    run(run_dir, 1)
    (kept,) = run_dir.glob("metrics.json.unreadable-*")
    assert kept.read_text() == '{"status": "compl'
    assert read_record(run_dir)["status"] == "completed"


# --- a run folder belongs to one config (pyramid_lab/runs/folder_config.py) ------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A completed one-epoch run folder (seed 42); tests rerun into copies of it."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    run(run_dir, 1)
    return run_dir


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    return copy


def contents(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (["seed=1"], "(seed: 42 -> 1)"),
        (["optimizer=adam"], "(optimizer: torch.optim.SGD -> torch.optim.Adam)"),  # was a KeyError: 'step'
        (
            ["model.depth=14", "tricks=ema"],
            "(callbacks.ema: None -> pyramid_lab.training.ema.EMA, model.depth: 8 -> 14)",
        ),
        (["trainer.max_epochs=2", "seed=1", "resume=false"], "(seed: 42 -> 1)"),  # starting over too
    ],
    ids=["seed", "optimizer", "model_and_trick", "resume_false"],
)
def test_a_rerun_with_another_config_is_refused_naming_it_and_writes_nothing(run_copy, change, named):
    before = contents(run_copy)
    with pytest.raises(ConfigError) as refused:
        run(run_copy, 1, *change)
    message = str(refused.value)
    assert "\n" not in message and f"run folder {run_copy} holds a run of another config {named}" in message
    assert "use a new run folder" in message and "resume=force" in message
    assert contents(run_copy) == before


def test_resume_force_continues_and_each_attempt_keeps_its_config(run_copy):
    first_config = (run_copy / "config.yaml").read_text()
    record = run(run_copy, 2, "seed=1", "resume=force")
    assert record["status"] == "completed" and epochs_of(record) == [1, 2]  # epoch 1 was seed 42's
    one, two = record["attempts"]
    assert (one["config"], two["config"]) == ("attempts/1/config.yaml", "attempts/2/config.yaml")
    assert two["resume"] == "force" and two["config_changes"] == ["seed"]
    assert (run_copy / "attempts/1/config.yaml").read_text() == first_config
    assert "seed: 42" in first_config and "seed: 1\n" in (run_copy / "attempts/2/config.yaml").read_text()
    assert (run_copy / "config.yaml").read_text() == (run_copy / "attempts/2/config.yaml").read_text()
    # The folder is seed 1's now: the same config with more epochs and the progress bar back continues.
    more = train(compose_config([o for o in tiny(3, "seed=1") if o != "~callbacks.progress_bar"], run_copy))
    assert more["status"] == "completed" and epochs_of(more) == [1, 2, 3]
    assert "resume" not in more["attempts"][-1] and more["attempts"][-1]["resumed_from"].endswith("last.ckpt")


def test_resume_force_cannot_load_a_checkpoint_into_another_optimizer(run_copy):
    before = contents(run_copy)
    with pytest.raises(ConfigError) as refused:  # was: KeyError: 'step' from torch's Adam
        run(run_copy, 2, "optimizer=adam", "resume=force")
    message = str(refused.value)
    assert "\n" not in message and "resume=force cannot continue" in message
    assert "with another optimizer" in message and "use a new run folder" in message
    assert contents(run_copy) == before


def test_a_config_yaml_from_before_attempts_kept_their_own_is_kept(run_copy):
    # A folder from a version that kept one config.yaml: the rerun keeps it beside its own.
    shutil.rmtree(run_copy / "attempts")
    record = read_record(run_copy)
    for attempt in record["attempts"]:
        del attempt["config"]
    (run_copy / "metrics.json").write_text(json.dumps(record))
    old = (run_copy / "config.yaml").read_text()
    run(run_copy, 2)
    assert (run_copy / "attempts/before-2/config.yaml").read_text() == old
    assert (run_copy / "attempts/2/config.yaml").is_file()


def test_config_yaml_is_written_atomically(run_copy, monkeypatch):
    before = (run_copy / "config.yaml").read_text()
    monkeypatch.setattr(atomic, "open", FullDisk(lambda path: "config.yaml" in path.name), raising=False)
    with pytest.raises(DiskFull):
        run(run_copy, 2)
    assert (run_copy / "config.yaml").read_text() == before
    assert not [p for p in run_copy.rglob(".*.tmp")]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (["trainer.max_epochs=5"], []),  # more epochs: the schedule's T_max follows, not a change
        (["trainer.max_epochs=2"], ["trainer.max_epochs"]),  # fewer: the run's schedule was longer
        (["trainer.max_epochs=5", "scheduler=multistep"], ["scheduler"]),
        (["logger=tensorboard", "trainer.log_every_n_steps=1", "budget.max_params=10", "resume=false"], []),
        (["+trainer.enable_progress_bar=false", "task_name=renamed", "paths.data_dir=/elsewhere"], []),
        (["data.batch_size=32", "module.loss.label_smoothing=0.0", "activation=relu"], None),
        (["+new_setting=1"], ["new_setting"]),  # not listed as safe: a change
    ],
    ids=["more_epochs", "fewer_epochs", "scheduler", "logging", "labels_paths", "data_module_act", "new_key"],
)
def test_which_settings_change_a_run(tmp_path, change, expected):
    from omegaconf import OmegaConf

    from pyramid_lab.runs.folder_config import config_changes

    saved = OmegaConf.to_container(compose_config(tiny(3), tmp_path), resolve=True)
    changes = config_changes(saved, compose_config([*tiny(3), *change], tmp_path))
    if expected is None:
        expected = ["activation.name", "data.batch_size", "module.loss.label_smoothing"]
    assert changes == expected


# --- leftovers of interrupted writes ---------------------------------------------------------------


def test_temp_files_of_killed_writers_and_an_orphan_best_are_removed_at_the_next_start(run_copy):
    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead_pid = int(exited.stdout)  # exited: its temporary files are leftovers
    ckpts = run_copy / "checkpoints"
    last = (ckpts / "last.ckpt").read_bytes()
    leftovers = [ckpts / f".last.ckpt.{dead_pid}.tmp", run_copy / f".metrics.json.{dead_pid}.tmp"]
    for path in leftovers:
        path.write_bytes(last)
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    live = ckpts / f".last.ckpt.{writer.pid}.tmp"  # a running process's: kept
    live.write_bytes(b"in progress")
    (best,) = ckpts.glob("best-*.ckpt")
    orphan = ckpts / "best-epoch005.ckpt"  # written after last.ckpt's epoch by a killed attempt
    orphan.write_bytes(best.read_bytes())
    try:
        record = run(run_copy, 2)
    finally:
        writer.kill()
        writer.wait()
    assert record["status"] == "completed"
    assert not any(path.exists() for path in [*leftovers, orphan])
    assert live.exists() and (ckpts / "last.ckpt").is_file()


def test_disk_full_in_tensorboards_writer_thread_is_one_line_and_no_traceback(tmp_path, monkeypatch, caplog):
    import threading

    from tensorboard.summary.writer import record_writer

    def full(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    printed = []  # what would print a traceback: Python's hook, the one before the run's
    monkeypatch.setattr(threading, "excepthook", printed.append)
    monkeypatch.setattr(record_writer.RecordWriter, "write", full)
    overrides = [o for o in tiny(3) if o != "logger=none"] + ["logger=tensorboard"]
    with caplog.at_level("WARNING"), pytest.raises(DiskFull) as stopped:
        train(compose_config(overrides, tmp_path / "run"))
    message = str(stopped.value)
    assert "\n" not in message and f"no space left on the device of {tmp_path / 'run'}" in message
    assert printed == []
    assert "the writer thread of tensorboard.summary.writer.event_file_writer stopped" in caplog.text
    assert read_record(tmp_path / "run")["status"] == "failed"


@pytest.mark.parametrize("damage", ["a: [1", ""], ids=["broken_yaml", "empty"])
def test_an_unreadable_config_yaml_is_named_not_guessed(run_copy, damage):
    (run_copy / "config.yaml").write_text(damage)
    with pytest.raises(ConfigError) as refused:
        run(run_copy, 2)
    message = str(refused.value)
    assert "\n" not in message and f"{run_copy / 'config.yaml'} cannot be read" in message
    assert "resume=force" in message
