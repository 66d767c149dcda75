"""trainer.precision=auto: bf16-mixed on a CPU with native bf16 (AMX, AVX512-BF16), else fp32."""

from __future__ import annotations

import logging

import pytest
from hydra.utils import instantiate

from pyramid_lab.training import precision
from pyramid_lab.training.precision import cpu_bf16_flags, resolve_precision
from tests.helpers import compose_config

SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
EPYC_AVX2 = "processor\t: 0\nflags\t\t: fpu sse avx2 fma avx512_fp16_typo\n"


@pytest.fixture
def cpu_bf16(monkeypatch):
    """Pretend this CPU has (True) or lacks (False) native bf16; the log-once cache starts empty."""

    def pretend(native: bool) -> None:
        precision._log_once.cache_clear()
        monkeypatch.setattr(precision, "native_cpu_bf16", lambda: (native, "pretended"))

    yield pretend
    precision._log_once.cache_clear()


def test_native_bf16_flags_are_read_from_cpuinfo():
    assert cpu_bf16_flags(SAPPHIRE_RAPIDS) == ["amx_bf16", "avx512_bf16"]
    assert cpu_bf16_flags("flags\t: avx2 avx512f avx512_bf16\n") == ["avx512_bf16"]
    assert cpu_bf16_flags(EPYC_AVX2) == []
    assert cpu_bf16_flags("no flags line at all") == []


@pytest.mark.parametrize("native, expected", [(True, "bf16-mixed"), (False, "32-true")])
def test_auto_picks_bf16_only_where_the_cpu_has_it(cpu_bf16, native, expected):
    cpu_bf16(native)
    assert resolve_precision("auto", "cpu") == expected


@pytest.mark.parametrize("native", [True, False])
def test_an_explicit_precision_is_used_as_given(cpu_bf16, native):
    cpu_bf16(native)
    for given in ("32-true", "bf16-mixed", "16-mixed", 32):
        assert resolve_precision(given, "cpu") == given


def test_auto_off_the_cpu_stays_fp32(cpu_bf16):
    cpu_bf16(True)
    assert resolve_precision("auto", "gpu") == "32-true"


def test_the_choice_is_logged_once(cpu_bf16, caplog):
    cpu_bf16(True)
    with caplog.at_level(logging.INFO, logger=precision.__name__):
        for _ in range(3):
            resolve_precision("auto", "cpu")
    lines = [r.getMessage() for r in caplog.records if r.name == precision.__name__]
    assert len(lines) == 1
    assert "bf16-mixed" in lines[0] and "pretended" in lines[0] and "trainer.precision=" in lines[0]


@pytest.mark.parametrize(
    "overrides, native, expected",
    [
        (["trainer=cpu"], True, "bf16-mixed"),
        (["trainer=cpu"], False, "32-true"),
        (["trainer=cpu", "trainer.precision=32-true"], True, "32-true"),
        (["trainer=default", "trainer.accelerator=cpu"], True, "bf16-mixed"),
        (["trainer=cpu", "scale=smoke"], True, "32-true"),  # smoke runs force fp32
    ],
)
def test_the_composed_trainer_gets_the_resolved_precision(tmp_path, cpu_bf16, overrides, native, expected):
    cpu_bf16(native)
    cfg = compose_config([*overrides, "logger=none"], tmp_path)
    trainer = instantiate(cfg.trainer, logger=False, enable_progress_bar=False)
    assert trainer.precision == expected


def test_this_machine_gets_what_its_cpu_can_do(tmp_path):
    cfg = compose_config(["trainer=cpu", "logger=none"], tmp_path)
    trainer = instantiate(cfg.trainer, logger=False, enable_progress_bar=False)
    assert trainer.precision == ("bf16-mixed" if cpu_bf16_flags() else "32-true")
