"""Which code made a run: the package version, and the git commit when it runs from a checkout."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pyramid_lab

# Where the package's modules are: the checkout's pyramid_lab/ (editable install) or site-packages.
SOURCE_DIR = Path(pyramid_lab.__file__).resolve().parent
GIT_TIMEOUT_S = 5.0  # a run must never wait on a hung file system or a git credential prompt


def code_version(source_dir: Path = SOURCE_DIR) -> dict[str, Any]:
    """The fields of a run record that trace its result to the code that made it.

    Args:
        source_dir: the folder of the package's modules.

    Returns:
        ``version``: pyramid_lab's version from the installed metadata (``pyproject.toml``);
        ``git_commit``: the checked-out commit (40 hex digits) when ``source_dir`` is the package
        folder of a git checkout, else None (an installed wheel, no git, a timeout);
        ``git_dirty``: whether the checkout differs from that commit (edited or new files that git
        does not ignore), None without a commit.
    """
    commit = _git(source_dir, "rev-parse", "--show-toplevel", "HEAD")
    if commit is None:
        return {"version": pyramid_lab.__version__, "git_commit": None, "git_dirty": None}
    toplevel, sha = commit.splitlines()
    # A wheel installed in a virtual environment inside some other repository is no checkout of ours.
    if Path(toplevel).resolve() != source_dir.resolve().parent:
        return {"version": pyramid_lab.__version__, "git_commit": None, "git_dirty": None}
    # No optional locks: a sweep's jobs run this at once, and a refreshed index would take its lock.
    status = _git(source_dir, "--no-optional-locks", "status", "--porcelain")
    return {
        "version": pyramid_lab.__version__,
        "git_commit": sha,
        "git_dirty": None if status is None else bool(status.strip()),
    }


def _git(cwd: Path, *args: str) -> str | None:
    """``git ARGS`` run in ``cwd``: its standard output, or None when git is missing or fails."""
    # GIT_DIR, GIT_WORK_TREE, ... set by a hook or a wrapper would point git at another repository.
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):  # no git executable, cwd gone, or too slow
        return None
    return done.stdout if done.returncode == 0 else None
