"""One writer per run folder: a lock held for the life of a run.

A second process that would train into the same folder (a rerun typed while a requeued SLURM job
runs there) refuses at once with one line naming the holder, instead of racing it on last.ckpt,
metrics.json and the TensorBoard files. The lock is the ``filelock`` library's: on Linux and macOS
an ``flock`` on ``.run.lock``, which the kernel drops when its process ends however it ends (killed,
requeued, out of memory), so a dead run never leaves its folder locked. Who holds it (host, pid,
since when) is written beside it, in ``.run.lock.json``, for the message.

Under DDP only rank 0 (the launching process) locks: the other ranks train the same run.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
from pathlib import Path
from types import TracebackType

from filelock import FileLock, Timeout
from lightning_fabric.utilities.rank_zero import rank_zero_only

from pyramid_lab.errors import ConfigError
from pyramid_lab.runs.atomic import atomic_write

LOCK_NAME = ".run.lock"
HOLDER_NAME = ".run.lock.json"


class RunFolderInUse(ConfigError):
    """Another live process holds the run folder's lock."""


def describe_holder(run_dir: Path) -> str:
    """``pid 123 on host vm since 2026-11-29 00:10:02 UTC``, from the holder file."""
    try:
        holder = json.loads((run_dir / HOLDER_NAME).read_text())
        return f"pid {holder['pid']} on host {holder['host']} since {holder['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (its details are unreadable)"


class RunLock:
    """The lock on ``run_dir``, taken by :meth:`acquire` (or ``with``) and held until
    :meth:`release`, the end of the process, or this object's deletion (filelock releases then):
    keep it referenced for the life of the run.

    Args:
        run_dir: the run's output folder (created if missing).
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self._lock: FileLock | None = None

    def acquire(self) -> RunLock:
        """Take the lock, or raise RunFolderInUse at once (no waiting) if another process has it.
        A no-op on DDP ranks other than 0."""
        if rank_zero_only.rank != 0:
            return self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.run_dir / LOCK_NAME, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise RunFolderInUse(
                f"run folder {self.run_dir} is in use by {describe_holder(self.run_dir)}; wait until "
                "that run ends, or give this one another folder (hydra.run.dir; hydra.sweep.dir for a sweep)"
            ) from None
        self._lock = lock
        since = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        holder = {"host": socket.gethostname(), "pid": os.getpid(), "since": since}
        atomic_write(self.run_dir / HOLDER_NAME, json.dumps(holder) + "\n")
        return self

    def release(self) -> None:
        if self._lock is not None:
            (self.run_dir / HOLDER_NAME).unlink(missing_ok=True)
            self._lock.release()
            self._lock = None

    @property
    def held(self) -> bool:
        return self._lock is not None and self._lock.is_locked

    def __enter__(self) -> RunLock:  # noqa: PYI034 - Self needs Python 3.11
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()
