"""The architecture as the folder list shows it: entry points on top, one concern per folder, and
imports in one direction (the parts know neither Lightning nor Hydra; the report no torch)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pyramid_lab"


def test_the_top_level_holds_the_entry_points_only():
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert modules == ["__init__.py", "__main__.py", "build.py", "errors.py", "evaluate.py", "train.py"]


@pytest.mark.parametrize(
    "package, forbidden",
    [
        ("pyramid_lab.models", ["pytorch_lightning", "lightning", "hydra", "omegaconf"]),
        ("pyramid_lab.optim", ["pytorch_lightning", "lightning", "hydra", "omegaconf"]),
        ("pyramid_lab.data", ["hydra", "omegaconf"]),
        ("pyramid_lab.report", ["torch"]),
        ("pyramid_lab.runs.record_file", ["torch"]),
    ],
)
def test_imports_go_one_way(package, forbidden):
    code = f"import sys, {package}; print(' '.join(m for m in {forbidden!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"{package} imports {result.stdout.strip()}"
