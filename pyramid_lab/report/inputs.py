"""What a report reads from a run folder, checked before it is used: the record and the predictions.

Run folders are written by runs that crashed, by older versions, by hand, or by someone hostile.
Each function here turns a file that cannot be used into one message (raised as RecordError or
returned) so that the report names it and goes on with the rest; nothing here ever blocks on a
FIFO, reads a device, or loads a pickle.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from pyramid_lab.runs.reading import UnreadableFile, open_regular, read_regular

# A metrics.json is a few kB (a 1,000-epoch history is about 250 kB); more is not a record.
RECORD_LIMIT = 16 * 2**20
# test_predictions.npz: 90,000 CINIC-10 test images take about 2.5 MB uncompressed; a zip bomb
# that unpacks to more is refused before anything is decompressed.
PREDICTIONS_LIMIT = 2**30
# Arrays of class numbers, one per test image; ``classes`` gives their range.
_CLASS_ARRAYS = ("pred", "target", "pred_ensemble")


class RecordError(ValueError):
    """One metrics.json that cannot be used; the message says what is wrong with it."""


def read_record_file(path: Path) -> Any:
    """The parsed JSON of a metrics.json, or RecordError saying why it cannot be read."""
    try:
        data = read_regular(path, RECORD_LIMIT)
        return json.loads(data)
    except UnreadableFile as error:
        raise RecordError(str(error)) from None
    except json.JSONDecodeError as error:
        raise RecordError(f"not valid JSON ({error})") from None
    except UnicodeDecodeError:
        raise RecordError("not UTF-8 text") from None
    except ValueError as error:
        # Python >= 3.11 refuses to parse integers of more than 4,300 digits (CVE-2020-10735).
        raise RecordError(f"holds a number that cannot be read ({error})") from None
    except RecursionError:
        raise RecordError("nested too deeply to be a record") from None


class PredictionsError(ValueError):
    """A test_predictions.npz that cannot be used; the message says why."""


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


def predictions_problem(path: Path) -> str | None:
    """Why a test_predictions.npz cannot be compared (:func:`read_predictions`), or None."""
    try:
        read_predictions(path)
    except PredictionsError as error:
        return str(error)
    return None


def _arrays_problem(arrays: dict[str, np.ndarray]) -> str | None:
    missing = [key for key in ("pred", "target") if key not in arrays]
    if missing:
        return f"has no {' or '.join(missing)} array"
    length = arrays["pred"].shape[:1]
    for key in ("pred", "target", "index", "pred_ensemble"):
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
