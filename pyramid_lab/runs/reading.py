"""Reading files that other runs, people or tools left: regular files only, never more than a limit.

A report or a summary walks folders it did not write. ``metrics.json`` there may be a FIFO (opening
it blocks until someone writes), a link to ``/dev/zero`` (reading it never ends) or a folder; a file
may be replaced while it is read. So: ``stat`` first (following links: a link to a device is the
device) and refuse anything but a regular file without opening it; then open it non-blocking and
check with ``fstat`` that the opened file is the one checked; then read at most ``limit`` bytes.
The writing twin is pyramid_lab.runs.atomic.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

# os.O_NONBLOCK: a FIFO swapped in after the stat opens at once instead of waiting for a writer.
_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class UnreadableFile(ValueError):
    """A file that is not read: missing, not a regular file, too large, or failing to read.

    The message says why, without the path (callers put the path first).
    """


def regular_size(path: str | Path) -> int:
    """The size in bytes of ``path``, a regular file (after following links); never opens it.

    Raises:
        UnreadableFile: it is missing, unreadable, or a folder, FIFO, device or socket.
    """
    try:
        info = os.stat(path)
    except OSError as error:
        if os.path.islink(path):  # a link to nowhere, or into a folder we may not enter
            raise UnreadableFile(
                f"is a link to {os.readlink(path)}, which cannot be read ({error.strerror})"
            ) from None
        raise UnreadableFile(f"cannot be read ({error.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a plain file")
        raise UnreadableFile(f"is {kind}, not a regular file: skipped without opening it")
    return info.st_size


@contextmanager
def open_regular(path: str | Path, limit: int) -> Iterator[BinaryIO]:
    """Open ``path`` for reading (binary) if it is a regular file of at most ``limit`` bytes.

    Raises:
        UnreadableFile: see :func:`regular_size`; or it is larger than ``limit``, or it was
            replaced by something else between the check and the opening.
    """
    size = regular_size(path)
    if size > limit:
        raise UnreadableFile(f"is {size:,} bytes, more than the {limit:,} read from such a file")
    try:
        descriptor = os.open(path, _FLAGS)
    except OSError as error:
        raise UnreadableFile(f"cannot be read ({error.strerror})") from None
    with os.fdopen(descriptor, "rb") as file:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise UnreadableFile("was replaced by something that is not a regular file while it was read")
        yield file


def read_regular(path: str | Path, limit: int) -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes (see :func:`open_regular`)."""
    with open_regular(path, limit) as file:
        try:
            data = file.read(limit + 1)
        except OSError as error:
            raise UnreadableFile(f"cannot be read ({error.strerror})") from None
    if len(data) > limit:  # it grew after the check
        raise UnreadableFile(f"is more than the {limit:,} bytes read from such a file")
    return data
