"""Trackers beside TensorBoard: logger=csv, logger=mlflow, logger=wandb and lists of them, each a
one-epoch run through train(cfg) as the command line composes it, offline."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pyramid_lab.runs.record import read_record
from pyramid_lab.train import train
from tests.helpers import TINY, compose_config

# The tiny run of conftest with its logger chosen by each test.
RUN = [o for o in TINY if not o.startswith("logger=")]


def csv_metrics(run_dir: Path) -> dict[str, list[float]]:
    """Every logged value per column of <run>/csv/metrics.csv."""
    values: dict[str, list[float]] = {}
    with open(run_dir / "csv" / "metrics.csv") as file:
        for line in csv.DictReader(file):
            for key, value in line.items():
                if value:
                    values.setdefault(key, []).append(float(value))
    return values


def test_csv_logger_writes_the_metrics(tmp_path):
    record = train(compose_config([*RUN, "logger=csv"], tmp_path))
    metrics = csv_metrics(tmp_path)
    assert {"train/loss", "train/acc", "val/acc", "test/acc", "epoch"} <= set(metrics)
    assert metrics["test/acc"] == [pytest.approx(record["test/acc"])]
    assert metrics["val/acc"][-1] == pytest.approx(record["val/acc"])
    assert (tmp_path / "csv" / "hparams.yaml").is_file()
    assert not (tmp_path / "tensorboard").exists()


def test_a_list_of_loggers_logs_to_each(tmp_path):
    cfg = compose_config([*RUN, "logger=[tensorboard,csv]"], tmp_path)
    assert set(cfg.logger) == {"tensorboard", "csv"}
    record = train(cfg)
    assert csv_metrics(tmp_path)["test/acc"] == [pytest.approx(record["test/acc"])]
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_mlflow_logs_to_a_local_sqlite_store(tmp_path):
    pytest.importorskip("mlflow", reason="MLflow is an optional extra: pip install -e '.[trackers]'")
    from mlflow.tracking import MlflowClient

    record = train(compose_config([*RUN, "logger=mlflow"], tmp_path))
    store = tmp_path / "logs" / "mlflow.db"  # paths.log_dir of the test config
    assert store.is_file()
    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("quickstart")  # task_name
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.metrics["test/acc"] == pytest.approx(record["test/acc"])
    assert "val/acc" in run.data.metrics and run.data.tags["run_dir"] == str(tmp_path)
    assert run.data.params["num_classes"] == "10"  # the module's hyperparameters


def test_mlflow_takes_any_tracking_uri(tmp_path, monkeypatch):
    # Composing only: where the store is comes from the setting, else the environment.
    uri = "http://mlflow.example:5000"
    cfg = compose_config([*RUN, "logger=mlflow", f"logger.mlflow.tracking_uri={uri}"], tmp_path)
    assert cfg.logger.mlflow.tracking_uri == uri
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////srv/mlflow.db")
    assert compose_config([*RUN, "logger=mlflow"], tmp_path).logger.mlflow.tracking_uri == (
        "sqlite:////srv/mlflow.db"
    )
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    default = compose_config([*RUN, "logger=mlflow"], tmp_path).logger.mlflow.tracking_uri
    assert default == f"sqlite:///{tmp_path}/logs/mlflow.db"


@pytest.mark.slow
def test_wandb_runs_offline_into_the_run_folder(tmp_path):
    pytest.importorskip("wandb", reason="W&B is an optional extra: pip install -e '.[trackers]'")
    # The command line, in a process of its own: W&B writes its records out as that process ends.
    env = {
        **os.environ,
        "WANDB_SILENT": "true",
        "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),
        "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"),
    }
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pyramid_lab",
            *RUN,
            "logger=[tensorboard,wandb]",
            f"hydra.run.dir={run_dir}",
        ],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    record = read_record(run_dir)
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    # The offline run's records, as `wandb sync` would upload them: the metric names and values.
    (records,) = offline.glob("run-*.wandb")
    data = records.read_bytes()
    assert b"val/acc" in data and b"test/acc" in data
    assert json.dumps(record["test/acc"]).encode() in data
