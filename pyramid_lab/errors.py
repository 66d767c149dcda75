"""The exceptions a user meets, each shown as one line without a traceback.

A ``ConfigError`` message is a single line that names the setting or file at fault and what would
be valid. A ``RunStopped`` says why a run stopped on purpose before its end; ``train()`` records
its ``status`` in the run record. ``python -m pyramid_lab`` prints either without a traceback
(unless HYDRA_FULL_ERROR=1) and exits non-zero; any other exception is a bug or an environment
failure and keeps its traceback. Ctrl-C (:func:`is_ctrl_c`) prints one line naming the run folder
and the command that resumes it, and exits 130.

Every command shows a user's mistake the same way, through :func:`show_error` (or
:func:`exit_with_error`): one line ``error: <message>`` on stderr and a non-zero exit status, 2 for
bad input (as argparse), 1 for work that ran and failed. What counts as a usable number, for a
setting or a recorded metric, is :func:`is_finite_number`.
"""

import math
import signal
import sys
from typing import NoReturn


class ConfigError(ValueError):
    """Bad user input: a setting, a file or a data folder that cannot be used as given."""


class RunStopped(RuntimeError):
    """A run stopped on purpose before its end (diverged, pruned by a search, ...).

    ``train()`` records ``status`` in the run record and re-raises; subclasses set it. The message
    is one line saying why, shown to the user without a traceback.
    """

    status = "stopped"


class DivergedError(RunStopped):
    """The training loss became NaN or infinite; the run stops instead of training on."""

    status = "diverged"


def is_ctrl_c(error: BaseException) -> bool:
    """Ctrl-C: as itself, as the ``exit(1)`` Lightning raises while handling it, or as the exit
    130 (128 + SIGINT) a training run raises after saving its state (pyramid_lab.runs.interrupt)."""
    return isinstance(error, KeyboardInterrupt) or (
        isinstance(error, SystemExit)
        and (error.code == 128 + signal.SIGINT or isinstance(error.__context__, KeyboardInterrupt))
    )


def show_error(message: object, code: int = 2) -> int:
    """Print ``error: <message>`` on stderr and return ``code``, the exit status, for a ``main``
    that returns its status: ``return show_error(problem)``."""
    print(f"error: {message}", file=sys.stderr)
    return code


def exit_with_error(message: object, code: int = 2) -> NoReturn:
    """:func:`show_error`, then exit with ``code``."""
    sys.exit(show_error(message, code))


def is_finite_number(value: object) -> bool:
    """An int or a float that is neither NaN nor infinite and fits a float: what a number setting
    or a recorded metric must be to be used. A bool is no number here (Python counts True as 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond any float (JSON and YAML hold 10**400 as well as 1)
        return False
