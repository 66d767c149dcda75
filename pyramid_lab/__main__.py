"""``python -m pyramid_lab [overrides]``: a thin Hydra adapter around :func:`pyramid_lab.train.train`."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning_fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig

from pyramid_lab.errors import ConfigError

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")
log = logging.getLogger("pyramid_lab")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    # Imported here, after Hydra parsed the command line: --help and bad overrides stay fast.
    from pyramid_lab.ddp_launch import install as install_ddp_launch
    from pyramid_lab.module import DivergedError

    hydra_cfg = HydraConfig.get()
    install_ddp_launch()
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        record = run(cfg, list(hydra_cfg.overrides.task))
    except Exception as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        expected = isinstance(error, (ConfigError, DivergedError))
        if not expected and not in_sweep:
            raise  # a bug or an environment failure: keep the traceback (the record says failed)
        if not expected:
            log.exception("job %s failed", hydra_cfg.job.num)
        print(f"error: {error}", file=sys.stderr)
        if in_sweep:
            return None  # recorded in its metrics.json; the other jobs run, the sweep exits 1
        sys.exit(2 if isinstance(error, ConfigError) else 1)
    if record is None or rank_zero_only.rank != 0:
        return None
    print(
        f"{record['status']}: test/acc={record.get('test/acc', float('nan')):.4f} "
        f"val/acc_best={record.get('val/acc_best', float('nan')):.4f} "
        f"params={record.get('params', 0):,} epochs={record.get('epochs', 0)} "
        f"wall_time={record['wall_time_s']:.0f}s\nrun folder: {record['run_dir']}"
    )
    return record.get("test/acc")


def run(cfg: DictConfig, overrides: list[str]) -> dict[str, Any] | None:
    """Dispatch on ``mode``: the run record of a train or test run; None for predict."""
    if cfg.mode == "train":
        from pyramid_lab.ddp_launch import isolated_job
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


if __name__ == "__main__":
    main()
