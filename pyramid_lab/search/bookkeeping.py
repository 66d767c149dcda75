"""The search's bookkeeping: the Optuna study's storage, which trials used their slot, and failing
trials whose process died.

A trial's slot is *used* once the search has told its outcome: COMPLETE, PRUNED, or FAIL after its
job ran (the ``status`` user attribute says failed, diverged, ...). A FAIL without ``status`` is a
trial whose sweeper died or was interrupted while it ran: its slot is free and runs again, so that
``n_trials`` is always the study's total of trials that ran to an outcome.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterable
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from pyramid_lab.errors import ConfigError

DB_NAME = "optuna.db"
# User attributes the search writes on its trials (visible in optuna-dashboard).
HOST, PID = "search_host", "search_pid"
STATUS, REASON, PARAMS = "status", "reason", "params"
OVERRIDES, RUN_DIR = "overrides", "run_dir"


def default_storage(sweep_dir: str | Path) -> str:
    """The SQLite database in the sweep folder (an absolute URL: jobs may run elsewhere)."""
    return f"sqlite:///{Path(sweep_dir).resolve() / DB_NAME}"


def make_storage(url: str, heartbeat_interval: int | None) -> BaseStorage:
    """An RDB storage for ``url`` whose trials record a heartbeat every ``heartbeat_interval`` s.

    Optuna fails a RUNNING trial whose heartbeat is older than twice the interval
    (``optuna.storages.fail_stale_trials``): this is how a search on another machine, sharing the
    study, notices that this sweeper died.
    """
    if "://" not in url:
        raise ConfigError(
            f"hydra.sweeper.storage={url} is not an SQLAlchemy URL; use e.g. sqlite:////abs/path/optuna.db "
            "or postgresql://user:password@host/db (null: an SQLite database in the sweep folder)"
        )
    if heartbeat_interval is not None and heartbeat_interval <= 0:
        raise ConfigError(f"hydra.sweeper.heartbeat_interval={heartbeat_interval}: give seconds > 0, or null")
    grace = 2 * heartbeat_interval if heartbeat_interval else None
    try:
        return RDBStorage(url, heartbeat_interval=heartbeat_interval, grace_period=grace)
    except Exception as error:  # noqa: BLE001 - a bad URL, a missing driver, a server that is down
        raise ConfigError(
            f"hydra.sweeper.storage={url} cannot be opened: {type(error).__name__}: {error}"
        ) from None


def trial_handle(study: optuna.Study, number: int) -> optuna.Trial:
    """A live ``optuna.Trial`` for trial ``number`` of ``study`` (from any process)."""
    storage = study._storage
    study_id = storage.get_study_id_from_name(study.study_name)
    return optuna.Trial(study, storage.get_trial_id_from_study_id_trial_number(study_id, number))


def slot_used(trial: FrozenTrial) -> bool:
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and STATUS in trial.user_attrs


def count_used(trials: Iterable[FrozenTrial]) -> int:
    return sum(slot_used(trial) for trial in trials)


def owned_here(trial: FrozenTrial) -> bool:
    return trial.user_attrs.get(HOST) == socket.gethostname()


def fail_dead_trials(study: optuna.Study) -> list[int]:
    """Fail the RUNNING trials whose sweeper is gone; returns their numbers.

    A trial started by a sweeper on this machine whose process no longer exists is failed at once;
    one from another machine is failed by its heartbeat, once it is older than the grace period.
    """
    optuna.storages.fail_stale_trials(study)
    dead = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = trial.user_attrs.get(PID)
        if owned_here(trial) and isinstance(pid, int) and pid != os.getpid() and not _alive(pid):
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
            dead.append(trial.number)
    return dead


def mark_owner(trial: optuna.Trial) -> None:
    trial.set_user_attr(HOST, socket.gethostname())
    trial.set_user_attr(PID, os.getpid())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


class Heartbeat:
    """Records a heartbeat for the trials in flight every ``interval`` seconds (a daemon thread).

    Optuna does this inside ``study.optimize``; an ask-and-tell loop must do it itself.
    """

    def __init__(self, storage: BaseStorage, interval: int | None):
        self.storage, self.interval = storage, interval
        self.trial_ids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:  # noqa: PYI034
        if self.interval and isinstance(self.storage, RDBStorage):
            self._thread = threading.Thread(target=self._run, name="optuna-heartbeat", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def watch(self, trials: Iterable[optuna.Trial]) -> None:
        with self._lock:
            self.trial_ids = {trial._trial_id for trial in trials}
        self._beat()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._beat()

    def _beat(self) -> None:
        if not (self.interval and isinstance(self.storage, RDBStorage)):
            return
        with self._lock:
            for trial_id in self.trial_ids:
                self.storage.record_heartbeat(trial_id)
