"""Sweeps through hydra-submitit-launcher: a real local sweep, and the SLURM preset's resources.

No SLURM here: the slurm_gpu preset is checked by composing it and building the sbatch script that
submitit would submit, without submitting it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from pyramid_lab.runs.record_file import read_record
from tests.helpers import CONFIG_DIR, run_app

submitit = pytest.importorskip("submitit", reason="needs pip install -e '.[slurm]'")
pytest.importorskip("hydra_plugins.hydra_submitit_launcher")


@pytest.mark.slow
def test_two_job_sweep_through_the_submitit_local_launcher(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = [
        "-m",
        "experiment=quickstart",
        "scale=smoke",
        "logger=none",
        "optimizer.lr=0.05,0.1",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=5",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    result = run_app(args, tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "2 of 2 jobs completed" in result.stdout
    records = [read_record(sweep_dir / str(job)) for job in range(2)]
    assert [r["status"] for r in records] == ["completed", "completed"]
    assert [r["overrides"][-1] for r in records] == ["optimizer.lr=0.05", "optimizer.lr=0.1"]
    # Each job ran in its own process under submitit, which kept its logs beside the sweep.
    assert len(list((sweep_dir / ".submitit").glob("*/*_0_log.out"))) == 2


def compose_with_hydra(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        return compose("config", overrides=overrides, return_hydra_config=True)


def sbatch_script(launcher, folder: Path, monkeypatch) -> str:
    """The sbatch file submitit would submit for ``launcher``: its parameters mapped the way
    BaseSubmititLauncher.launch maps them, then submitit's own validation and rendering."""
    from submitit.slurm.slurm import SlurmExecutor

    # submitit refuses to build a SLURM executor where `srun` is not on PATH; nothing is run here.
    monkeypatch.setattr(SlurmExecutor, "affinity", classmethod(lambda cls: 1))
    params = dict(launcher.params)
    executor = submitit.AutoExecutor(
        cluster="slurm", folder=folder, slurm_max_num_timeout=params.pop("max_num_timeout")
    )
    params.pop("submitit_folder")
    base = {
        "timeout_min",
        "cpus_per_task",
        "gpus_per_node",
        "tasks_per_node",
        "mem_gb",
        "nodes",
        "name",
        "stderr_to_stdout",
    }
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    return executor._executor._make_submission_file_text("python -u -m submitit.core._submit", "0")


def test_slurm_gpu_preset_follows_the_trainer(tmp_path, monkeypatch):
    cfg = compose_with_hydra(
        [
            "hydra/launcher=slurm_gpu",
            "trainer=gpu",
            "hydra.launcher.partition=gpu",
            f"hydra.sweep.dir={tmp_path}",
        ]
    )
    launcher = instantiate(cfg.hydra.launcher)
    assert type(launcher).__name__ == "SlurmLauncher"
    assert {k: launcher.params[k] for k in ("gpus_per_node", "tasks_per_node", "nodes")} == {
        "gpus_per_node": 1,
        "tasks_per_node": 1,
        "nodes": 1,
    }
    assert launcher.params["timeout_min"] == 24 * 60 and launcher.params["max_num_timeout"] > 0

    script = sbatch_script(launcher, tmp_path / ".submitit", monkeypatch)
    for line in (
        "--gpus-per-node=1",
        "--ntasks-per-node=1",
        "--nodes=1",
        "--partition=gpu",
        "--time=1440",
        "--signal=USR2@120",
        "--cpus-per-task=8",
        "--mem=64GB",
        "--job-name=train",
    ):
        assert f"#SBATCH {line}\n" in script, script


def test_slurm_gpu_preset_asks_for_one_task_per_gpu_on_every_node(tmp_path, monkeypatch):
    cfg = compose_with_hydra(
        [
            "hydra/launcher=slurm_gpu",
            "trainer=ddp",
            "trainer.devices=4",
            "trainer.num_nodes=2",
            f"hydra.sweep.dir={tmp_path}",
        ]
    )
    launcher = instantiate(cfg.hydra.launcher)
    script = sbatch_script(launcher, tmp_path / ".submitit", monkeypatch)
    for line in ("--gpus-per-node=4", "--ntasks-per-node=4", "--nodes=2"):
        assert f"#SBATCH {line}\n" in script, script
    assert "\nsrun " in script  # srun starts the 8 tasks: Lightning maps SLURM_PROCID to its rank


def test_slurm_gpu_composes_from_the_command_line(tmp_path):
    result = run_app(["hydra/launcher=slurm_gpu", "--cfg", "hydra"], tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "SlurmLauncher" in result.stdout
    assert "tasks_per_node: ${trainer.devices}" in result.stdout
    assert "max_num_timeout: 3" in result.stdout
