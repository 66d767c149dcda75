"""Bad input through the command line, one case at a time: one line naming the setting, exit != 0.

Each case must end in one clear line on stderr (``error: ...`` for ours; Hydra's own message for a
config-composition error, which names the option and lists the valid ones) that names the setting
or file at fault and what would be valid; a non-zero exit; no Python traceback unless
HYDRA_FULL_ERROR=1; and no metrics.json that says completed.

Everything runs at ``scale=smoke`` (digits, two training steps), so a case whose check is missing
finishes its "training" in seconds and fails the test instead of hanging it. Every subprocess
imports torch and Lightning (about 5 s here), hence the ``slow`` marks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import CONFIG_DIR
from tests.test_data_cinic10 import make_cinic, write_png

BASE = ["experiment=quickstart", "scale=smoke", "logger=none"]
CINIC10_URL = "https://datashare.ed.ac.uk/bitstream/handle/10283/3192/CINIC-10.tar.gz"


def run_cli(
    tmp_path: Path, *overrides: str, run_dir: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    run_dir = run_dir or tmp_path / "run"
    environ = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    environ.update({"OMP_NUM_THREADS": "1", **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "pyramid_lab", *BASE, f"hydra.run.dir={run_dir}", *overrides],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=environ,
    )


def error_line(result: subprocess.CompletedProcess, run_dir: Path) -> str:
    """The one ``error:`` line, after checking the rest of the contract."""
    context = result.stderr[-3000:]
    assert result.returncode != 0, context
    assert "Traceback" not in result.stderr, context
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, context
    assert not_completed(run_dir)
    return lines[0]


def not_completed(run_dir: Path) -> bool:
    record = run_dir / "metrics.json"
    return not record.exists() or json.loads(record.read_text())["status"] != "completed"


# --- configuration -------------------------------------------------------------------------------


def test_unknown_group_option_names_it_and_lists_the_valid_ones(tmp_path):
    result = run_cli(tmp_path, "activation=swish")
    assert result.returncode != 0
    assert "Could not find 'activation/swish'" in result.stderr
    valid = sorted(p.stem for p in (CONFIG_DIR / "activation").glob("*.yaml"))
    assert all(f"\t{option}\n" in result.stderr for option in valid), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_wrong_type(tmp_path):
    line = error_line(run_cli(tmp_path, "trainer.max_epochs=abc"), tmp_path / "run")
    assert "trainer.max_epochs" in line and "abc" in line and "integer" in line


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["data.batch_size=0"], "data.batch_size=0 must be a positive integer"),
        (["optimizer.lr=0"], "optimizer.lr=0 must be > 0"),
        (["model.depth=5"], "model.depth=5 is too small for basic units: need depth >= 8"),
        (
            ["model.bottleneck=true", "model.depth=10"],
            "model.depth=10 is too small for bottleneck units: need depth >= 11",
        ),
        (["model.alpha=-1"], "model.alpha=-1 must be >= 0"),
        (["activation.name=swish"], "'swish' is unknown; valid: relu, leaky_relu, selu, hardswish"),
        (["budget.max_params=1000"], "over budget.max_params=1,000"),
        (["ckpt_path=/nonexistent.ckpt"], "ckpt_path=/nonexistent.ckpt does not exist"),
    ],
    ids=["batch_size", "lr", "depth_basic", "depth_bottleneck", "alpha", "activation", "budget", "ckpt_path"],
)
def test_bad_setting(tmp_path, overrides, expected):
    line = error_line(run_cli(tmp_path, *overrides), tmp_path / "run")
    assert expected in line


@pytest.mark.slow
def test_sam_with_fp16_mixed_precision(tmp_path):
    line = error_line(run_cli(tmp_path, "optimizer=sam", "trainer.precision=16-mixed"), tmp_path / "run")
    assert "trainer.precision=16-mixed" in line and "bf16-mixed" in line


@pytest.mark.slow
def test_output_folder_that_cannot_be_created(tmp_path):
    # Tests run as root, which chmod does not stop: a folder under a regular file really fails.
    (tmp_path / "afile").write_text("a file, not a folder\n")
    run_dir = tmp_path / "afile" / "run"
    line = error_line(run_cli(tmp_path, run_dir=run_dir), run_dir)
    assert "hydra.run.dir" in line and str(run_dir) in line


@pytest.mark.slow
def test_full_traceback_on_request(tmp_path):
    result = run_cli(tmp_path, "optimizer.lr=0", env={"HYDRA_FULL_ERROR": "1"})
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "optimizer.lr=0 must be > 0" in result.stderr


# --- CINIC-10 folders ----------------------------------------------------------------------------


def cinic_run(tmp_path: Path, root: Path) -> subprocess.CompletedProcess:
    return run_cli(tmp_path, "data=cinic10", f"data.dataset.root={root}", "data.dataset.allow_subset=true")


@pytest.fixture
def cinic_root(tmp_path) -> Path:
    """A CINIC-10 layout with one 32x32 PNG per class and split (30 images)."""
    root = tmp_path / "cinic10"
    make_cinic(root, per_class=1)
    return root


@pytest.mark.slow
def test_cinic10_root_that_does_not_exist_says_how_to_get_it(tmp_path):
    line = error_line(cinic_run(tmp_path, Path("/nonexistent")), tmp_path / "run")
    assert "data.dataset.root=/nonexistent does not exist" in line
    assert "data.dataset.download=true" in line and CINIC10_URL in line
    assert "train/, valid/, test/" in line


@pytest.mark.slow
def test_cinic10_missing_split(tmp_path, cinic_root):
    shutil.rmtree(cinic_root / "valid")
    line = error_line(cinic_run(tmp_path, cinic_root), tmp_path / "run")
    assert f"data.dataset.root={cinic_root} has no valid/ split folder" in line
    assert "train/, valid/, test/" in line


@pytest.mark.slow
def test_cinic10_missing_class(tmp_path, cinic_root):
    shutil.rmtree(cinic_root / "train" / "cat")
    line = error_line(cinic_run(tmp_path, cinic_root), tmp_path / "run")
    assert f"{cinic_root / 'train'} has the wrong class folders (missing cat)" in line
    assert "airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck" in line


@pytest.mark.slow
def test_cinic10_class_folders_differ_between_splits(tmp_path, cinic_root):
    (cinic_root / "test" / "cat").rename(cinic_root / "test" / "kitten")
    line = error_line(cinic_run(tmp_path, cinic_root), tmp_path / "run")
    expected = f"{cinic_root / 'test'} has the wrong class folders (missing cat; unexpected kitten)"
    assert expected in line
    # Found before any split is decoded (CINIC-10's train and valid are minutes of decoding).
    assert not list(cinic_root.glob(".pyramid_lab_cache/*.npy"))


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_cinic10_corrupt_png_is_named(tmp_path, cinic_root, damage):
    bad = cinic_root / "valid" / "horse" / "img_000.png"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"not a png" * 20)
    line = error_line(cinic_run(tmp_path, cinic_root), tmp_path / "run")
    assert f"{bad} is not a readable PNG" in line and "replace or delete it" in line


@pytest.mark.slow
@pytest.mark.parametrize(
    ("shape", "mode", "described"),
    [
        ((31, 32, 3), "RGB", "32x31 RGB"),
        ((64, 64, 3), "RGB", "64x64 RGB"),
        ((32, 32, 4), "RGBA", "32x32 RGBA"),
    ],
    ids=["31x32", "64x64", "rgba"],
)
def test_cinic10_image_not_32x32_rgb_is_named(tmp_path, cinic_root, shape, mode, described):
    bad = cinic_root / "train" / "deer" / "img_000.png"
    write_png(bad, np.zeros(shape, np.uint8), mode=mode)
    line = error_line(cinic_run(tmp_path, cinic_root), tmp_path / "run")
    assert f"{bad} is a {described} image; expected 32x32 RGB" in line


@pytest.mark.slow
def test_cinic10_tiny_folder_trains(tmp_path, cinic_root):
    """The control: the same tiny folder, undamaged, runs to completion."""
    result = cinic_run(tmp_path, cinic_root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "completed"
