"""Bad input through the command line, one case at a time: one line naming the setting, exit != 0.

Each case must end in one clear line on stderr (``error: ...`` for ours; Hydra's own message for a
config-composition error, which names the option and lists the valid ones) that names the setting
or file at fault and what would be valid; a non-zero exit; no Python traceback unless
HYDRA_FULL_ERROR=1; and no metrics.json that says completed.

Everything runs at ``scale=smoke`` (digits, two training steps), so a case whose check is missing
finishes its "training" in seconds and fails the test instead of hanging it. Every subprocess
imports torch and Lightning (about 5 s here), hence the ``slow`` marks. The CLI prints any
ConfigError as its one ``error:`` line and exits 2 (the command-line cases below check that path);
the other cases call ``train`` on the config the command line composes (``refused``), which proves
the same: a one-line ConfigError, and a record that does not say completed.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from pyramid_lab.build import check_run_settings, instantiate
from pyramid_lab.errors import ConfigError
from tests.helpers import CONFIG_DIR, TINY, compose_config, run_app, start_app
from tests.test_data_cinic10 import make_cinic, write_png

BASE = ["experiment=quickstart", "scale=smoke", "logger=none"]
CINIC10_URL = "https://datashare.ed.ac.uk/bitstream/handle/10283/3192/CINIC-10.tar.gz"


def run_cli(
    tmp_path: Path, *overrides: str, run_dir: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    run_dir = run_dir or tmp_path / "run"
    args = [*BASE, f"hydra.run.dir={run_dir}", *overrides]
    return run_app(args, tmp_path, timeout=120, env={"HYDRA_FULL_ERROR": None, **(env or {})})


def error_line(result: subprocess.CompletedProcess, run_dir: Path) -> str:
    """The one ``error:`` line, after checking the rest of the contract."""
    context = result.stderr[-3000:]
    assert result.returncode != 0, context
    assert "Traceback" not in result.stderr, context
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, context
    assert not_completed(run_dir)
    return lines[0]


def refused(tmp_path: Path, *overrides: str, recorded: bool = True) -> str:
    """``error: MESSAGE``, as the CLI would print it, for the ConfigError that ``train`` raises
    on BASE + overrides; the run's record says failed (``recorded=False``: a refusal before the
    record is written, where none may exist)."""
    from pyramid_lab.train import train

    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError) as info:
        train(compose_config([*BASE, *overrides], run_dir))
    message = str(info.value)
    assert "\n" not in message, message
    record = run_dir / "metrics.json"
    if recorded or record.exists():
        assert json.loads(record.read_text())["status"] == "failed"
    return f"error: {message}"


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
    # A missing ckpt_path is refused before the run folder gets a record.
    recorded = not overrides[0].startswith("ckpt_path=")
    assert expected in refused(tmp_path, *overrides, recorded=recorded)


# Values no run can use, refused before anything is written (pyramid_lab.build.check_run_settings,
# the PyramidNet's depth rule): composed as the command line composes them, no subprocess each.
@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("trainer.max_epochs=0", "trainer.max_epochs=0 must be an integer >= 1"),
        ("trainer.max_epochs=-1", "trainer.max_epochs=-1 must be an integer >= 1 (-1, until stopped, is not"),
        ("trainer.max_epochs=-5", "trainer.max_epochs=-5 must be an integer >= 1"),
        ("seed=-1", "seed=-1 must be an integer in [0, 2**32 - 1]"),
        ("seed=4294967296", "seed=4294967296 must be an integer in [0, 2**32 - 1]"),
        ("optimizer.lr=inf", "optimizer.lr=inf must be a finite number"),
        ("optimizer.lr=nan", "optimizer.lr=nan must be a finite number"),
        ("optimizer.momentum=-inf", "optimizer.momentum=-inf must be a finite number"),
        ("optimizer.momentum=-0.5", "optimizer.momentum=-0.5 must be >= 0"),
        ("optimizer.weight_decay=inf", "optimizer.weight_decay=inf must be a finite number"),
        ("trainer.precision=foo", "trainer.precision='foo' is unknown; valid: auto, 64, 32, 16, "),
        (
            "model.depth=15",
            "model.depth=15 cannot be built with basic units: depth must be 6n + 2; nearest valid: 14, 20",
        ),
        ("model.depth=30", "nearest valid: 26, 32"),
        ("resume=maybe", "resume='maybe' is unknown; valid: true, false, force"),
    ],
)
def test_a_value_no_run_can_use_is_refused_naming_the_key_and_the_valid_range(tmp_path, override, expected):
    cfg = compose_config([*TINY, override], tmp_path)
    with pytest.raises(ConfigError) as refused:
        check_run_settings(cfg)
        instantiate(cfg.model)
    assert expected in str(refused.value) and "\n" not in str(refused.value)


def test_valid_values_pass(tmp_path):
    # The control: the edges of each range are accepted (precision 16 as the command line parses it).
    overrides = ["seed=0", "trainer.max_epochs=1", "optimizer.momentum=0", "trainer.precision=16"]
    check_run_settings(compose_config([*TINY, *overrides], tmp_path))
    check_run_settings(compose_config([*TINY, "seed=4294967295", "trainer.precision=bf16-mixed"], tmp_path))


def test_zero_epochs_are_recorded_failed_and_a_finished_record_is_left_alone(tmp_path):
    from pyramid_lab.train import train

    with pytest.raises(ConfigError, match="trainer.max_epochs=0"):
        train(compose_config([*TINY, "trainer.max_epochs=0"], tmp_path / "run"))
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())  # was: completed, test/acc 0
    assert record["status"] == "failed" and "trainer.max_epochs=0 must be" in record["error"]
    # A folder that already holds a run: the refused rerun writes nothing into its record.
    done = tmp_path / "done"
    done.mkdir()
    (done / "metrics.json").write_text(json.dumps({"status": "completed", "test/acc": 0.9}))
    with pytest.raises(ConfigError, match="trainer.max_epochs=0"):
        train(compose_config([*TINY, "trainer.max_epochs=0"], done))
    assert json.loads((done / "metrics.json").read_text()) == {"status": "completed", "test/acc": 0.9}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("override", "expected"),
    [
        # Both were Hydra's multi-line instantiation error.
        ("trainer.max_epochs=-5", "trainer.max_epochs=-5 must be an integer >= 1"),
        ("trainer.precision=foo", "trainer.precision='foo' is unknown; valid: auto, "),
    ],
    ids=["epochs", "precision"],
)
def test_refused_values_through_the_command_line(tmp_path, override, expected):
    result = run_cli(tmp_path, override)
    assert expected in error_line(result, tmp_path / "run")
    assert result.returncode == 2  # a ConfigError
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["status"] == "failed" and expected in record["error"]


@pytest.mark.slow
def test_ctrl_c_names_the_run_folder_and_the_command_that_resumes_it(tmp_path):
    run_dir = tmp_path / "run"
    args = [*BASE, "trainer.max_epochs=1000", f"hydra.run.dir={run_dir}"]
    process = start_app(args, tmp_path, env={"HYDRA_FULL_ERROR": None})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (run_dir / "checkpoints" / "last.ckpt").exists():
        time.sleep(0.2)  # training: an epoch done
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    (line,) = [text for text in stderr.splitlines() if text.startswith("interrupted:")]
    command = " ".join(
        ["python -m pyramid_lab", *BASE, "trainer.max_epochs=1000", f"hydra.run.dir={run_dir}"]
    )
    assert line == f"interrupted: run folder {run_dir}; resume it with: {command}"
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "interrupted"


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


CINIC = ("data=cinic10", "data.dataset.allow_subset=true")


def cinic_run(tmp_path: Path, root: Path) -> subprocess.CompletedProcess:
    return run_cli(tmp_path, *CINIC, f"data.dataset.root={root}")


def cinic_refused(tmp_path: Path, root: Path) -> str:
    return refused(tmp_path, *CINIC, f"data.dataset.root={root}")


@pytest.fixture
def cinic_root(tmp_path) -> Path:
    """A CINIC-10 layout with one 32x32 PNG per class and split (30 images)."""
    root = tmp_path / "cinic10"
    make_cinic(root, per_class=1)
    return root


@pytest.mark.slow
def test_cinic10_root_that_does_not_exist_says_how_to_get_it(tmp_path):
    line = error_line(cinic_run(tmp_path, Path("/nonexistent")), tmp_path / "run")
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "failed"
    assert "data.dataset.root=/nonexistent does not exist" in line
    assert "data.dataset.download=true" in line and CINIC10_URL in line
    assert "train/, valid/, test/" in line


@pytest.mark.slow
def test_cinic10_missing_split(tmp_path, cinic_root):
    shutil.rmtree(cinic_root / "valid")
    line = cinic_refused(tmp_path, cinic_root)
    assert f"data.dataset.root={cinic_root} has no valid/ split folder" in line
    assert "train/, valid/, test/" in line


@pytest.mark.slow
def test_cinic10_missing_class(tmp_path, cinic_root):
    shutil.rmtree(cinic_root / "train" / "cat")
    line = cinic_refused(tmp_path, cinic_root)
    assert f"{cinic_root / 'train'} has the wrong class folders (missing cat)" in line
    assert "airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck" in line


@pytest.mark.slow
def test_cinic10_class_folders_differ_between_splits(tmp_path, cinic_root):
    (cinic_root / "test" / "cat").rename(cinic_root / "test" / "kitten")
    line = cinic_refused(tmp_path, cinic_root)
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
    line = cinic_refused(tmp_path, cinic_root)
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
    line = cinic_refused(tmp_path, cinic_root)
    assert f"{bad} is a {described} image; expected 32x32 RGB" in line


@pytest.mark.slow
def test_cinic10_tiny_folder_trains(tmp_path, cinic_root):
    """The control: the same tiny folder, undamaged, runs to completion."""
    result = cinic_run(tmp_path, cinic_root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "completed"
