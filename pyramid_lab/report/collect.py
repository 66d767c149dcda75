"""Find every run record (``metrics.json``) under a folder and check it before anything reads it.

A record is the one file a run leaves for reports (pyramid_lab.runs.record_file). A folder may be one run, a
Hydra multirun folder (``multirun/<date>/<time>/<job>/metrics.json``) or several sweeps nested at
any depth. Records that cannot be used are reported as one line each, never silently skipped.
"""

from __future__ import annotations

import math
import os
import re
import reprlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pyramid_lab.report.history import History
from pyramid_lab.report.inputs import RecordError, read_record_file
from pyramid_lab.report.table_block import TableBlock, read_block
from pyramid_lab.runs.predictions_file import (
    PREDICTIONS_NAME,
    Predictions,
    PredictionsError,
    load_predictions,
)
from pyramid_lab.runs.record_file import RECORD_NAME, STATUSES, latest_completed

# Table name for runs that were not made by a table sweep (their record has no ``table``).
UNTABLED = "runs"
# Integers beyond this are no count of anything a run does (and float() of 10**400 overflows).
_LARGEST = 2**63
_WANTED = {
    "test/acc": "fraction in [0, 1]",
    "val/acc_best": "fraction in [0, 1]",
    "test/acc_ensemble": "fraction in [0, 1]",
    "params": "whole number >= 0",
    "epochs": "whole number >= 0",
    "wall_time_s": "finite number of seconds >= 0",
}
# Overrides that say where a run wrote, not what it trained: never part of a row label.
_WHERE_PREFIXES = ("hydra.", "hydra/", "paths.")


class ReportError(ValueError):
    """The folder given to the report cannot be reported on (missing, empty, no records)."""


@dataclass(frozen=True)
class Run:
    """One run as its metrics.json describes it. Accuracies are fractions, as recorded.

    Attributes:
        path: the metrics.json file (None for a record built in memory).
        status: one of pyramid_lab.runs.record_file.STATUSES.
        table: the table sweep it belongs to (``table`` in the record: its name), or "runs".
        block: the table's block as the run recorded it (baseline row, the study's numbers);
            None for runs of no table and records without one.
        row: the swept value (``row`` in the record), or the overrides that set it apart.
        seed: the ``seed`` field, or the ``seed=`` override; None when neither is there.
        dataset: the data source's class (``CINIC10``, ``Digits``, ...); None in older records.
        test_acc, val_acc_best: fractions in [0, 1], None when the run did not get there.
        params, epochs, wall_time_s: trainable parameters, epochs completed, seconds.
        error: why the run stopped, for failed, diverged and interrupted runs.
        overrides: the command-line overrides that made the run.
        history: per-epoch dicts (``epoch``, ``train/loss``, ``train/acc``, ``val/acc``, ...); from
            a record, a :class:`~pyramid_lab.report.history.History` (held by column).
        test_acc_ensemble: the snapshot ensemble's test accuracy (fraction), None without one.
        acc_per_class: test accuracy (fraction) per class name, None in records without it.
        predictions: the run's test_predictions.npz, None when it left none (older runs) or it
            cannot be used.
        predictions_problem: why the run's test_predictions.npz cannot be used (for the notes).
        loaded_predictions: that file's checked content, read once by :func:`collect_runs` for the
            comparisons (None until then, and for a run built in memory).
    """

    path: Path | None
    status: str
    table: str
    row: str
    seed: int | None = None
    dataset: str | None = None
    test_acc: float | None = None
    val_acc_best: float | None = None
    params: int | None = None
    epochs: int | None = None
    wall_time_s: float | None = None
    error: str | None = None
    overrides: tuple[str, ...] = ()
    history: Sequence[dict[str, Any]] = field(default=(), repr=False)
    test_acc_ensemble: float | None = None
    acc_per_class: dict[str, float] | None = field(default=None, repr=False)
    predictions: Path | None = None
    predictions_problem: str | None = None
    loaded_predictions: Predictions | None = field(default=None, repr=False, compare=False)
    block: TableBlock | None = field(default=None, repr=False)

    @property
    def folder(self) -> Path | None:
        """The run folder (where metrics.json and the run's pictures are)."""
        return None if self.path is None else self.path.parent

    @classmethod
    def from_record(cls, record: Mapping[str, Any], path: Path | None = None) -> Run:
        """Check a metrics.json's content and turn it into a Run.

        Raises:
            RecordError: the record lacks ``status``, has a field of the wrong type, or says
                ``completed`` without a test accuracy.
        """
        if not isinstance(record, Mapping):
            raise RecordError(f"expected a JSON object, got {type(record).__name__}")
        status = record.get("status")
        if status is None:
            raise RecordError("missing 'status'")
        if status not in STATUSES:
            raise RecordError(f"status {status!r} is not one of {', '.join(STATUSES)}")
        numbers = {
            key: _number(record, key)
            for key in (
                "test/acc",
                "val/acc_best",
                "test/acc_ensemble",
                "params",
                "epochs",
                "wall_time_s",
            )
        }
        for key in ("test/acc", "val/acc_best", "test/acc_ensemble"):
            value = numbers[key]
            if value is not None and not 0.0 <= value <= 1.0:
                raise RecordError(f"'{key}' is {value}, expected a fraction in [0, 1]")
        for key in ("params", "epochs", "wall_time_s"):
            value = numbers[key]
            whole = key != "wall_time_s"
            if value is not None and (value < 0 or (whole and not value.is_integer())):
                raise RecordError(f"'{key}' is {_show(record[key])}, expected a {_WANTED[key]}")
        if status == "completed" and numbers["test/acc"] is None:
            raise RecordError("status is 'completed' but 'test/acc' is missing: an incomplete record")
        overrides = record.get("overrides") or []
        if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
            raise RecordError("'overrides' must be a list of 'key=value' strings")
        history = check_history(record.get("history"))
        per_class = _per_class(record.get("test/acc_per_class"))
        seed = record.get("seed", _override_value(overrides, "seed"))
        row = record.get("row")
        table, block = read_block(record.get("table"))
        return cls(
            path=path,
            status=status,
            table=table or UNTABLED,
            row="" if row is None else str(row),  # filled in from the overrides by collect_runs
            seed=_as_int(seed),
            dataset=None if record.get("dataset") is None else str(record["dataset"]),
            test_acc=numbers["test/acc"],
            val_acc_best=numbers["val/acc_best"],
            params=_as_int(numbers["params"]),
            epochs=_as_int(numbers["epochs"]),
            wall_time_s=numbers["wall_time_s"],
            error=None if record.get("error") is None else str(record["error"]),
            overrides=tuple(overrides),
            history=history,
            test_acc_ensemble=numbers["test/acc_ensemble"],
            acc_per_class=per_class,
            predictions=_predictions_beside(path),
            block=block,
        )


@dataclass(frozen=True)
class Collected:
    """The runs found under a folder and one line per record that could not be used."""

    root: Path
    runs: list[Run]
    problems: list[str]
    files: int
    # One line per run reported from an earlier attempt than its latest (which did not complete).
    notes: list[str] = field(default_factory=list)


def collect_runs(root: str | Path) -> Collected:
    """Read every metrics.json under ``root`` (recursively), in natural path order.

    Raises:
        ReportError: ``root`` does not exist, is not a folder, is empty, or holds no metrics.json.
    """
    root = Path(root)
    expected = f"expected a run or sweep folder with {RECORD_NAME} files (e.g. multirun/<date>/<time>)"
    if not root.exists():
        raise ReportError(f"{root} does not exist; {expected}")
    if not root.is_dir():
        raise ReportError(f"{root} is not a folder; {expected}")
    if not any(root.iterdir()):
        raise ReportError(f"{root} is empty; {expected}")
    files = sorted(_named(root, RECORD_NAME), key=_natural_key)
    if not files:
        raise ReportError(f"no {RECORD_NAME} anywhere under {root}; {expected}")
    runs, problems, notes = [], [], []
    for file in files:
        try:
            record, note = _latest_completed(read_record_file(file))
            run = Run.from_record(record, path=file)
        except RecordError as error:
            problems.append(f"{file}: {error}")
            continue
        if run.predictions is not None and run.status == "completed":
            try:  # read once: the comparisons use what is checked here (report.effects)
                run = replace(run, loaded_predictions=load_predictions(run.predictions))
            except PredictionsError as error:  # "<path>: <why>"
                problems.append(f"{error}; the run is reported but not compared")
                run = replace(run, predictions=None, predictions_problem=str(error))
        runs.append(run)
        if note:
            notes.append(f"{file}: reported from {note}")
    return Collected(root=root, runs=label_rows(runs), problems=problems, files=len(files), notes=notes)


def label_rows(runs: list[Run]) -> list[Run]:
    """Give every run without a ``row`` the overrides that set it apart from its table's others.

    Overrides shared by all such runs of a table (the experiment, the epoch count) say nothing
    about the row, and ``seed=`` is the seed, not the row: a sweep over ``scheduler=cosine,exp``
    with two seeds gives rows "scheduler=cosine" and "scheduler=exp" with two runs each.
    """
    unlabelled: dict[str, list[Run]] = {}
    for run in runs:
        if not run.row:
            unlabelled.setdefault(run.table, []).append(run)
    labels: dict[int, str] = {}
    for group in unlabelled.values():
        kept = [[o for o in run.overrides if describes_row(o)] for run in group]
        shared = set.intersection(*(set(k) for k in kept)) if len(group) > 1 else set()
        for run, overrides in zip(group, kept):
            labels[id(run)] = (
                " ".join(o for o in overrides if o not in shared) or " ".join(overrides) or "defaults"
            )
    return [replace(run, row=labels[id(run)]) if id(run) in labels else run for run in runs]


def _named(root: Path, name: str) -> list[Path]:
    """Every entry called ``name`` under ``root``: files, and also links to nowhere, folders and
    FIFOs, which the reading then names as skipped (Path.rglob would drop a dangling link)."""
    # os.walk does not follow links to folders (no cycles), as Path.rglob before Python 3.13.
    return [Path(top, name) for top, dirs, files in os.walk(root) if name in files or name in dirs]


def check_history(value: Any) -> History:
    """A record's ``history`` as per-epoch dicts, or RecordError when it is not one.

    Values that are numbers must fit a float (NaN and infinity are kept: a diverged run records
    its loss as NaN); an ``epoch`` must be a finite whole number.
    """
    history = value or []
    if not isinstance(history, list) or not all(isinstance(h, Mapping) for h in history):
        raise RecordError("'history' must be a list of per-epoch objects")
    for entry in history:
        for key, number in entry.items():
            if type(number) is int and abs(number) > _LARGEST:  # a bool is no such int
                raise RecordError(f"'history' holds {key!r} = an integer too large for a float")
        epoch = entry.get("epoch")
        if epoch is not None and not (_is_number(epoch) and math.isfinite(epoch) and epoch == int(epoch)):
            raise RecordError(f"'history' holds 'epoch' = {_show(epoch)}, expected a whole number")
    return History(history)


def _latest_completed(record: Any) -> tuple[Any, str | None]:
    """pyramid_lab.runs.record_file.latest_completed on a record that nobody has checked yet."""
    if isinstance(record, Mapping) and record.get("attempts"):
        check_history(record.get("history"))  # latest_completed compares its epochs
    try:
        # A rerun that failed after an earlier attempt completed: report the completed one.
        return latest_completed(record)
    except (TypeError, AttributeError, ValueError) as error:
        raise RecordError(f"its 'attempts' do not fit its history ({error})") from None


def _per_class(value: Any) -> dict[str, float] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(_is_fraction(v) for v in value.values()):
        raise RecordError("'test/acc_per_class' must map class names to fractions in [0, 1]")
    return {str(name): float(v) for name, v in value.items()}


def _is_fraction(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0


def _predictions_beside(path: Path | None) -> Path | None:
    if path is None:
        return None
    file = path.parent / PREDICTIONS_NAME
    # Anything by that name, a FIFO too: collect_runs checks it (without opening one) and says why.
    return file if file.exists() or file.is_symlink() else None


def _number(record: Mapping[str, Any], key: str) -> float | None:
    value = record.get(key)
    if value is None:
        return None
    if not _is_number(value):
        raise RecordError(f"'{key}' is {_show(value)}, expected a number")
    if isinstance(value, int) and abs(value) > _LARGEST:
        raise RecordError(f"'{key}' is an integer of {value.bit_length()} bits, expected a {_WANTED[key]}")
    if not math.isfinite(value):
        raise RecordError(f"'{key}' is {value}, expected a {_WANTED[key]}")
    return float(value)


def _is_number(value: Any) -> bool:
    # bool is an int to Python, never a metric.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _show(value: Any) -> str:
    # A hostile record's value may be megabytes long: name it, do not print it.
    return reprlib.repr(value)


def _as_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return int(number) if math.isfinite(number) else None


def _override_value(overrides: list[str], key: str) -> str | None:
    for override in overrides:
        name, _, value = override.lstrip("+~").partition("=")
        if name == key:
            return value
    return None


def describes_row(override: str) -> bool:
    """Whether an override says what a run trains (not its seed, nor where it wrote)."""
    name = override.lstrip("+~").partition("=")[0]
    return name not in ("seed", "hydra", "paths") and not name.startswith(_WHERE_PREFIXES)


def _natural_key(path: Path) -> list[Any]:
    # multirun/.../10 after multirun/.../9, as Hydra numbers its jobs.
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", str(path))]
