"""A finished model, used: mode=test rebuilds it from its checkpoint, mode=predict writes CSV."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from pyramid_lab.errors import ConfigError
from pyramid_lab.evaluate import evaluate, predict
from pyramid_lab.runs.record_file import read_record
from pyramid_lab.train import train
from tests.helpers import compose_config


@pytest.fixture
def trained(tmp_path, tiny_overrides):
    run_dir = tmp_path / "train"
    record = train(compose_config([*tiny_overrides, "++trainer.limit_test_batches=null"], run_dir))
    return run_dir, record


def rows(path):
    with open(path) as file:
        return list(csv.DictReader(file))


def test_mode_test_rebuilds_the_model_from_its_checkpoint(trained, tmp_path):
    run_dir, record = trained
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    # Composed with the defaults (CINIC-10, PyramidNet-196): everything comes from the checkpoint.
    cfg = compose_config(["mode=test", f"ckpt_path={ckpt}"], tmp_path / "test")
    result = evaluate(cfg, overrides=["mode=test", f"ckpt_path={ckpt}"])
    assert result["status"] == "completed" and result["mode"] == "test"
    assert result["test/acc"] == pytest.approx(record["test/acc"], abs=1e-7)
    assert read_record(tmp_path / "test")["test/acc"] == result["test/acc"]


def test_predict_a_split_and_a_folder(trained, tmp_path):
    run_dir, record = trained
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    cfg = compose_config(["mode=predict", f"ckpt_path={ckpt}", "predict.input=test"], tmp_path / "p1")
    split_rows = rows(predict(cfg, overrides=[]))
    assert len(split_rows) == 270
    probs = np.array([[float(r[f"p_{c}"]) for c in range(10)] for r in split_rows])
    assert np.allclose(probs.sum(1), 1, atol=1e-4)
    accuracy = np.mean([r["predicted"] == r["label"] for r in split_rows])
    assert accuracy == pytest.approx(record["test/acc"], abs=1e-6)

    # The same test images as PNG files give the same predictions.
    from pyramid_lab.data import Digits

    folder = tmp_path / "images"
    folder.mkdir()
    test_images = Digits(seed=42).load().test.images[:5]
    for i, image in enumerate(test_images):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"img{i}.png")
    cfg = compose_config(["mode=predict", f"ckpt_path={ckpt}", f"predict.input={folder}"], tmp_path / "p2")
    folder_rows = rows(predict(cfg, overrides=[]))
    assert [r["image"] for r in folder_rows] == [f"img{i}.png" for i in range(5)]
    assert [r["predicted"] for r in folder_rows] == [r["predicted"] for r in split_rows[:5]]


def test_missing_checkpoint(tmp_path):
    cfg = compose_config(["mode=test", "ckpt_path=/nonexistent.ckpt"], tmp_path)
    with pytest.raises(ConfigError, match="ckpt_path=/nonexistent.ckpt does not exist"):
        evaluate(cfg, overrides=[])
    assert read_record(tmp_path)["status"] == "failed"
