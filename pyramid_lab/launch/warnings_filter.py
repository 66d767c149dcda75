"""The one place where third-party warnings that say nothing about a run are silenced, each with
its reason; every other warning is shown once per process, so that a sweep's log (one process,
many jobs) says it once instead of once per job.

``install()`` is called by the command line (pyramid_lab.__main__) after Hydra parsed it;
``silence()`` alone by the search (its sweeper runs before any job, and the report draws it). A
warning about the run itself (a smoke run's batches fewer than ``log_every_n_steps``, a data
loader with few workers) stays: once.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import TextIO

# Messages (regular expressions) that say nothing a user can act on, each with the reason.
SILENCED = (
    # torch 2.14 deprecates LeafSpec and Lightning 2.6's own utilities/_pytree.py still uses it,
    # twice per fit: Lightning's code, not ours or the user's (gone with a Lightning update).
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    # Under bf16-mixed/16-mixed the weights stay fp32, so the summary's fallback to 32 bits per
    # parameter gives the right size: the warning is about its table of precisions only.
    r"Precision .* is not supported by the model summary",
    # Optuna marks features the search relies on as experimental, in two message templates (an
    # argument; a function or class): RDBStorage's heartbeat and fail_stale_trials, the documented
    # way to fail the trials of a process that died (search/bookkeeping.py); trial constraints, the
    # parameter budget told to the sampler (search/budget.py); whatever a sampler chosen in conf/
    # uses. Chosen knowingly, and the notice says nothing about a run, once per trial and figure.
    r"Argument ``\w+`` is an experimental feature",
    r"\S+ is experimental \(supported from v",
)
_QUIET_LOGGERS = {
    # Lightning advertises its hosted logger with every Trainer: an advert, not a message.
    "pytorch_lightning.utilities.rank_zero": ("💡 Tip: For seamless cloud logging",),
}


class _DropMessages(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


class _ShowOnce:
    """``warnings.showwarning`` that shows each warning (message, category, place) once per process.

    Python's own "default"/"once" actions remember what they showed in each module's registry,
    which is emptied whenever any code changes the warning filters (Lightning and its dependencies
    do, once per Trainer): in a sweep every job repeated every warning.
    """

    def __init__(self, show: Callable[..., None]) -> None:
        self.show = show
        self.shown: set[tuple[str, type, str, int]] = set()

    def __call__(
        self,
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        key = (str(message), category, filename, lineno)
        if key not in self.shown:
            self.shown.add(key)
            self.show(message, category, filename, lineno, file, line)


def silence() -> None:
    """Silence the warnings of ``SILENCED`` (and nothing else): what the search calls before it
    talks to Optuna, in the sweeper (before any job installs the rest) and in the report."""
    for message in SILENCED:
        warnings.filterwarnings("ignore", message=message)  # an identical filter is replaced


def install() -> None:
    """Silence the warnings of ``SILENCED`` and Lightning's tip; show every other warning once."""
    if not isinstance(warnings.showwarning, _ShowOnce):
        warnings.showwarning = _ShowOnce(warnings.showwarning)
    silence()
    for name, prefixes in _QUIET_LOGGERS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(prefixes))
