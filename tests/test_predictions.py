"""What a run keeps of its test (test_predictions.npz, confusion.png, confident_wrong.png, the
per-class numbers) and what TensorBoard's images tab shows, first with a scripted model whose
answers are known, then through train(cfg) as the command line runs it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from pyramid_lab.data import Digits, ImageDataModule, Synthetic
from pyramid_lab.report import build_tables, load_runs
from pyramid_lab.report.significance import load_predictions
from pyramid_lab.runs.record_file import read_record
from pyramid_lab.train import train
from pyramid_lab.training.image_logging import ImageLogger
from pyramid_lab.training.predictions import TestPredictions
from tests.helpers import TINY, compose_config

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def scripted_answer(x: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Logits that are right on every image whose mean (normalised) pixel is at most 0, and call
    the others the next class with a confidence that grows with their mean pixel."""
    brightness = x.mean(dim=(1, 2, 3))
    guess = torch.where(brightness > 0, (y + 1) % num_classes, y)
    return F.one_hot(guess, num_classes).float() * (2.0 + 4.0 * brightness.abs())[:, None]


class Scripted(pl.LightningModule):
    """Answers with scripted_answer; trains a throwaway parameter so that fit runs."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.weight = nn.Parameter(torch.zeros(1))

    def _outputs(self, batch):
        x, y = batch
        return {
            "logits": scripted_answer(x, y, self.hparams.num_classes) + 0 * self.weight,
            "target": y,
        }

    def training_step(self, batch, batch_idx):
        return (self.weight**2).sum() + 0 * self._outputs(batch)["logits"].sum()

    def validation_step(self, batch, batch_idx):
        return self._outputs(batch)

    def test_step(self, batch, batch_idx):
        return self._outputs(batch)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def trainer(**kwargs) -> pl.Trainer:
    defaults = {
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "use_distributed_sampler": False,
    }
    return pl.Trainer(**{**defaults, **kwargs})


def expected_predictions(datamodule: ImageDataModule) -> tuple[np.ndarray, np.ndarray]:
    """The scripted model's answers on the whole test split, in one process."""
    datamodule.setup("test")
    x, y = datamodule.on_after_batch_transfer(
        (datamodule.splits.test.images, datamodule.splits.test.labels), 0
    )
    return scripted_answer(x, y, 10).argmax(-1).numpy(), y.numpy()


def test_the_test_predictions_files_of_a_scripted_model(tmp_path):
    datamodule = ImageDataModule(Digits(seed=0), num_classes=10, batch_size=32, eval_batch_size=64)
    callback = TestPredictions(tmp_path, wrong_images=8)
    trainer(callbacks=[callback]).test(Scripted(), datamodule=datamodule, verbose=False)
    pred, target = expected_predictions(datamodule)

    with np.load(tmp_path / "test_predictions.npz") as saved:
        assert {k: saved[k].dtype for k in ("pred", "target", "probs")} == {
            "pred": np.int16,
            "target": np.int16,
            "probs": np.float16,
        }
        np.testing.assert_array_equal(saved["pred"], pred)
        np.testing.assert_array_equal(saved["target"], target)
        np.testing.assert_array_equal(saved["index"], np.arange(270))
        assert saved["probs"].shape == (270, 10) and (saved["probs"].argmax(1) == pred).all()
        assert list(saved["classes"]) == [str(d) for d in range(10)]
    loaded = load_predictions(tmp_path / "test_predictions.npz")
    assert 0 < loaded.correct.sum() < 270 and loaded.test_set

    matrix = np.array(callback.summary["test/confusion_matrix"])
    assert matrix.sum() == 270 and np.trace(matrix) == (pred == target).sum()
    assert matrix[3, 4] == ((target == 3) & (pred == 4)).sum()  # rows true, columns predicted
    per_class = callback.summary["test/acc_per_class"]
    assert per_class["3"] == pytest.approx((pred[target == 3] == 3).mean())
    json.dumps(callback.summary)  # goes into metrics.json as it is
    for picture in ("confusion.png", "confident_wrong.png"):
        assert (tmp_path / picture).read_bytes()[:8] == PNG_MAGIC

    # The same test split gives the same digest; another split (another seed) another one.
    other = tmp_path / "other"
    trainer(callbacks=[TestPredictions(other, wrong_images=0)]).test(
        Scripted(),
        datamodule=ImageDataModule(Digits(seed=1), num_classes=10),
        verbose=False,
    )
    assert load_predictions(other / "test_predictions.npz").test_set != loaded.test_set
    assert not (other / "confident_wrong.png").exists()


def test_the_most_confidently_wrong_images_are_kept(tmp_path):
    datamodule = ImageDataModule(Digits(seed=0), num_classes=10, batch_size=32, eval_batch_size=16)
    callback = TestPredictions(tmp_path, wrong_images=5)
    trainer(callbacks=[callback]).test(Scripted(), datamodule=datamodule, verbose=False)
    x, y = datamodule.on_after_batch_transfer(
        (datamodule.splits.test.images, datamodule.splits.test.labels), 0
    )
    brightness = x.mean(dim=(1, 2, 3))
    # Wrong where brightness > 0, confidence growing with it: the five brightest images.
    brightest = brightness.argsort(descending=True)[:5]
    _score, images, true, predicted = callback._wrong
    assert sorted(true.tolist()) == sorted(y[brightest].tolist())
    assert (predicted == (true + 1) % 10).all()
    # The images, un-normalised, are the test images themselves.
    expected = datamodule.splits.test.images[brightest]
    assert sorted(images.flatten(1).sum(1).tolist()) == sorted(expected.flatten(1).sum(1).tolist())


def test_a_module_without_outputs_is_named(tmp_path):
    class Silent(Scripted):
        def test_step(self, batch, batch_idx):
            return None

    with pytest.raises(RuntimeError, match="needs test_step to return"):
        trainer(callbacks=[TestPredictions(tmp_path)]).test(
            Silent(),
            datamodule=ImageDataModule(Digits(), num_classes=10),
            verbose=False,
        )


def image_tags(folder: Path) -> dict[str, int]:
    """How many images each tag holds, over every event file under ``folder``."""
    counts: dict[str, int] = {}
    for events in folder.rglob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events), size_guidance={"images": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["images"]:
            counts[tag] = counts.get(tag, 0) + len(accumulator.Images(tag))
    return counts


def test_tensorboard_images_and_the_setting_that_turns_them_off(tmp_path):
    def fit(folder: Path, logger, **settings) -> None:
        datamodule = ImageDataModule(Digits(), num_classes=10, batch_size=16)
        trainer(
            logger=logger,
            max_epochs=2,
            limit_train_batches=2,
            limit_val_batches=2,
            num_sanity_val_steps=0,
            callbacks=[ImageLogger(**settings)],
        ).fit(Scripted(), datamodule=datamodule)

    fit(
        tmp_path,
        TensorBoardLogger(tmp_path / "on", name="", version=""),
        every_n_epochs=1,
    )
    assert image_tags(tmp_path / "on") == {
        "train/augmented_images": 1,
        "val/confusion_matrix": 2,
    }
    fit(
        tmp_path,
        TensorBoardLogger(tmp_path / "every2", name="", version=""),
        every_n_epochs=2,
    )
    assert image_tags(tmp_path / "every2")["val/confusion_matrix"] == 1
    fit(
        tmp_path,
        TensorBoardLogger(tmp_path / "off", name="", version=""),
        enabled=False,
    )
    assert image_tags(tmp_path / "off") == {}
    fit(tmp_path, CSVLogger(tmp_path / "csv"))  # another logger: nothing to draw on, no error
    fit(tmp_path, False)  # no logger at all


@pytest.mark.slow
def test_predictions_are_gathered_across_two_ddp_ranks(tmp_path):
    # 101 test images on 2 ranks: rank 1's block is padded with image 0, which must not count twice.
    datamodule = ImageDataModule(
        Synthetic(num_train=64, num_val=16, num_test=101),
        num_classes=10,
        batch_size=8,
        eval_batch_size=16,
    )
    trainer(
        strategy="ddp_spawn",
        devices=2,
        callbacks=[TestPredictions(tmp_path, wrong_images=4)],
    ).test(Scripted(), datamodule=datamodule, verbose=False)
    pred, target = expected_predictions(datamodule)
    saved = load_predictions(tmp_path / "test_predictions.npz")
    np.testing.assert_array_equal(saved.index, np.arange(101))
    np.testing.assert_array_equal(saved.pred, pred)
    np.testing.assert_array_equal(saved.target, target)
    assert (tmp_path / "confident_wrong.png").is_file()


# --- through train(cfg): needs the module's test_step/validation_step to return their outputs,
# --- conf/config.yaml's `callbacks: [default, predictions, images]` and train() merging
# --- TestPredictions.summary into metrics.json.


# The tiny test config's logger, and any removal of these callbacks, are set by each test here.
KEEP_OURS = ("logger=", "~callbacks.predictions", "~callbacks.images")


@pytest.mark.slow
def test_a_training_run_keeps_its_predictions_and_pictures(tmp_path):
    overrides = [o for o in TINY if not o.startswith(KEEP_OURS)] + ["logger=tensorboard"]
    record = train(compose_config(overrides, tmp_path))
    saved = load_predictions(tmp_path / "test_predictions.npz")
    assert saved.correct.mean() == pytest.approx(record["test/acc"])
    assert read_record(tmp_path)["test/confusion_matrix"] == record["test/confusion_matrix"]
    assert sum(map(sum, record["test/confusion_matrix"])) == len(saved.pred)
    assert set(record["test/acc_per_class"]) <= {str(d) for d in range(10)}
    assert (tmp_path / "confusion.png").is_file() and (tmp_path / "confident_wrong.png").is_file()
    assert set(image_tags(tmp_path / "tensorboard")) == {
        "train/augmented_images",
        "val/confusion_matrix",
    }


@pytest.mark.slow
def test_mode_test_keeps_predictions_too(tmp_path):
    overrides = [o for o in TINY if not o.startswith(KEEP_OURS)] + ["logger=none"]
    train(compose_config(overrides, tmp_path / "run"))
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    # The command line's dispatch, in-process (the CLI's mode=test: tests/test_trust.py).
    from pyramid_lab.__main__ import run

    args = ["mode=test", f"ckpt_path={checkpoint}"]
    run(compose_config(args, tmp_path / "test"), args)
    again = load_predictions(tmp_path / "test" / "test_predictions.npz")
    first = load_predictions(tmp_path / "run" / "test_predictions.npz")
    np.testing.assert_array_equal(again.pred, first.pred)  # the same model on the same images
    assert "test/acc_per_class" in read_record(tmp_path / "test")


@pytest.mark.slow
def test_a_snapshot_ensemble_keeps_its_predictions_and_gets_a_row(tmp_path):
    # Two 1-epoch cycles: two snapshots, and the ensemble's predictions beside the model's.
    overrides = [o for o in TINY if not o.startswith(("trainer.max_epochs", *KEEP_OURS))]
    overrides += [
        "trainer.max_epochs=2",
        "logger=none",
        "scheduler=cosine_restarts",
        "scheduler.T_0=1",
        "tricks=snapshot_ensemble",
    ]
    record = train(compose_config(overrides, tmp_path / "run"))
    saved = load_predictions(tmp_path / "run" / "test_predictions.npz")
    assert saved.ensemble is not None
    assert (saved.ensemble == saved.target).mean() == pytest.approx(record["test/acc_ensemble"])
    (table,) = build_tables(load_runs(tmp_path))
    ensemble = table.rows[-1]
    assert ensemble.ensemble_of == table.rows[0].row and ensemble.effect is not None
    # One run: no recipe verdict; McNemar says whether the ensemble and its single model differ.
    assert ensemble.effect.p_value is None and 0.0 <= ensemble.effect.mcnemar[0] <= 1.0
