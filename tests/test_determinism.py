"""Same seed on the CPU, same run: metrics and final weights bit for bit; another seed differs.

ShakeDrop (random alpha/beta per sample) and augmentation (random crops and flips per sample, drawn
on the device after the transfer) are both on, so every source of randomness in a training step is
exercised, not only the weight initialisation.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from pyramid_lab.train import train
from tests.helpers import compose_config

# Fields of metrics.json that legitimately differ between two identical runs.
NOT_COMPARED = {"wall_time_s", "run_dir"}
# Each attempt's clock times and duration (the attempts history, pyramid_lab/runs/recorder.py).
ATTEMPT_TIMES = {"started", "ended", "wall_time_s"}


def run(
    tmp_path: Path, name: str, tiny_overrides: list[str], seed: int
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    out = tmp_path / name
    cfg = compose_config(
        [
            *tiny_overrides,
            "trainer.max_epochs=2",
            "trainer.deterministic=true",
            "tricks=augment",
            "model.shakedrop=0.5",
            f"seed={seed}",
        ],
        out,
    )
    record = train(cfg)
    assert record["status"] == "completed" and record["epochs"] == 2
    state = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    return record, state["state_dict"]


def comparable(record: dict[str, Any]) -> dict[str, Any]:
    kept = {key: value for key, value in record.items() if key not in NOT_COMPARED}
    if "attempts" in kept:
        kept["attempts"] = [{k: v for k, v in a.items() if k not in ATTEMPT_TIMES} for a in kept["attempts"]]
    return kept


def numbers(value: Any) -> list[float]:
    """Every number inside a record, in order (nested lists and dicts included)."""
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, dict):
        return [n for key in sorted(value) for n in numbers(value[key])]
    if isinstance(value, (list, tuple)):
        return [n for item in value for n in numbers(item)]
    return []


def test_same_seed_same_metrics_and_weights_different_seed_differs(tmp_path, tiny_overrides):
    first, first_weights = run(tmp_path, "a", tiny_overrides, seed=7)
    second, second_weights = run(tmp_path, "b", tiny_overrides, seed=7)

    assert comparable(first) == comparable(second)  # exact: ==, not approx
    assert all(math.isfinite(n) for n in numbers(comparable(first)))
    assert len(first["history"]) == 2 and "train/loss" in first["history"][-1]

    assert first_weights.keys() == second_weights.keys()
    # Buffers too (BatchNorm running statistics, num_batches_tracked).
    for key, tensor in first_weights.items():
        assert torch.equal(tensor, second_weights[key]), key

    other, other_weights = run(tmp_path, "c", tiny_overrides, seed=8)
    assert numbers(comparable(other)) != numbers(comparable(first))
    assert any(not torch.equal(t, other_weights[k]) for k, t in first_weights.items())
