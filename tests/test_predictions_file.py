"""test_predictions.npz as written and read back by its one owner (pyramid_lab.runs.predictions_file),
without torch: what training writes is what the report's comparisons read."""

from __future__ import annotations

import numpy as np
import pytest

from pyramid_lab.runs.predictions_file import (
    PREDICTIONS_NAME,
    PredictionsError,
    load_predictions,
    read_predictions,
    write_predictions,
)


def test_what_is_written_is_read_back_with_the_ensemble(tmp_path):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=6).astype(np.float32)
    ensemble = rng.dirichlet(np.ones(3), size=6).astype(np.float32)
    target = np.array([0, 1, 2, 0, 1, 2])
    index = np.array([1, 3, 4, 7, 8, 9])
    classes = ["a", "b", "c"]
    path = write_predictions(tmp_path, probs, target, index, classes, "digest", {"ensemble": ensemble})
    assert path == tmp_path / PREDICTIONS_NAME
    arrays = read_predictions(path)
    assert {k: arrays[k].dtype for k in ("pred", "target", "probs", "index", "pred_ensemble")} == {
        "pred": np.int16,
        "target": np.int16,
        "probs": np.float16,
        "index": np.int32,
        "pred_ensemble": np.int16,
    }
    loaded = load_predictions(path)
    np.testing.assert_array_equal(loaded.pred, probs.argmax(-1))
    np.testing.assert_array_equal(loaded.ensemble, ensemble.argmax(-1))
    np.testing.assert_array_equal(loaded.index, index)
    assert loaded.classes == ("a", "b", "c") and loaded.test_set == "digest"
    assert loaded.correct.sum() == (probs.argmax(-1) == target).sum()
    assert not list(tmp_path.glob(".*"))  # no temporary file left beside it


def test_a_refused_file_is_named_with_its_reason(tmp_path):
    path = tmp_path / PREDICTIONS_NAME
    np.savez(path, pred=np.array([0, 1]), target=np.array([0]))
    with pytest.raises(PredictionsError, match=rf"^{path}: 'target' has length 1, 'pred' has length 2"):
        load_predictions(path)
