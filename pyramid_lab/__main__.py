"""``python -m pyramid_lab [overrides]``: a thin Hydra adapter around :func:`pyramid_lab.train.train`."""

from __future__ import annotations

import logging
import os
import re
import shlex
import signal
import sys
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from hydra.types import RunMode
from omegaconf import DictConfig

from pyramid_lab import config_dir
from pyramid_lab.errors import ConfigError, RunStopped, exit_with_error, is_ctrl_c, show_error
from pyramid_lab.runs.moved_keys import moved_key

# conf/ of the checkout or pyramid_lab/conf of a wheel, whichever this install has.
CONFIG_DIR = config_dir()
log = logging.getLogger("pyramid_lab")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    # Imported here, after Hydra parsed the command line: --help and bad overrides stay fast.
    from lightning_fabric.utilities.rank_zero import rank_zero_only

    from pyramid_lab.launch import warnings_filter
    from pyramid_lab.launch.ddp import install as install_ddp_launch

    hydra_cfg = HydraConfig.get()
    install_ddp_launch()
    warnings_filter.install()  # third-party noise silenced with reasons; the rest once per sweep
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        record = run(cfg, list(hydra_cfg.overrides.task))
    except (KeyboardInterrupt, SystemExit) as stop:
        if not is_ctrl_c(stop):
            raise
        # Ctrl-C: a training run saved its state (InterruptCheckpoint) and recorded itself interrupted.
        folder = hydra_cfg.sweep.dir if in_sweep else cfg.paths.output_dir
        print(
            f"interrupted: run folder {cfg.paths.output_dir}; resume it with: "
            f"{resume_command(sys.argv[1:], folder, in_sweep)}",
            file=sys.stderr,
        )
        sys.exit(128 + signal.SIGINT)
    except Exception as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        expected = isinstance(error, (ConfigError, RunStopped))
        if not expected and not in_sweep:
            raise  # a bug or an environment failure: keep the traceback (the record says failed)
        if not expected:
            log.exception("job %s failed", hydra_cfg.job.num)
        code = show_error(error, 2 if isinstance(error, ConfigError) else 1)
        if in_sweep:
            return None  # recorded in its metrics.json; the other jobs run, the sweep exits 1
        sys.exit(code)
    if record is None or rank_zero_only.rank != 0:
        return None
    print(
        f"{record['status']}: test/acc={record.get('test/acc', float('nan')):.4f} "
        f"val/acc_best={record.get('val/acc_best', float('nan')):.4f} "
        f"params={record.get('params', 0):,} epochs={record.get('epochs', 0)} "
        f"wall_time={record['wall_time_s']:.0f}s\nrun folder: {record['run_dir']}"
    )
    return record.get("test/acc")


def resume_command(argv: list[str], folder: str, in_sweep: bool) -> str:
    """The command line that reruns ``argv`` into the same run folder (a sweep: the same sweep
    folder, whose completed jobs are skipped), which resumes it."""
    key = "hydra.sweep.dir" if in_sweep else "hydra.run.dir"
    kept = [arg for arg in argv if arg.split("=", 1)[0].lstrip("+") != key]
    return shlex.join(["python", "-m", "pyramid_lab", *kept, f"{key}={folder}"])


def run(cfg: DictConfig, overrides: list[str]) -> dict[str, Any] | None:
    """Dispatch on ``mode``: the run record of a train or test run; None for predict."""
    if cfg.mode == "train":
        from pyramid_lab.launch.ddp import isolated_job
        from pyramid_lab.train import train

        with isolated_job():
            return train(cfg, overrides=overrides)
    if cfg.mode == "test":
        from pyramid_lab.evaluate import evaluate

        return evaluate(cfg, overrides)
    if cfg.mode == "predict":
        from pyramid_lab.evaluate import predict

        print(f"predictions: {predict(cfg, overrides)}")
        return None
    raise ConfigError(f"mode={cfg.mode} is unknown; valid: train, test, predict")


# Scheduler settings are flat since 0.2: scheduler.T_0, not scheduler.scheduler.T_0; the interval
# and the plateau metric are the module's. Hydra would answer the old keys with a struct error
# that names neither, so they are caught here, before Hydra parses anything.
_MOVED_KEYS = {
    "scheduler.scheduler.": "scheduler.",
    "scheduler.interval": "module.scheduler_interval",
    "scheduler.monitor": "module.scheduler_monitor",
}


def refuse_moved_keys(argv: list[str]) -> None:
    """Exit with one line for an override that uses a key that has moved, naming its new key."""
    for arg in argv:
        key = arg.lstrip("+~").split("=", 1)[0]
        new_key = moved_key(key)  # the module's settings that became callbacks, loss, scheduler
        if new_key is not None:
            exit_with_error(f"{key} is now {new_key} (see README)")
        for old, new in _MOVED_KEYS.items():
            if key.startswith(old):
                exit_with_error(
                    f"{key} is now {new + key[len(old) :] if old.endswith('.') else new} "
                    "(scheduler settings are flat; see README)"
                )


# Options renamed in 0.3: Hydra would answer the old names with a traceback that lists every
# option but names neither, so they are caught here too. (group, old name): new name.
_RENAMED_OPTIONS = {
    ("tricks", "baseline"): "none",  # "no trick"; recipe=baseline is the study's baseline recipe
    ("model", "vgg16"): "vgg16_bn",  # it builds VGG-16 with BatchNorm
    ("model", "vgg19"): "vgg19_bn",
}


def refuse_renamed_options(argv: list[str]) -> None:
    """Exit with one line for an override that names a renamed option (``tricks=baseline``, also
    inside a sweep or list: ``tricks=baseline,merge_val``), naming its new name."""
    for arg in argv:
        key, _, value = arg.lstrip("+~").partition("=")
        names = {name.strip("'\" ") for name in re.split(r"[,\[\]()]", value)}
        for (group, old), new in _RENAMED_OPTIONS.items():
            if key == group and old in names:
                exit_with_error(f"{group}={old} is now {group}={new} (renamed; see README)")


def cli() -> None:
    """The console command and ``python -m pyramid_lab``."""
    refuse_moved_keys(sys.argv[1:])
    refuse_renamed_options(sys.argv[1:])
    try:
        main()
    except CompactHydraException as error:
        # Hydra prints a config error (an unknown option and the valid ones) as its message alone,
        # unless it believes a debugger is attached: any trace function counts, coverage's too,
        # and then it re-raises. Print it as Hydra does, unless the user asked for the traceback.
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(
            f"{error}\nSet the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.",
            file=sys.stderr,
        )
        sys.exit(1)


if __name__ == "__main__":
    cli()
