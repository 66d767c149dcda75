"""Checkpoints: atomic writes and one reader of a checkpoint's run state.

What a checkpoint holds beyond Lightning's own state is written in one place
(:class:`pyramid_lab.runs.recorder.RunRecord`, under keys defined beside it) and read in one place
(:func:`read_run_state`), so resume, ``mode=test`` and ``mode=predict`` cannot disagree about it.

Every checkpoint is loaded with ``torch.load(..., weights_only=True)``, which unpickles tensors and
plain data only, so a file someone sent you cannot run code when it is loaded
(https://pytorch.org/docs/stable/notes/serialization.html#weights-only); ours hold nothing else
(RNG states as tensors: pyramid_lab/runs/rng.py). A file that needs more is refused with one line
unless the user trusts it (``trust_checkpoint=true``); so is one whose saved config or
hyper-parameters name a ``_target_`` outside pyramid_lab/runs/trust.py's allow-list, since
``mode=test`` and ``mode=predict`` instantiate that config. A file that cannot be read at all
(truncated by a full disk or a copy cut short) is found before a resume, which then falls back to
the newest intact checkpoint of the run or stops with one line (:func:`resume_checkpoint`).
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from pyramid_lab.errors import ConfigError
from pyramid_lab.runs.atomic import TEMP_PATTERN, atomic_path
from pyramid_lab.runs.recorder import RUN_STATE_KEY
from pyramid_lab.runs.trust import check_trusted

LAST = "last.ckpt"
log = logging.getLogger(__name__)
# What torch.load raises for a file it cannot read (a truncated zip is a RuntimeError).
_UNREADABLE = (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError)


class DamagedCheckpoint(ConfigError):
    """A checkpoint file that cannot be read (truncated, corrupted, missing)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path} cannot be read ({reason})")
        self.path, self.reason = path, reason


class UntrustedCheckpoint(ConfigError):
    """A checkpoint that needs Python objects beyond tensors and plain data to load."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint through :func:`pyramid_lab.runs.atomic.atomic_path`: a kill at any
    moment leaves either the old file or the new one."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        # Through a Python file, not a path: a full disk then surfaces as ENOSPC (DiskFull), where
        # torch's own file writer only says "file write failed".
        with atomic_path(path) as tmp, open(tmp, "wb") as file:
            torch.save(checkpoint, file)


@dataclass(frozen=True)
class RunState:
    """A checkpoint's run state: what resuming checks and what using the model needs.

    Args:
        config: the resolved config the run was trained with (None: not a pyramid_lab checkpoint).
        model: the model's name (its builder or class). params: trainable parameters.
        classes, mean, std: the data set's class names and per-channel pixel statistics.
        epoch: Lightning's epoch counter at the save.
    """

    config: dict[str, Any] | None
    model: str | None
    params: int | None
    classes: list[str] | None
    mean: list[float] | None
    std: list[float] | None
    epoch: int | None


def load_checkpoint(path: str | Path, trust: bool = False, setting: str = "ckpt_path") -> dict[str, Any]:
    """A checkpoint as a dict, on the CPU, loaded with ``weights_only=True``.

    Args:
        path: the ``.ckpt`` file.
        trust: also load a file that needs other Python objects (unpickling those can run code):
            the user's ``trust_checkpoint=true``.
        setting: the setting that named the file, for the messages.

    Raises:
        DamagedCheckpoint: the file is missing, truncated or otherwise unreadable.
        UntrustedCheckpoint: the file needs more than weights-only loading allows, and trust is off.
        UntrustedConfig: its saved config names code outside the allow-list, and trust is off.
    """
    path = Path(path)
    checkpoint = _load(path, trust, setting)
    check_saved_configs(checkpoint, path, trust)
    return checkpoint


def check_saved_configs(checkpoint: Any, path: Path, trust: bool) -> None:
    """Refuse a checkpoint whose saved config (``mode=test``/``predict`` instantiate it) or
    hyper-parameters (Lightning's ``load_from_checkpoint`` would) name a ``_target_`` outside the
    allow-list. A resume instantiates neither (it builds from the composed config and restores
    state dicts only) but refuses the file as well: no pyramid_lab run wrote it."""
    if not isinstance(checkpoint, dict):
        return
    state = checkpoint.get(RUN_STATE_KEY)
    check_trusted(state.get("config") if isinstance(state, dict) else None, f"{path}'s saved config", trust)
    for key in ("hyper_parameters", "datamodule_hyper_parameters"):
        check_trusted(checkpoint.get(key), f"{path}'s {key}", trust)


def _load(path: Path, trust: bool, setting: str) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        needed = unsafe_globals(path)
        if not needed:  # refused, but for no import it would make: a damaged pickle
            raise DamagedCheckpoint(path, _first_line(error)) from None
        if not trust:
            names = ", ".join(needed[:4]) + (", ..." if len(needed) > 4 else "")
            raise UntrustedCheckpoint(
                f"{setting}={path} needs Python objects beyond tensors and plain data to load ({names}), "
                "and unpickling those can run code; set trust_checkpoint=true only if you trust where "
                "the file came from (pyramid_lab's own checkpoints from before 2026-11-29 hold numpy arrays)"
            ) from None
        log.warning(
            "trust_checkpoint=true: loading %s with the Python objects it needs (%s)", path, ", ".join(needed)
        )
        return torch.load(path, map_location="cpu", weights_only=False)
    except _UNREADABLE as error:
        raise DamagedCheckpoint(path, _first_line(error)) from None


def unsafe_globals(path: Path) -> list[str]:
    """The Python objects a checkpoint would import to load, beyond what weights-only loading
    allows, read from the pickle's opcodes (nothing is run); empty when that cannot be told."""
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except (AttributeError, pickle.UnpicklingError, *_UNREADABLE):  # damaged, or torch < 2.5
        return []


def _first_line(error: BaseException) -> str:
    """The error's first sentence: torch's zip reader goes on for a paragraph after it."""
    lines = str(error).strip().splitlines()
    return (lines[0].split(". ")[0] if lines else type(error).__name__)[:200]


@dataclass(frozen=True)
class Resume:
    """The checkpoint a resume loads: its path, its run state, and whether Lightning may load it
    with ``weights_only=True`` (False only for a file the user trusted)."""

    path: Path
    state: RunState
    weights_only: bool


def resume_checkpoint(path: Path | None, explicit: bool, trust: bool = False) -> Resume | None:
    """Verify the checkpoint a resume is about to load, before anything is recorded.

    Args:
        path: the checkpoint chosen (``ckpt_path``, or the run folder's ``last.ckpt``), or None.
        explicit: it is the user's ``ckpt_path``: never replaced by another file.
        trust: ``trust_checkpoint``.

    Returns:
        The checkpoint to load: ``path`` if intact; else, for a run folder's own checkpoint, the
        newest intact checkpoint beside it (a warning names both).

    Raises:
        ConfigError: one line naming the damaged file and the choices, when nothing intact is left
            (or the user's ckpt_path is damaged); UntrustedCheckpoint (see load_checkpoint).
    """
    if path is None:
        return None
    try:
        return _resume(path, trust)
    except DamagedCheckpoint as damaged:
        if explicit:
            raise ConfigError(
                f"ckpt_path={damaged.path} cannot be read ({damaged.reason}); give another ckpt_path, "
                "or ckpt_path=null resume=false to start over"
            ) from None
        for other in sorted(path.parent.glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True):
            if other == path:
                continue
            try:
                resume = _resume(other, trust)
            except DamagedCheckpoint:
                continue
            log.warning(
                "%s cannot be read (%s); resuming from %s (epoch %s), "
                "the newest intact checkpoint of the run",
                path,
                damaged.reason,
                other,
                (resume.state.epoch or 0) + 1,
            )
            return resume
        raise ConfigError(
            f"cannot resume: {path} cannot be read ({damaged.reason}) and the run has no other intact "
            "checkpoint; rerun with resume=false to start over, or ckpt_path=<another .ckpt> to continue "
            "from another"
        ) from None


def _resume(path: Path, trust: bool) -> Resume:
    checkpoint = load_checkpoint(path, trust=trust)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise DamagedCheckpoint(path, "no model weights in it")
    trusted_load = trust and bool(unsafe_globals(path))
    return Resume(path=path, state=read_run_state(checkpoint), weights_only=not trusted_load)


def read_run_state(checkpoint: dict[str, Any]) -> RunState:
    state = checkpoint.get(RUN_STATE_KEY) or {}
    return RunState(
        config=state.get("config"),
        model=state.get("model"),
        params=state.get("params"),
        classes=state.get("classes"),
        mean=state.get("mean"),
        std=state.get("std"),
        epoch=checkpoint.get("epoch"),
    )


def check_same_model(path: Path | Resume, model: str, params: int) -> None:
    """Refuse to resume a run of one model from a checkpoint of another (name both)."""
    if isinstance(path, Resume):
        saved, path = path.state, path.path
    else:
        saved = read_run_state(load_checkpoint(path))
    if saved.model is None:
        return  # not written by pyramid_lab: Lightning's own state-dict check still applies
    if (saved.model, saved.params) != (model, params):
        raise ConfigError(
            f"ckpt_path={path} holds {saved.model} ({saved.params:,} parameters) but the "
            f"config builds {model} ({params:,} parameters); use the same model or a new run folder"
        )


# The best checkpoint's file name (conf/callbacks/default.yaml: "best-epoch{epoch:03d}").
_BEST = re.compile(r"best-epoch(\d+)\.ckpt")


def remove_leftovers(run_dir: Path) -> list[Path]:
    """Remove the temporary files (:data:`pyramid_lab.runs.atomic.TEMP_PATTERN`) that writes
    interrupted by a kill left in a run folder: full-size checkpoint copies, half records.

    Only files whose writer is provably gone: its process id (in the name) is not running on this
    host. The caller holds the folder's lock, so no other run writes there. Returns what it removed.
    """
    removed = []
    for folder, _, names in os.walk(run_dir):  # never into a linked folder (followlinks=False)
        for name in names:
            match = TEMP_PATTERN.fullmatch(name)
            path = Path(folder) / name
            if match and not path.is_symlink() and path.is_file() and not _running(int(match["pid"])):
                path.unlink(missing_ok=True)
                removed.append(path)
    if removed:
        log.info("removed %d temporary file(s) of interrupted writes in %s", len(removed), run_dir)
    return removed


def remove_orphan_best(resume: Resume) -> list[Path]:
    """Remove best checkpoints of epochs after the one a resume starts from: a kill between writing
    a new best and ``last.ckpt`` leaves one, of an epoch the resumed run trains again."""
    if resume.state.epoch is None:
        return []
    removed = []
    for path in resume.path.parent.glob("best-epoch*.ckpt"):
        match = _BEST.fullmatch(path.name)
        if match and int(match[1]) > resume.state.epoch and path != resume.path:
            path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        log.info("removed %s: written after %s, by an attempt that was killed", removed, resume.path.name)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True
