"""How Lightning starts the other DDP ranks of a Hydra job, without the known Hydra + DDP traps.

1. Lightning re-runs ``sys.argv`` for every extra rank with ``hydra.run.dir`` set to the *run*
   pattern. Inside a multirun that is the wrong folder, and the argv still says ``-m`` and the
   sweep values, so each child would start a whole sweep of its own. Here a child gets exactly the
   job it belongs to: the job's own overrides, its output folder, and single-run mode.
2. Hydra's basic launcher runs a sweep's jobs one after another in one process. The first DDP job
   leaves its process group and the environment variables of its launch behind (LOCAL_RANK,
   WORLD_SIZE, MASTER_PORT, ...), and the next job would take them for an external launcher and
   wait for ranks that have exited. :func:`isolated_job` clears both after each job.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_original_cwd


def child_rank_command(local_rank: int) -> tuple[Sequence[str], str]:
    """The command and working folder of DDP rank ``local_rank`` of the current Hydra job."""
    hydra_cfg = HydraConfig.get()
    command = [
        sys.executable,
        "-m",
        "pyramid_lab",
        *hydra_cfg.overrides.task,
        f"hydra.run.dir={hydra_cfg.runtime.output_dir}",
        "hydra.mode=RUN",  # a table experiment sets MULTIRUN: the child is one job, not a sweep
        "hydra.output_subdir=null",  # rank 0 already wrote the job's .hydra folder
        f"hydra.job.name=train_ddp_process_{local_rank}",
    ]
    return command, get_original_cwd()


def install() -> None:
    """Make Lightning's subprocess launcher use :func:`child_rank_command`."""
    from pytorch_lightning.strategies.launchers import subprocess_script

    subprocess_script._hydra_subprocess_cmd = child_rank_command


@contextmanager
def isolated_job() -> Iterator[None]:
    """Leave no process group and no launch variables behind for the next job in this process."""
    environment = dict(os.environ)
    try:
        yield
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        os.environ.clear()
        os.environ.update(environment)
