"""A sweep's log says each warning once, and none of the third-party notices that say nothing
about the run (pyramid_lab.launch.warnings_filter)."""

from __future__ import annotations

import re
import warnings

import pytest

from pyramid_lab.launch import warnings_filter
from tests.helpers import TINY, run_app

# Seen in every job of a sweep before pyramid_lab.launch.warnings_filter (issue 21).
NOISE = (
    "LeafSpec",
    "litlogger",
    "is not supported by the model summary",
    "heartbeat_interval",
)


@pytest.mark.slow
def test_a_two_job_sweep_says_each_warning_once_and_no_noise(tmp_path):
    # The default logger (TensorBoard) and the model summary on; bf16-mixed on any CPU, which the
    # summary used to warn about; the smoke batches are fewer than log_every_n_steps: a warning
    # about the run, which stays, once.
    run = [o for o in TINY if not o.startswith(("logger=", "+trainer.enable_model_summary"))]
    result = run_app(
        ["-m", *run, "trainer.precision=bf16-mixed", "seed=1,2", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert "2 of 2 jobs completed" in log
    for noise in NOISE:
        assert noise not in log, noise
    warned = re.findall(r"^\S+\.py:\d+: .*$", log, flags=re.MULTILINE)  # Lightning's warning format
    assert any("log_every_n_steps" in line for line in warned)
    assert len(warned) == len(set(warned)), warned


def test_the_filters_silence_what_they_name_and_show_the_rest_once(monkeypatch):
    optuna = pytest.importorskip("optuna")
    shown: list[str] = []
    monkeypatch.setattr(warnings, "showwarning", lambda message, *args, **kwargs: shown.append(str(message)))
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings_filter.install()
        optuna._experimental.warn_experimental_argument("heartbeat_interval")  # what RDBStorage says
        optuna._experimental.experimental_func("2.9.0")(lambda: None)()  # as fail_stale_trials says
        for _ in range(3):
            warnings.warn("something about the run", UserWarning, stacklevel=1)
            warnings.resetwarnings()  # as code between two jobs may: Python's registry forgets
            warnings_filter.install()
    assert shown == ["something about the run"]


def test_the_search_silences_optunas_notices_only(monkeypatch):
    """The sweeper and the report's search section call silence(): Optuna's experimental notices
    go, every other warning stays, shown as Python shows it (no show-once outside the command)."""
    optuna = pytest.importorskip("optuna")
    shown: list[str] = []
    show = lambda message, *args, **kwargs: shown.append(str(message))  # noqa: E731
    monkeypatch.setattr(warnings, "showwarning", show)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings_filter.silence()
        optuna._experimental.experimental_class("3.0.0")(type("Sampler", (), {}))()
        optuna._experimental.warn_experimental_argument("constraints_func")
        for _ in range(2):
            warnings.warn("something about the run", UserWarning, stacklevel=1)
    assert shown == ["something about the run"] * 2 and warnings.showwarning is show
