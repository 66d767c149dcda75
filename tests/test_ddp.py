"""Lightning DDP on the CPU with two processes (gloo): the Hydra app end to end."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from pyramid_lab.runs.record_file import read_record
from tests.helpers import compose_config, run_app

RUN = [
    "experiment=quickstart",
    "model.depth=8",
    "model.alpha=8",
    "trainer.max_epochs=2",
    "data.batch_size=32",
    "~callbacks.progress_bar",
    "+trainer.enable_progress_bar=false",
]


@pytest.mark.slow
def test_two_process_ddp_run_completes_with_each_sample_once(tmp_path):
    run_dir = tmp_path / "run"
    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true"]
    result = run_app([*RUN, *ddp, f"hydra.run.dir={run_dir}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("run folder:") == 1  # rank 0 reports, rank 1 does not
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs", "run"]  # no stray Hydra folder
    record = read_record(run_dir)
    assert record["status"] == "completed" and record["epochs"] == 2
    # 1,257 digits, 2 ranks x 32 per step, incomplete global batch dropped: 19 x 64 per epoch.
    assert [entry["train/samples"] for entry in record["history"]] == [1216, 1216]

    # Metrics are reduced over both ranks: test/acc is the last model's accuracy on the whole
    # test split, as one process computes it.
    cfg = compose_config(RUN, tmp_path / "check")
    net = instantiate(cfg.model)
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    net.load_state_dict({k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")})
    datamodule = instantiate(cfg.data)
    datamodule.setup("test")
    correct = total = 0
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            x, y = datamodule.on_after_batch_transfer(batch, 0)
            correct += (net.eval()(x).argmax(1) == y).sum().item()
            total += len(y)
    assert total == 270
    assert record["test/acc"] == pytest.approx(correct / total, abs=1e-6)


@pytest.mark.slow
def test_a_sweep_of_ddp_jobs_keeps_each_rank_in_its_job(tmp_path):
    """The Hydra + DDP traps: child ranks must join their own job, not rerun the sweep or start a
    run folder of their own, and the second job must not find the first one's process group."""
    sweep_dir = tmp_path / "sweep"
    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true"]
    # Two steps, one validation and one test batch per job: the traps are in starting the ranks.
    short = [
        "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=1",
        "+trainer.limit_test_batches=1",
        "trainer.max_epochs=1",
    ]
    sweep = ["optimizer.lr=0.05,0.1", f"hydra.sweep.dir={sweep_dir}"]
    result = run_app(["-m", *RUN, *ddp, *short, *sweep], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 of 2 jobs completed" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs", "sweep"]
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == ["0", "1"]
    for job in ("0", "1"):
        assert read_record(sweep_dir / job)["status"] == "completed"
        assert (sweep_dir / job / "train_ddp_process_1.log").is_file()  # rank 1 ran in this job
