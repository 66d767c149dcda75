"""``python -m pyramid_lab [overrides]``: a thin Hydra adapter around :func:`pyramid_lab.train.train`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from pyramid_lab.errors import ConfigError
from pyramid_lab.module import DivergedError

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    from pyramid_lab.train import train  # after Hydra parsed the command line: fast --help

    try:
        record = train(cfg, overrides=list(HydraConfig.get().overrides.task))
    except (ConfigError, DivergedError) as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2 if isinstance(error, ConfigError) else 1)
    print(
        f"{record['status']}: test/acc={record.get('test/acc', float('nan')):.4f} "
        f"val/acc_best={record.get('val/acc_best', float('nan')):.4f} "
        f"params={record.get('params', 0):,} epochs={record.get('epochs', 0)} "
        f"wall_time={record['wall_time_s']:.0f}s\nrun folder: {record['run_dir']}"
    )
    return record.get("test/acc")


if __name__ == "__main__":
    main()
