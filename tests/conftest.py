"""Fixtures shared by the tests; plain helpers are in tests/helpers.py."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import SMALL_MODEL, TINY, run_app
from tests.slurm_cluster import SlurmCluster, unavailable_reason

# Tests must not compete for the machine's 2 cores with themselves.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def tiny_overrides() -> list[str]:
    """A config that trains a 3-unit PyramidNet on two digits batches: a second or two."""
    return list(TINY)


@pytest.fixture(scope="session")
def table5_sweep(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """Table 5's sweep as a user types it at smoke scale, with two seeds per row (the report's
    paired comparison needs them), on SMALL_MODEL: ``(sweep folder, the finished command)``.

    Made once per session: tests/test_sweeps.py checks its rows and records, and
    tests/test_significance.py reports on it. Tests that only read it leave it as it is."""
    root = tmp_path_factory.mktemp("table5")
    sweep = root / "sweep"
    args = [
        "experiment=table5_activations",
        "scale=smoke",
        "seed=1,2",
        *SMALL_MODEL,
        "~callbacks.progress_bar",
        "+trainer.enable_progress_bar=false",
        f"hydra.sweep.dir={sweep}",
    ]
    return sweep, run_app(args, root, timeout=1200)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> Iterator[SlurmCluster]:
    """The one-node SLURM cluster (tests/slurm_cluster.py), started once per session for every
    ``slurm`` test. Skips them with the reason where it cannot start, unless
    PYRAMID_LAB_REQUIRE_SLURM=1 (CI), which makes that a failure."""
    reason = unavailable_reason()
    if reason is None:
        try:
            import hydra_plugins.hydra_submitit_launcher  # noqa: F401
        except ImportError:
            reason = "hydra-submitit-launcher is not installed: pip install -e '.[slurm]'"
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    if reason is None:
        try:
            cluster.start()
        except (RuntimeError, OSError, subprocess.SubprocessError) as error:
            reason = f"the local SLURM cluster did not start: {error}"
    if reason is not None:
        if os.environ.get("PYRAMID_LAB_REQUIRE_SLURM") == "1":
            pytest.fail(f"PYRAMID_LAB_REQUIRE_SLURM=1 but {reason}")
        pytest.skip(reason)
    yield cluster
    cluster.stop()
