"""One reader of a checkpoint's run state, by keys that renaming a class cannot break."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pyramid_lab.runs.checkpoint import load_checkpoint, read_run_state
from pyramid_lab.runs.recorder import RECORD_STATE_KEY, RUN_STATE_KEY, RunRecord
from pyramid_lab.train import train
from tests.helpers import compose_config


def test_a_checkpoint_carries_what_resume_and_predict_need(tmp_path, tiny_overrides):
    train(compose_config(tiny_overrides, tmp_path))
    checkpoint = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    state = read_run_state(checkpoint)
    assert state.model == "PyramidNet" and state.params > 0
    assert state.config["model"]["depth"] == 8 and state.epoch == 0
    assert state.classes == [str(d) for d in range(10)] and len(state.mean) == len(state.std) == 3
    # Lightning files callback state under state_key: ours is a fixed string, not the class name.
    assert RECORD_STATE_KEY in checkpoint["callbacks"] and RUN_STATE_KEY in checkpoint
    # The saved config reaches runs/'s classes through the package (pyramid_lab.runs.<Name>), never
    # through the module defining them, so renaming a module under runs/ (record.py became
    # record_file.py) leaves every checkpoint written before loadable.
    named = [target for target in targets(state.config) if target.startswith("pyramid_lab.runs.")]
    assert named and all(target.count(".") == 2 for target in named), named


def targets(node: Any) -> Iterator[str]:
    """Every ``_target_`` in a config read back as plain dicts and lists."""
    if isinstance(node, dict):
        if isinstance(node.get("_target_"), str):
            yield node["_target_"]
        for value in node.values():
            yield from targets(value)
    elif isinstance(node, list):
        for value in node:
            yield from targets(value)


def test_renaming_the_record_class_keeps_its_checkpoint_keys(tmp_path):
    renamed = type("RenamedRecord", (RunRecord,), {})(tmp_path, [])
    assert renamed.state_key == RunRecord(tmp_path, []).state_key == RECORD_STATE_KEY
    assert read_run_state({}).config is None  # a checkpoint from elsewhere: nothing to read
