"""Issue: every ablation as a config group, each table of the study as a one-command sweep."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from hydra.utils import instantiate

from pyramid_lab.errors import ConfigError
from pyramid_lab.runs.record_file import read_record
from pyramid_lab.train import train
from tests.helpers import CONFIG_DIR, SMALL_MODEL, compose_config, run_app
from tests.table_blocks import study_numbers

TABLES = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("table*.yaml"))
# The study's number per row of each table, from the table's own file (its `table` block).
PAPER_TABLES = {table: study_numbers(table) for table in TABLES}


def sweep_params(table: str) -> dict[str, str]:
    return yaml.safe_load((CONFIG_DIR / "experiment" / f"{table}.yaml").read_text())["hydra"]["sweeper"][
        "params"
    ]


def test_every_table_of_the_study_has_a_sweep():
    # The study's Tables 1 to 8, then ours (Table 9), each with the study's numbers in its file.
    assert [table.split("_")[0] for table in TABLES] == [f"table{i}" for i in range(1, 10)]
    assert all(PAPER_TABLES[table] for table in TABLES)


@pytest.mark.parametrize("table", sorted(PAPER_TABLES))
def test_sweep_rows_are_the_study_rows(table, tmp_path):
    ((group, values),) = sweep_params(table).items()
    if table == "table9_beyond":  # ours: the study has its baseline row (the final recipe) only
        assert set(PAPER_TABLES[table]) <= set(values.split(","))
    else:
        assert set(values.split(",")) == set(PAPER_TABLES[table])
    for value in values.split(","):  # every row composes into a config
        cfg = compose_config([f"experiment={table}", f"{group}={value}"], tmp_path)
        assert cfg.table.name == table


@pytest.mark.parametrize("group", ["model", "optimizer", "scheduler", "activation", "tricks", "data"])
def test_unknown_option_lists_the_valid_ones(group, tmp_path):
    result = run_app([f"{group}=nonsense"], tmp_path, timeout=120)
    assert result.returncode != 0
    valid = sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))
    assert f"Could not find '{group}/nonsense'" in result.stderr
    assert all(option in result.stderr for option in valid)
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "outputs").exists()


def test_tricks_combine(tmp_path):
    cfg = compose_config(["tricks=[label_smoothing,shakedrop,merge_val,augment,gaussian_noise]"], tmp_path)
    assert cfg.module.loss.label_smoothing == 0.1
    assert cfg.model.shakedrop == 0.5
    assert cfg.data.merge_val is True
    augment = cfg.data.augment
    assert (augment.crop_padding, augment.rotate_degrees, augment.noise_std) == (4, 15.0, 0.5)
    assert cfg.data.train_repeats == 2
    baseline = compose_config([], tmp_path)
    assert (baseline.data.augment.crop_padding, baseline.data.augment.flip) == (0, False)
    assert baseline.module.loss.label_smoothing == 0.0 and baseline.data.merge_val is False


def test_recipes_carry_the_study_numbers(tmp_path):
    base = compose_config(["experiment=paper_baseline"], tmp_path)
    assert base.model._target_.endswith("pyramidnet196_a48") and base.activation.name == "relu"
    scheduler = instantiate(base.scheduler)(torch.optim.SGD([torch.zeros(1)], lr=0.1))
    assert sorted(scheduler.milestones) == [32, 64] and scheduler.gamma == 0.1
    assert (base.optimizer.lr, base.data.batch_size, base.trainer.max_epochs) == (0.1, 256, 100)
    assert base.budget.max_params == 2_000_000 and base.data.merge_val is False
    final = compose_config(["experiment=paper_final"], tmp_path)
    assert final.model.shakedrop == 0.5 and final.activation.name == "leaky_relu"
    assert final.module.loss.label_smoothing == 0.1 and final.data.merge_val is True
    assert final.scheduler._target_.endswith("CosineAnnealingWarmRestarts")
    assert final.trainer.max_epochs == 230 and final.optimizer._target_ == "torch.optim.SGD"
    sam = compose_config(["experiment=paper_final", "optimizer=sam"], tmp_path)
    assert sam.optimizer._target_ == "pyramid_lab.optim.SAM"


@pytest.mark.parametrize("option", sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml")))
@pytest.mark.parametrize("activation", ["leaky_relu"])
def test_every_model_option_builds_with_the_activation(option, activation, tmp_path):
    # model=pyramidnet is any depth and alpha: it has none of its own.
    sizes = ["model.depth=20", "model.alpha=12"] if option == "pyramidnet" else []
    cfg = compose_config([f"model={option}", f"activation={activation}", *sizes], tmp_path)
    net = instantiate(cfg.model)
    kinds = {type(m).__name__ for m in net.modules()}
    assert "LeakyReLU" in kinds and "ReLU" not in kinds


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optimizer.lr=-0.1"], "optimizer.lr=-0.1 must be > 0"),
        (["optimizer=sam", "optimizer.rho=0"], "optimizer.rho=0"),
        (["module.loss.label_smoothing=1.0"], "module.loss.label_smoothing=1.0 must be in [0, 1)"),
        (["tricks=gaussian_noise", "data.augment.noise_std=-1"], "data.augment.noise_std=-1"),
        (["scheduler=multistep", "scheduler.milestones=[1,5]"], "scheduler.milestones"),
        (["budget.max_params=10000"], "over budget.max_params=10,000"),
    ],
)
def test_bad_settings_fail_in_one_line_and_are_recorded(overrides, message, tmp_path, tiny_overrides):
    cfg = compose_config([*tiny_overrides, "trainer.max_epochs=2", *overrides], tmp_path)
    with pytest.raises(ConfigError) as info:
        train(cfg)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert read_record(tmp_path)["status"] == "failed"


@pytest.mark.parametrize(
    "overrides",
    [
        ["optimizer=sam"],
        ["optimizer=sam", "scheduler=plateau", "scheduler.warmup_epochs=1"],
        ["scheduler=plateau", "tricks=merge_val", "scheduler.warmup_epochs=1"],
        ["optimizer=adam", "scheduler=exp"],
        ["optimizer=adadelta", "scheduler=cosine_restarts", "scheduler.T_0=1"],
    ],
)
def test_optimizers_and_schedulers_train_and_log_the_lr(overrides, tmp_path, tiny_overrides):
    cfg = compose_config([*tiny_overrides, "trainer.max_epochs=3", *overrides], tmp_path)
    record = train(cfg)
    assert record["status"] == "completed" and record["epochs"] == 3
    lrs = [entry["train/lr"] for entry in record["history"]]
    assert len(lrs) == 3 and all(lr > 0 for lr in lrs)
    if "scheduler=exp" in overrides:
        assert lrs[1] == pytest.approx(lrs[0] * 0.95) and lrs[2] == pytest.approx(lrs[0] * 0.95**2)
    if "scheduler.warmup_epochs=1" in overrides:
        assert lrs[0] < lrs[1]  # linear warm-up from 0.1 x lr


def test_snapshot_ensemble_reports_beside_the_single_model(tmp_path, tiny_overrides):
    cfg = compose_config(
        [
            *tiny_overrides,
            "trainer.max_epochs=3",
            "scheduler=cosine_restarts",
            "scheduler.T_0=1",
            "tricks=snapshot_ensemble",
        ],
        tmp_path,
    )
    record = train(cfg)
    assert record["test/ensemble_size"] == 3
    assert 0.0 <= record["test/acc_ensemble"] <= 1.0
    assert 0.0 <= record["test/acc"] <= 1.0


def run_sweep(args: list[str], sweep_dir: Path, scale: str = "scale=smoke") -> subprocess.CompletedProcess:
    """``python -m pyramid_lab -m ARGS`` into ``sweep_dir``, quiet (no logger, no progress bar)."""
    quiet = ["logger=none", "~callbacks.progress_bar", "+trainer.enable_progress_bar=false"]
    return run_app(
        ["-m", *args, f"hydra.sweep.dir={sweep_dir}", *([scale] if scale else []), *quiet],
        sweep_dir.parent,
        timeout=600,
    )


# Groups whose rows are not about the model: their sweeps train SMALL_MODEL, seconds less per row.
# Tables 1, 2 (the model is the row) and 8 (the recipe, model included) keep the study's models,
# up to 36M parameters, on batches of 2 instead of the smoke scale's 8 (still 2 per BatchNorm
# channel after VGG's last pooling): each row's model is built and trained all the same.
NOT_ABOUT_THE_MODEL = {"tricks", "scheduler", "optimizer", "activation"}
SMALL_BATCHES = ["data.batch_size=2", "data.eval_batch_size=2"]


@pytest.mark.slow
# The study's tables; table 9's 13 rows train in-process in tests/test_table_rows.py (a CLI
# sweep of them is 13 process starts, minutes on 2 cores).
@pytest.mark.parametrize("table", sorted(PAPER_TABLES.keys() - {"table9_beyond"}))
def test_each_table_sweep_runs_at_smoke_scale(table, tmp_path, request):
    ((group, values),) = sweep_params(table).items()
    if table == "table5_activations":
        # Its sweep is the session's shared one (tests/conftest.py), two seeds of each row: the
        # report tests read it too.
        sweep_dir, result = request.getfixturevalue("table5_sweep")
        seeds = 2
    else:
        sweep_dir, seeds = tmp_path / "sweep", 1
        small = SMALL_MODEL if group in NOT_ABOUT_THE_MODEL else SMALL_BATCHES
        result = run_sweep([f"experiment={table}", *small], sweep_dir)
    assert result.returncode == 0, result.stdout[-1500:] + result.stderr[-1500:]
    records = [read_record(job) for job in sorted(sweep_dir.iterdir()) if job.name.isdigit()]
    assert sorted(r["row"] for r in records) == sorted(values.split(",") * seeds)
    assert all(r["status"] == "completed" and r["table"]["name"] == table for r in records)


@pytest.mark.slow
def test_failed_job_is_recorded_and_the_rest_still_run(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = run_sweep(
        ["experiment=table3_schedulers", "scheduler=cosine", "optimizer.lr=0.1,1e30,-1", *SMALL_MODEL],
        sweep_dir,
    )
    assert result.returncode != 0
    statuses = [read_record(sweep_dir / str(job))["status"] for job in range(3)]
    assert statuses == ["completed", "diverged", "failed"]
    assert "1 of 3 jobs completed" in result.stdout
    assert "job 1: diverged: train/loss became" in result.stdout
    assert "job 2: failed: ConfigError: optimizer.lr=-1 must be > 0" in result.stdout


@pytest.mark.slow
def test_a_two_epoch_scheduler_sweep_completes_every_job(tmp_path):
    """Issue 9: 2 epochs put both of multistep's fractional milestones on epoch 1; that warns
    (the decays compound, as MultiStepLR allows) instead of failing the job."""
    sweep_dir = tmp_path / "sweep"
    tiny = [
        "model.depth=8",
        "model.alpha=4",
        "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=1",
        "+trainer.limit_test_batches=1",
    ]
    result = run_sweep(
        ["scheduler=cosine,multistep,exp,plateau", "experiment=quickstart", "trainer.max_epochs=2", *tiny],
        sweep_dir,
        scale="",
    )
    assert result.returncode == 0, result.stdout[-1500:] + result.stderr[-1500:]
    records = [read_record(sweep_dir / str(job)) for job in range(4)]
    assert [r["status"] for r in records] == ["completed"] * 4
    assert all(r["epochs"] == 2 for r in records)
    assert "gives repeated epochs [1, 1]" in result.stderr
