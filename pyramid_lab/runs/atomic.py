"""Atomic file writes: a file is either its old version or its complete new one, never torn.

Every writer of the package goes through here (run records, checkpoints, the decode cache,
downloads, benchmark results): write to a hidden temporary file beside the target, flush it to
disk, rename it over the target, then flush the folder so that the rename itself survives a power
cut (rename is atomic on POSIX file systems; without the folder's fsync it may not be durable).

When the disk is full (ENOSPC, or EDQUOT for a quota) the temporary file is removed, the target
stays as it was, and :class:`DiskFull` stops the run with one line naming the folder.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pyramid_lab.errors import RunStopped

log = logging.getLogger(__name__)

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
# The temporary file beside a target: ".<target name>.<writer's pid>.tmp" (a kill leaves it behind;
# pyramid_lab.runs.checkpoint.remove_leftovers removes it at the run folder's next start).
TEMP_PATTERN = re.compile(r"\.(?P<target>.+)\.(?P<pid>\d+)\.tmp")


class DiskFull(RunStopped):
    """A file of the run could not be written for lack of space; its previous version is intact."""

    status = "failed"


def is_disk_full(error: BaseException | None) -> bool:
    """Whether ``error``, or an error it was raised from or while handling, is ENOSPC or EDQUOT
    (torch.save reports a failed write of its file object as a RuntimeError raised during it)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.errno in _DISK_FULL:
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def quiet_disk_full_in_threads() -> None:
    """Make a background writer thread that finds the disk full (TensorBoard's event writer)
    log one line instead of printing a traceback after the run's own one-line error.

    The run itself learns of it (the writer raises the thread's error at the next write, which
    train() reports as :class:`DiskFull`); any other thread error keeps Python's traceback.
    Installed around whatever hook is current (pytest's, in tests); idempotent.
    """
    if getattr(threading.excepthook, "_pyramid_lab", False):
        return
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if is_disk_full(args.exc_value):
            writer = type(args.thread).__module__ if args.thread is not None else "a thread"
            log.warning("the writer thread of %s stopped: %s", writer, args.exc_value)
            return
        previous(args)

    hook._pyramid_lab = True  # type: ignore[attr-defined]
    threading.excepthook = hook


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to; on leaving the block without an
    error it is synced and renamed over ``path``, on an error it is removed and ``path`` is left
    as it was.

    Example: ``with atomic_path(cache) as tmp: np.save(tmp, array)``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    except (OSError, RuntimeError) as error:
        if is_disk_full(error):
            raise DiskFull(
                f"no space left on the device of {path.parent}: {path.name} was not written and its "
                "previous version is intact; free some space there, then rerun the same command to resume"
            ) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        file.write(data.encode() if isinstance(data, str) else data)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as file:
        os.fsync(file.fileno())


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a platform without folder handles: the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on folders; the data itself is synced
    finally:
        os.close(fd)
