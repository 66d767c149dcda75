"""``test_predictions.npz``: the file in which a run keeps its test predictions, image by image, so
that any two runs on one test set can be compared later without rerunning them.

Written by the training callback (pyramid_lab.training.predictions), read by the report's paired
tests (pyramid_lab.report.significance); this module, below both, holds its name, its keys, its
writer and its checked reader, and imports no torch. ``numpy.load(path)`` reads it (no pickles)::

    pred      int16   [N]     the predicted class of each test image
    target    int16   [N]     its true class
    probs     float16 [N, C]  softmax probabilities (90,000 x 10: 1.8 MB)
    index     int32   [N]     the image's position in the test split, ascending (0..N-1 for the
                              whole split; fewer with trainer.limit_test_batches)
    classes   str     [C]     the class names
    test_set  str     []      blake2b digest of the test split's images and labels ("" when the
                              datamodule is not ImageDataModule): runs are compared image by
                              image only when their digests are equal
    pred_<name>, probs_<name>   the same for another predictor of the run (``ensemble``: a
                              snapshot ensemble), when one ran

Run folders are also written by runs that crashed, by older versions, by hand, or by someone
hostile: the reader refuses, with one message, anything that is not a regular file, unpacks to
more than a limit, holds a pickle, or whose arrays do not fit together.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pyramid_lab.runs.atomic import atomic_path
from pyramid_lab.runs.reading import UnreadableFile, open_regular

PREDICTIONS_NAME = "test_predictions.npz"
# 90,000 CINIC-10 test images take about 2.5 MB uncompressed; a zip bomb that unpacks to more is
# refused before anything is decompressed.
PREDICTIONS_LIMIT = 2**30
# The predictor whose ``pred_<name>`` the comparisons read besides the run's own model.
ENSEMBLE = "ensemble"
# Arrays of class numbers, one per test image; ``classes`` gives their range.
_CLASS_ARRAYS = ("pred", "target", f"pred_{ENSEMBLE}")


class PredictionsError(ValueError):
    """A test_predictions.npz that cannot be used; the message says why."""


def write_predictions(
    folder: str | Path,
    probs: np.ndarray,
    target: np.ndarray,
    index: np.ndarray,
    classes: Sequence[str],
    test_set: str,
    others: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write ``folder/test_predictions.npz`` atomically (a killed run never leaves half a file).

    Args:
        folder: the run folder.
        probs: float ``[N, C]`` softmax probabilities of the run's model.
        target: int ``[N]`` the true classes.
        index: int ``[N]`` each image's position in the test split, ascending.
        classes: the ``C`` class names.
        test_set: the test split's digest ("" when unknown).
        others: other predictors' float ``[N, C]`` probabilities by name (``ensemble``).
    """
    arrays = {
        "pred": probs.argmax(-1).astype(np.int16),
        "target": target.astype(np.int16),
        "probs": probs.astype(np.float16),
        "index": index.astype(np.int32),
        "classes": np.array(list(classes)),
        "test_set": np.array(test_set),
    }
    for name, p in (others or {}).items():
        arrays[f"pred_{name}"] = p.argmax(-1).astype(np.int16)
        arrays[f"probs_{name}"] = p.astype(np.float16)
    path = Path(folder) / PREDICTIONS_NAME
    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        np.savez_compressed(file, **arrays)
    return path


def read_predictions(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a test_predictions.npz, once they are what the comparisons assume
    (pyramid_lab.report.significance): ``pred`` and ``target`` (and ``index``, ``pred_ensemble``
    when present) are 1-D integer arrays of one length; classes lie in [0, len(classes)) (or are
    >= 0 without ``classes``); ``index`` is strictly ascending.

    Raises:
        PredictionsError: why the file cannot be compared.
    """
    try:
        with open_regular(path, PREDICTIONS_LIMIT) as file:
            with zipfile.ZipFile(file) as archive:
                unpacked = sum(info.file_size for info in archive.infolist())
                if unpacked > PREDICTIONS_LIMIT:
                    raise PredictionsError(
                        f"unpacks to {unpacked:,} bytes, more than the {PREDICTIONS_LIMIT:,} read"
                    )
            file.seek(0)
            with np.load(file, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
    except UnreadableFile as error:
        raise PredictionsError(str(error)) from None
    except PredictionsError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, KeyError, EOFError) as error:
        raise PredictionsError(f"cannot be read ({type(error).__name__}: {error})") from None
    problem = _arrays_problem(arrays)
    if problem is not None:
        raise PredictionsError(problem)
    return arrays


@dataclass(frozen=True)
class Predictions:
    """One run's per-image test predictions, as the comparisons use them.

    Attributes:
        pred, target: int ``[N]`` predicted and true class per test image.
        index: int ``[N]`` position of each image in the test split (sorted).
        test_set: a digest of the test split's images and labels; None when unknown.
        classes: the class names, ``[C]``.
        ensemble: int ``[N]`` the snapshot ensemble's predicted classes, None without one.
    """

    pred: np.ndarray
    target: np.ndarray
    index: np.ndarray
    test_set: str | None
    classes: tuple[str, ...]
    ensemble: np.ndarray | None = None

    @property
    def correct(self) -> np.ndarray:
        return self.pred == self.target


def load_predictions(path: str | Path) -> Predictions:
    """Read a test_predictions.npz (no pickles), checked by :func:`read_predictions`.

    Raises:
        PredictionsError: ``<path>: <why>``: the file is unreadable, lacks ``pred``/``target``,
            or its arrays disagree.
    """
    try:
        arrays = read_predictions(Path(path))
    except PredictionsError as error:
        raise PredictionsError(f"{path}: {error}") from None
    pred, target = arrays["pred"].astype(np.int64), arrays["target"].astype(np.int64)
    index = arrays.get("index", np.arange(len(pred))).astype(np.int64)
    ensemble = arrays.get(f"pred_{ENSEMBLE}")
    test_set = arrays.get("test_set")
    return Predictions(
        pred=pred,
        target=target,
        index=index,
        test_set=None if test_set is None else str(test_set),
        classes=tuple(str(c) for c in arrays.get("classes", ())),
        ensemble=None if ensemble is None else ensemble.astype(np.int64),
    )


def _arrays_problem(arrays: dict[str, np.ndarray]) -> str | None:
    missing = [key for key in ("pred", "target") if key not in arrays]
    if missing:
        return f"has no {' or '.join(missing)} array"
    length = arrays["pred"].shape[:1]
    for key in ("pred", "target", "index", f"pred_{ENSEMBLE}"):
        array = arrays.get(key)
        if array is None:
            continue
        if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
            return f"'{key}' is a {array.dtype} array of shape {array.shape}, expected integer [N]"
        if array.shape[:1] != length:
            return f"'{key}' has length {len(array)}, 'pred' has length {length[0]}: expected equal lengths"
    if length[0] == 0:
        return "holds no test images"
    classes = arrays.get("classes")
    high = None if classes is None or classes.ndim != 1 or len(classes) == 0 else len(classes)
    for key in _CLASS_ARRAYS:
        array = arrays.get(key)
        if array is None:
            continue
        low_seen, high_seen = int(array.min()), int(array.max())
        if low_seen < 0 or (high is not None and high_seen >= high):
            valid = f"[0, {high})" if high is not None else ">= 0"
            return f"'{key}' holds classes from {low_seen} to {high_seen}, expected {valid}"
    index = arrays.get("index")
    if index is not None and (index.min() < 0 or np.any(np.diff(index.astype(np.int64)) <= 0)):
        return "'index' must be strictly ascending positions >= 0 in the test split"
    return None
