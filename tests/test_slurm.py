"""SLURM for real: sweeps through hydra/launcher=slurm on a one-node cluster started on this machine.

The cluster (tests/slurm_cluster.py) is Debian's slurm-wlm and munge configured in a temporary
folder; it needs root and the packages (`apt-get install -y slurm-wlm munge`). Where it cannot
start, these tests are skipped with the reason, unless PYRAMID_LAB_REQUIRE_SLURM=1 (CI) makes
that a failure. Each sweep is `python -m pyramid_lab -m ... hydra/launcher=slurm` in a subprocess,
as a user types it, on a tiny PyramidNet (depth 8, alpha 4) over the digits data.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import start_app
from tests.slurm_cluster import SlurmCluster

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

# A real small workload: 10 steps of 64 digits per epoch, several epochs, so that a requeue or a
# cancel sent once the first epoch is recorded lands while the run still trains.
TRAIN = [
    "experiment=quickstart",
    "trainer=cpu",
    "model.depth=8",
    "model.alpha=4",
    "+trainer.limit_train_batches=10",
    "+trainer.limit_val_batches=2",
    "+trainer.limit_test_batches=2",
    "trainer.num_sanity_val_steps=0",
    "~callbacks.progress_bar",
    "+trainer.enable_model_summary=false",
    "+trainer.enable_progress_bar=false",
    "logger=none",
]
# One core and 1 GB per job: the local node has the machine's cores (2 here), one job each.
LAUNCHER = [
    "hydra/launcher=slurm",
    "hydra.launcher.partition=debug",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
]
SWEEP_TIMEOUT_S = 600  # a loaded 2-core machine takes ~40 s just to import torch in two jobs at once


# The cluster itself is a session fixture (tests/conftest.py, ``cluster``): started once.


@pytest.fixture
def sweeps(cluster, tmp_path):
    """Makes ``Sweep``s in tmp_path; any still running when the test ends are stopped."""
    made: list[Sweep] = []

    def make(overrides: list[str]) -> Sweep:
        made.append(Sweep(cluster, tmp_path, overrides))
        return made[-1]

    yield make
    for sweep in made:
        if sweep.process is not None and sweep.process.poll() is None:
            sweep.process.kill()
            sweep.process.wait()


class Sweep:
    """``python -m pyramid_lab -m OVERRIDES hydra/launcher=slurm ...`` in the background."""

    def __init__(self, cluster: SlurmCluster, folder: Path, overrides: list[str]) -> None:
        self.cluster, self.dir = cluster, folder / "sweep"
        self.cwd = folder
        self.args = ["-m", *TRAIN, *overrides, *LAUNCHER, f"hydra.sweep.dir={self.dir}"]
        self.process: subprocess.Popen | None = None

    def start(self) -> Sweep:
        env = {**self.cluster.env, "PYTHONUNBUFFERED": "1"}
        self.process = start_app(self.args, self.cwd, env=env, stderr=subprocess.STDOUT)
        return self

    def wait(self, timeout_s: float = SWEEP_TIMEOUT_S, *release: str) -> tuple[int, str]:
        """The sweep's exit code and output once it ends. Meanwhile requeued jobs are let start
        at once (SLURM holds a requeued job for 2 minutes before it may run), with the
        ``scontrol update`` settings ``release``."""
        deadline = time.monotonic() + timeout_s
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                self.process.kill()
                output = self.process.communicate()[0]
                pytest.fail(
                    f"the sweep did not end in {timeout_s} s:\n{output[-3000:]}\n"
                    f"{self.job_logs()}\n{self.cluster.logs()}"
                )
            self.cluster.release_requeued(*release)
            time.sleep(1)
        return self.process.returncode, self.process.communicate()[0]

    def run(self) -> tuple[int, str]:
        return self.start().wait()

    def record(self, job: int) -> dict:
        try:
            return read_record(self.dir / str(job))
        except (OSError, ValueError):  # not written yet, or being replaced right now
            return {}

    def wait_for_epoch(self, job: int, timeout_s: float = SWEEP_TIMEOUT_S) -> dict:
        """The job's record once it has finished its first epoch and still trains."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.process.poll() is None:
            record = self.record(job)
            if record.get("history"):
                assert record["status"] == "running", (record, self.job_logs())
                return record
            time.sleep(0.2)
        pytest.fail(f"job {job} never recorded an epoch:\n{self.job_logs()}")

    def slurm_job_id(self, job: int) -> str:
        """The SLURM id of Hydra job ``job``: ``123_4`` for element 4 of the sweep's job array, or
        ``123`` when the sweep is a single job (submitit submits no array for one job)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            folders = [
                p.name for p in (self.dir / ".submitit").glob("*") if (p / f"{p.name}_0_log.out").exists()
            ]
            ids = [name for name in folders if name.endswith(f"_{job}") or ("_" not in name and job == 0)]
            if ids:
                assert len(ids) == 1, ids
                return ids[0]
            time.sleep(0.5)
        pytest.fail(f"no SLURM job of Hydra job {job} under {self.dir / '.submitit'}")

    def job_logs(self, tail: int = 2500) -> str:
        """The jobs' submitit logs (stdout and stderr of every attempt), the last ``tail``
        characters of each (all of them for tail=0)."""
        logs = sorted((self.dir / ".submitit").glob("*/*_log.*"))
        return "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-tail:]}" for p in logs)


def read_record(job_dir: Path) -> dict:
    return json.loads((job_dir / "metrics.json").read_text())


def epochs_of(record: dict) -> list[int]:
    return [entry["epoch"] for entry in record["history"]]


def test_a_two_job_sweep_completes(sweeps):
    sweep = sweeps(["scheduler=cosine,exp", "trainer.max_epochs=2"])
    code, output = sweep.run()
    assert code == 0, output[-3000:] + sweep.job_logs()
    assert "2 of 2 jobs completed" in output
    records = [sweep.record(job) for job in (0, 1)]
    assert [r["status"] for r in records] == ["completed", "completed"]
    assert [epochs_of(r) for r in records] == [[1, 2], [1, 2]]
    assert {o for r in records for o in r["overrides"] if o.startswith("scheduler=")} == {
        "scheduler=cosine",
        "scheduler=exp",
    }
    # Both ran under SLURM as the two elements of one job array, each with its own log.
    job_ids = [sweep.slurm_job_id(job) for job in (0, 1)]
    assert len({job_id.split("_")[0] for job_id in job_ids}) == 1, job_ids
    for job_id in job_ids:
        log = (sweep.dir / ".submitit" / job_id / f"{job_id}_0_log.out").read_text()
        assert f"JobEnvironment(job_id={job_id}," in log, log


def test_scontrol_requeue_resumes_the_job_from_its_checkpoint(cluster, sweeps):
    sweep = sweeps(["trainer.max_epochs=6"]).start()
    sweep.wait_for_epoch(0)
    cluster.run("scontrol", "requeue", sweep.slurm_job_id(0))
    code, output = sweep.wait()
    assert code == 0, output[-3000:] + sweep.job_logs()
    record = sweep.record(0)
    assert record["status"] == "completed", record
    # The requeued job reran into the same job folder and continued from the checkpoint that the
    # requeue's SIGTERM made it save: the right epoch count, no epoch twice.
    assert record["resumed_from"].endswith("checkpoints/last.ckpt"), record
    assert record["epochs"] == 6 and epochs_of(record) == [1, 2, 3, 4, 5, 6], epochs_of(record)
    assert "1 of 1 jobs completed" in output
    # Both attempts are in the record: the one the requeue stopped, and the one that completed.
    first, *_, last = record["attempts"]
    assert first["status"] in ("interrupted", "running") and last["status"] == "completed", record["attempts"]


def test_a_job_at_its_time_limit_is_checkpointed_requeued_and_completes(cluster, sweeps):
    # SLURM signals a job (SIGUSR2, --signal from signal_delay_s) at the first of its time-limit
    # checks, made every 30 s, that finds at most signal_delay_s + 30 s left. Once the job trains,
    # its time limit is cut (as an administrator may) to the end of the minute that leaves 30 to
    # 90 s, so that the next check, within 30 s, signals it: at the same point of training
    # however long the job took to start. The run trains 45 s in all (max_time: its clock is in
    # the checkpoint), so it is still training then. The requeued job gets 5 minutes again.
    sweep = sweeps(
        [
            "trainer.max_epochs=1000",
            "+trainer.max_time=00:00:00:45",
            "hydra.launcher.timeout_min=5",
            "hydra.launcher.signal_delay_s=60",
        ]
    ).start()
    sweep.wait_for_epoch(0)
    job_id = sweep.slurm_job_id(0)
    minutes = (cluster.elapsed_s(job_id) + 90) // 60
    cluster.run("scontrol", "update", f"JobId={job_id}", f"TimeLimit={minutes}")
    code, output = sweep.wait(SWEEP_TIMEOUT_S, "TimeLimit=5")
    assert code == 0, output[-3000:] + sweep.job_logs()
    record = sweep.record(0)
    assert record["status"] == "completed", record
    logs = sweep.job_logs(tail=0)
    assert "Caught signal SIGUSR2" in logs and "this job is timed-out" in logs, logs
    assert "Requeued job" in logs, logs
    # It saved where it stood on its way out, and the requeued job continued from there.
    assert record["resumed_from"].endswith("checkpoints/last.ckpt"), record
    epochs = epochs_of(record)
    assert epochs == list(range(1, len(epochs) + 1)) and record["epochs"] == len(epochs), epochs


def test_scancel_interrupts_and_rerunning_the_sweep_completes_it(cluster, sweeps):
    # Job 0 trains 1 epoch and completes; job 1 trains 6 and is cancelled after its first.
    sweep = sweeps(["trainer.max_epochs=1,6"]).start()
    sweep.wait_for_epoch(1)
    deadline = time.monotonic() + SWEEP_TIMEOUT_S
    while sweep.record(0).get("status") != "completed" and time.monotonic() < deadline:
        time.sleep(0.2)
    cluster.run("scancel", sweep.slurm_job_id(1))
    code, output = sweep.wait()
    # submitit reports the cancelled job as one that produced no result: the sweep fails.
    assert code != 0
    interrupted = sweep.record(1)
    assert interrupted["status"] == "interrupted", interrupted
    assert (sweep.dir / "1" / "checkpoints" / "last.ckpt").is_file()
    finished = (sweep.dir / "0" / "metrics.json").read_text()

    code, output = sweeps(["trainer.max_epochs=1,6"]).run()
    assert code == 0, output[-3000:] + sweep.job_logs()
    assert "2 of 2 jobs completed" in output
    # The finished job was skipped (its record untouched), the cancelled one resumed and completed.
    assert (sweep.dir / "0" / "metrics.json").read_text() == finished
    record = sweep.record(1)
    assert record["status"] == "completed" and record["resumed_from"].endswith("last.ckpt"), record
    assert epochs_of(record) == [1, 2, 3, 4, 5, 6]
