"""Trackers: logger=csv, logger=mlflow, logger=wandb, TensorBoard and lists of them, offline. Each
gets the run's metrics, its recipe as params (pyramid_lab.runs.params), its label as name and its
pictures where it keeps files; read back with each tracker's own client."""

from __future__ import annotations

import csv
import json
import struct
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml

from pyramid_lab.runs.record_file import read_record
from pyramid_lab.train import train
from pyramid_lab.training.precision import cpu_bf16_flags
from tests.helpers import TINY, compose_config, run_app

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


# What every tracker must carry of a run's recipe: the names a user looks for.
RECIPE = ("model", "model/depth", "optimizer", "optimizer/lr", "scheduler", "data/batch_size", "seed")


@pytest.fixture(scope="module")
def tracked(tmp_path_factory) -> Path:
    """One tiny run through the command line, as a user starts it, into every tracker at once
    (TensorBoard, CSV, MLflow, W&B offline), with its pictures (confusion.png, confident_wrong.png):
    each test reads it back with that tracker's own client. A process of its own: W&B writes its
    records out as that process ends. Returns the folder it ran in (the run is run/)."""
    pytest.importorskip("mlflow", reason="MLflow is an optional extra: pip install -e '.[trackers]'")
    pytest.importorskip("wandb", reason="W&B is an optional extra: pip install -e '.[trackers]'")
    root = tmp_path_factory.mktemp("tracked")
    env = {
        "WANDB_SILENT": "true",
        "WANDB_CONFIG_DIR": str(root / "wandb-config"),
        "WANDB_CACHE_DIR": str(root / "wandb-cache"),
        "MLFLOW_TRACKING_URI": None,  # the run's own mlruns/, not a server of the caller's
    }
    with_pictures = [o for o in RUN if o != "~callbacks.predictions"]
    loggers = "logger=[tensorboard,csv,mlflow,wandb]"
    args = [*with_pictures, loggers, f"hydra.run.dir={root / 'run'}", f"paths.log_dir={root / 'logs'}"]
    result = run_app(args, root, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return root


def tensorboard_label(root: Path) -> str:
    """The run's name in TensorBoard: its link in the log tree (logs/<task>/<label>)."""
    (link,) = (root / "logs" / "quickstart").iterdir()
    return link.name


@pytest.mark.slow
def test_mlflow_run_carries_the_recipe_the_label_and_the_pictures(tracked):
    from mlflow.tracking import MlflowClient

    record = read_record(tracked / "run")
    client = MlflowClient(tracking_uri=f"sqlite:///{tracked / 'logs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("quickstart")  # task_name
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.metrics["test/acc"] == pytest.approx(record["test/acc"])
    assert "val/acc" in run.data.metrics and run.data.tags["run_dir"] == str(tracked / "run")
    params = run.data.params
    assert set(RECIPE) <= set(params), sorted(params)
    assert (params["model"], params["model/depth"], params["optimizer"]) == ("PyramidNet", "8", "SGD")
    assert params["optimizer/lr"] == "0.1" and params["seed"] == "42"
    assert params["trainer/precision"] == record["precision"] != "auto"
    assert params["env/device"] == "cpu" and params["env/torch"] == record["torch"]
    assert_clean(params)
    assert run.info.run_name == tensorboard_label(tracked)  # not a random capable-auk-759
    pictures = {a.path for a in client.list_artifacts(run.info.run_id, "pictures")}
    assert pictures == {"pictures/confusion.png", "pictures/confident_wrong.png"}
    local = client.download_artifacts(run.info.run_id, "pictures/confusion.png", str(tracked / "down"))
    assert Path(local).read_bytes() == (tracked / "run" / "confusion.png").read_bytes()


def wandb_records(run_dir: Path) -> list:
    """The protobuf records of W&B's offline run file (what `wandb sync` uploads): a LevelDB-style
    log of 32 KiB blocks, each chunk a 7-byte header (crc32, length, kind) and its bytes, after
    W&B's own 7-byte file header."""
    from wandb.proto import wandb_internal_pb2

    (path,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    data, position, pending, records = path.read_bytes(), 7, b"", []
    while position + 7 <= len(data):
        if 32768 - position % 32768 < 7:  # a block's tail too short for a header: padding
            position += 32768 - position % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a whole record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


@pytest.mark.slow
def test_wandb_offline_run_carries_the_recipe_the_label_and_the_pictures(tracked):
    run_dir = tracked / "run"
    record = read_record(run_dir)
    records = wandb_records(run_dir)
    config = {
        item.key: json.loads(item.value_json)
        for r in records
        if r.WhichOneof("record_type") == "config"
        for item in r.config.update
    }
    assert set(RECIPE) <= set(config) and config["optimizer/lr"] == 0.1 and config["model"] == "PyramidNet"
    assert config["trainer/precision"] == record["precision"]
    assert_clean(config)
    names = [r.run.display_name for r in records if r.WhichOneof("record_type") == "run"]
    assert names[-1] == tensorboard_label(tracked)
    history = [
        {item.key or "/".join(item.nested_key): item.value_json for item in r.history.item}
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]
    assert any("val/acc" in h for h in history)
    assert any(h.get("test/acc") == json.dumps(record["test/acc"]) for h in history)
    assert any("pictures/confusion/filenames" in h for h in history)  # the picture, as an image
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    pictures = sorted(p.name.split("_")[0] for p in (offline / "files" / "media" / "images").rglob("*.png"))
    assert pictures == ["confident", "confusion"]


@pytest.mark.slow
def test_tensorboard_hparams_are_the_same_clean_set(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    record = read_record(tracked / "run")
    sessions = []
    for events in sorted((tracked / "run" / "tensorboard").glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        try:
            content = accumulator.PluginTagToContent("hparams")
        except KeyError:
            continue
        for data in content.values():
            plugin = plugin_data_pb2.HParamsPluginData.FromString(data)
            if plugin.WhichOneof("data") == "session_start_info":
                sessions.append(plugin.session_start_info.hparams)
    (hparams,) = sessions  # one record: the settings with the final numbers
    values = {
        key: value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind"))
        for key, value in hparams.items()
    }
    assert set(RECIPE) <= set(values)
    assert values["trainer/precision"] == record["precision"] and values["model/depth"] == 8
    assert_clean(values)
    # The same set as the other trackers: CSV's hparams.yaml, written from the same function.
    csv_params = yaml.safe_load((tracked / "run" / "csv" / "hparams.yaml").read_text())
    assert set(csv_params) == set(values)


def assert_clean(params: dict) -> None:
    """No Hydra bookkeeping keys, no second copy of a group (module/optimizer/* beside optimizer/*),
    no file locations or checkpointing settings, and the precision the run used instead of auto."""
    assert not [k for k in params if k.rsplit("/", 1)[-1] in ("_target_", "_partial_")]
    # module.scheduler holds the scheduler group by reference (a copy) beside the warm-up (recipe).
    copies = (
        "module/optimizer/",
        "module/scheduler/scheduler",
        "paths/",
        "logger/",
        "callbacks/model_checkpoint",
    )
    assert not [k for k in params if k.startswith(copies)]
    assert "data/seed" not in params and "model/num_classes" not in params  # ${seed}, ${data.num_classes}
    assert params["trainer/precision"] in ("bf16-mixed", "32-true")


def test_the_record_names_the_precision_and_device_it_ran_on(tmp_path):
    record = train(compose_config(RUN, tmp_path))
    assert record["precision"] == ("bf16-mixed" if cpu_bf16_flags() else "32-true")  # auto, resolved
    assert (record["device"], record["device_count"]) == ("cpu", 1)
    assert record["device_name"] and "bf16" in record["cpu_bf16"]
    assert record["torch"] == torch.__version__ and record["lightning"] == pl.__version__
    assert read_record(tmp_path)["precision"] == record["precision"]  # in metrics.json


def test_a_tracker_gone_at_the_end_is_a_warning_not_a_failed_run(tmp_path, caplog):
    pytest.importorskip("mlflow", reason="MLflow is an optional extra: pip install -e '.[trackers]'")
    from pytorch_lightning.loggers import MLFlowLogger

    from pyramid_lab.runs.trackers import finish_trackers

    class Gone(MLFlowLogger):
        """An MLflow server that stopped answering after the run started."""

        @property
        def experiment(self):
            raise ConnectionError("mlflow.example:5000 refused the connection")

        @property
        def run_id(self) -> str:
            return "0" * 32

    (tmp_path / "confusion.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    with caplog.at_level("WARNING", logger="pyramid_lab.runs.trackers"):
        finish_trackers([Gone(tracking_uri="http://mlflow.example:5000")], tmp_path)
    assert "could not upload the pictures" in caplog.text and "refused the connection" in caplog.text


def test_the_param_set_is_the_recipe_once_for_any_composition(tmp_path):
    from pyramid_lab.runs.params import run_params

    # A list of tricks, one whose settings point at keys this scheduler lacks (${scheduler.T_0}):
    # a reference is left out, never resolved, so a broken one cannot stop the run.
    cfg = compose_config(
        [*RUN, "tricks=[snapshot_ensemble,ema,cutout]", "scheduler=multistep", "optimizer=adam"], tmp_path
    )
    params = run_params(cfg, {"precision": "32-true", "device": "cpu"})
    assert (params["optimizer"], params["scheduler"], params["callbacks/ema"]) == ("Adam", "multistep", "EMA")
    assert params["scheduler/milestones"] == str(list(cfg.scheduler.milestones))
    assert params["callbacks/ema/decay"] == cfg.callbacks.ema.decay and params["data/cutout/size"] == 16
    assert "callbacks/snapshot_ensemble/T_0" not in params and params["callbacks/snapshot_ensemble"]
    assert params["trainer/precision"] == "32-true" and params["env/device"] == "cpu"
    assert params["module/scheduler/warmup_epochs"] == 0  # the warm-up is part of the recipe
    assert not [k for k, v in params.items() if isinstance(v, str) and v.startswith(str(tmp_path))]
    assert_clean(params)
