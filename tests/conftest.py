"""The test config: composed in-process once per test, forced to CPU, tiny, no logger."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

CONFIG_DIR = Path(__file__).resolve().parents[1] / "conf"

# Tests must not compete for the machine's 2 cores with themselves.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def compose_config(overrides: list[str], output_dir: Path) -> DictConfig:
    """The app's config as `python -m pyramid_lab OVERRIDES` composes it, writing under output_dir."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        return compose(
            "config",
            overrides=[f"paths.output_dir={output_dir}", f"paths.data_dir={output_dir}/data", f"paths.log_dir={output_dir}/logs", *overrides],
        )


TINY = [
    "experiment=quickstart",
    "model.depth=8",
    "model.alpha=4",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=1",
    "trainer.num_sanity_val_steps=0",
    "~callbacks.progress_bar",
    "+trainer.enable_model_summary=false",
    "logger=none",
]


@pytest.fixture
def tiny_overrides() -> list[str]:
    """A config that trains a 3-unit PyramidNet on two digits batches: a second or two."""
    return list(TINY)
