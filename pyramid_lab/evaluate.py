"""A finished model, used: ``mode=test`` (test accuracy) and ``mode=predict`` (class probabilities).

Both rebuild the network from the config saved inside the checkpoint, so
``python -m pyramid_lab mode=test ckpt_path=outputs/.../checkpoints/last.ckpt`` needs nothing else.
That config comes from a file, so loading the checkpoint first checks every ``_target_`` in it
against pyramid_lab/runs/trust.py's allow-list (``trust_checkpoint=true`` skips the check).
Dotted ``data.*`` and ``trainer.*`` overrides on the command line (a new ``data.dataset.root``,
``trainer.accelerator=cpu``) are applied on top of the saved config.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from pyramid_lab.build import build, count_parameters, model_name
from pyramid_lab.data.datamodule import normalisation, normalise
from pyramid_lab.data.decode import read_png
from pyramid_lab.errors import ConfigError
from pyramid_lab.runs.checkpoint import RunState, load_checkpoint, read_run_state
from pyramid_lab.runs.provenance import code_version
from pyramid_lab.runs.recorder import RunRecord
from pyramid_lab.train import predictions_summary
from pyramid_lab.training.predictions import TestPredictions

_APPLIED_PREFIXES = ("data.", "trainer.")
SPLITS = ("train", "val", "test")


def load_run(ckpt_path: str | None, trust: bool = False) -> tuple[dict[str, Any], RunState, DictConfig]:
    """The checkpoint, its run state, and the config it was trained with."""
    if not ckpt_path or not Path(ckpt_path).is_file():
        raise ConfigError(f"ckpt_path={ckpt_path} does not exist; give a .ckpt file of a pyramid_lab run")
    checkpoint = load_checkpoint(ckpt_path, trust=trust)
    state = read_run_state(checkpoint)
    if state.config is None:
        raise ConfigError(
            f"ckpt_path={ckpt_path} holds no pyramid_lab config (not written by python -m pyramid_lab)"
        )
    return checkpoint, state, OmegaConf.create(state.config)


def _restore(cfg: DictConfig, overrides: list[str], record: RunRecord | None = None):
    """The run rebuilt from its checkpoint's config, with ``data.*``/``trainer.*`` overrides on
    top, and the checkpoint's weights loaded: ``(checkpoint, run state, config, built run)``."""
    trust = bool(cfg.get("trust_checkpoint", False))
    checkpoint, state, saved = load_run(cfg.ckpt_path, trust=trust)
    dataset = saved.get("data", {}).get("dataset")
    if not trust and isinstance(dataset, DictConfig) and dataset.get("download"):
        # The file must not choose what this machine fetches (data.dataset.url) and unpacks where
        # (data.dataset.root): a download is the user's own override (data.dataset.download=true).
        dataset.download = False
    applied = [o for o in overrides if o.startswith(_APPLIED_PREFIXES)]
    saved = OmegaConf.merge(saved, OmegaConf.from_dotlist(applied))
    saved.paths.output_dir = cfg.paths.output_dir
    # No checkpoints, curves or progress bars of the training run: only this evaluation's record.
    run = build(
        saved,
        extra_callbacks=[record, TestPredictions(cfg.paths.output_dir)] if record is not None else [],
        callbacks=False,
        loggers=False,
        default_root_dir=cfg.paths.output_dir,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
    )
    run.module.load_state_dict(checkpoint["state_dict"])
    return checkpoint, state, saved, run


def evaluate(cfg: DictConfig, overrides: list[str]) -> dict[str, Any]:
    """Test accuracy of a checkpoint on its data set's test split; writes metrics.json."""
    record = RunRecord(
        cfg.paths.output_dir,
        overrides,
        extra={
            "task_name": "test",
            "mode": "test",
            "ckpt_path": str(Path(cfg.ckpt_path).resolve()),
            **code_version(),
        },
    )
    record.update()
    try:
        checkpoint, _, saved, run = _restore(cfg, overrides, record)
        record.update(
            model=model_name(saved),
            epochs=checkpoint.get("epoch", 0) + 1,
            params=count_parameters(run.net),
            # A table sweep's whole `table` block (name, baseline, the study's numbers), as trained.
            table=OmegaConf.to_container(OmegaConf.create({"table": saved.get("table")}))["table"],
            row=saved.get("row"),
            seed=saved.get("seed"),
        )
        run.trainer.test(run.module, datamodule=run.datamodule, verbose=False)
        metrics = {k: float(v) for k, v in run.trainer.callback_metrics.items() if k.startswith("test/")}
        return record.finish("completed", **metrics, **predictions_summary(run.trainer))
    except Exception as error:
        record.finish("failed", error=f"{type(error).__name__}: {error}")
        raise


def predict(cfg: DictConfig, overrides: list[str]) -> Path:
    """Class probabilities for a split of the run's data set (``predict.input=test``) or for a
    folder of 32x32 RGB images (``predict.input=path/to/folder``), as ``predictions.csv``."""
    _, state, saved, run = _restore(cfg, overrides)
    module = run.module.eval()
    source = str(cfg.predict.input)
    if source in SPLITS:
        datamodule = run.datamodule
        datamodule.setup("predict")
        split = getattr(datamodule.splits, source)
        names, images, labels = (
            [f"{source}[{i}]" for i in range(len(split.labels))],
            split.images,
            split.labels,
        )
        classes, mean, std = datamodule.splits.classes, datamodule.splits.mean, datamodule.splits.std
    else:
        names, images = _read_folder(Path(source))
        labels = None
        if state.classes is None or state.mean is None or state.std is None:
            raise ConfigError(
                f"ckpt_path={cfg.ckpt_path} holds no class names and statistics; predict on a split"
            )
        classes, mean, std = state.classes, state.mean, state.std
    probs = _probabilities(module, images, mean, std, int(cfg.predict.batch_size))
    out = Path(cfg.predict.output or Path(cfg.paths.output_dir) / "predictions.csv")
    _write_csv(out, names, probs, classes, labels)
    return out


def _read_folder(folder: Path) -> tuple[list[str], torch.Tensor]:
    if not folder.is_dir():
        raise ConfigError(
            f"predict.input={folder} is neither a split ({', '.join(SPLITS)}) nor a folder of images"
        )
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"))
    if not files:
        raise ConfigError(f"predict.input={folder} holds no .png/.jpg/.bmp images")
    images = np.stack([read_png(str(f)) for f in files]).transpose(0, 3, 1, 2)
    return [str(f.relative_to(folder)) for f in files], torch.from_numpy(np.ascontiguousarray(images))


@torch.no_grad()
def _probabilities(
    module: pl.LightningModule, images: torch.Tensor, mean, std, batch_size: int
) -> torch.Tensor:
    scale, shift = normalisation(mean, std, images.device, images.dtype)
    out = []
    for start in range(0, len(images), batch_size):
        x = normalise(images[start : start + batch_size], scale, shift)
        out.append(module(x).float().softmax(-1))
    return torch.cat(out)


def _write_csv(
    path: Path, names: list[str], probs: torch.Tensor, classes: list[str], labels: torch.Tensor | None
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["image", "label", "predicted", *(f"p_{c}" for c in classes)])
        for i, (name, row) in enumerate(zip(names, probs.tolist())):
            label = classes[int(labels[i])] if labels is not None else ""
            writer.writerow([name, label, classes[int(np.argmax(row))], *(f"{p:.6f}" for p in row)])
