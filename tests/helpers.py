"""What the tests share: the app's config composed in-process, a tiny training config, the CLI.

Fixtures live in conftest.py; plain helpers live here and are imported by name
(``from tests.helpers import compose_config``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from pyramid_lab import config_dir

# The app's own lookup (the package pyramid_lab.conf): the tests compose what the command line reads.
CONFIG_DIR = Path(config_dir())


def compose_config(overrides: list[str], output_dir: Path) -> DictConfig:
    """The app's config as `python -m pyramid_lab OVERRIDES` composes it, writing under output_dir."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        return compose(
            "config",
            overrides=[
                f"paths.output_dir={output_dir}",
                f"paths.data_dir={output_dir}/data",
                f"paths.log_dir={output_dir}/logs",
                *overrides,
            ],
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
    # Seconds per tiny run on a busy machine; tests/test_predictions.py and the tracker tests put
    # them back.
    "~callbacks.predictions",
    "~callbacks.images",
    "+trainer.enable_model_summary=false",
    "logger=none",
]


# The smallest model that trains every path a table row or a report exercises (a 3-unit
# PyramidNet): for tests whose rows are not about the model itself, where the study's 2M-parameter
# models only add seconds per row.
SMALL_MODEL = ["model=pyramidnet", "model.depth=8", "model.alpha=4"]


def app_env(env: dict[str, str | None] | None = None) -> dict[str, str]:
    """This process's environment for a command, one thread each; a None value removes a variable."""
    environ = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return {key: value for key, value in environ.items() if value is not None}


def app_command(args: list[str], module: str = "pyramid_lab") -> list[str]:
    """``python -m MODULE ARGS`` with this interpreter: the CLI (or ``pyramid_lab.report``)."""
    return [sys.executable, "-m", module, *args]


def run_app(
    args: list[str],
    cwd: Path,
    timeout: float = 300,
    env: dict[str, str | None] | None = None,
    module: str = "pyramid_lab",
) -> subprocess.CompletedProcess:
    """``python -m pyramid_lab ARGS`` as a user runs it, in ``cwd``; output captured as text."""
    return subprocess.run(
        app_command(args, module),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=app_env(env),
    )


def start_app(
    args: list[str],
    cwd: Path,
    env: dict[str, str | None] | None = None,
    module: str = "pyramid_lab",
    **popen,
) -> subprocess.Popen:
    """``python -m pyramid_lab ARGS`` started in the background (to signal or kill it); output
    piped as text unless ``popen`` says otherwise."""
    options = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **popen}
    return subprocess.Popen(app_command(args, module), cwd=cwd, env=app_env(env), **options)
