"""python -m pyramid_lab.bench: it runs, its records are complete and consistent. No timing
assertions: the machine is shared and noisy (the targets are the benchmark's own PASS/FAIL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import partial

import pytest
import torch

from pyramid_lab.bench.cli import check_targets, main, make_plan, table
from pyramid_lab.bench.data import bench_data
from pyramid_lab.bench.timing import PeakMemory, Record, Windows
from pyramid_lab.bench.train import MODES, ModelSpec, Steps, bench_model
from pyramid_lab.models.pyramidnet import PyramidNet

FIELDS = {"name", "device", "images_per_s", "batch_size", "peak_memory_mb", "ratio", "reference"}
CPU = torch.device("cpu")


def bench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "pyramid_lab.bench", *args], env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def check_records(records: list[dict], device: str) -> None:
    names = {r["name"] for r in records}
    assert len(names) == len(records)
    for r in records:
        assert FIELDS <= r.keys(), r["name"]
        assert r["device"] == device
        assert r["images_per_s"] > 0 and r["batch_size"] > 0
        assert r["peak_memory_mb"] is None or r["peak_memory_mb"] >= 0
        assert (r["ratio"] is None) == (r["reference"] is None), r["name"]
        if r["reference"] is not None:
            reference = next(x for x in records if x["name"] == r["reference"])
            assert r["ratio"] == pytest.approx(r["images_per_s"] / reference["images_per_s"])
            assert r["ratio"] > 0


@pytest.mark.slow
def test_quick_bench_writes_complete_records(tmp_path):
    out = tmp_path / "bench.json"
    result = bench("--quick", "--device", "cpu", "--threads", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    payload = json.loads(out.read_text())
    header, records = payload["header"], payload["records"]
    assert {"date", "device_name", "torch", "cpu_count", "plan"} <= header.keys()
    check_records(records, "cpu")
    by_name = {r["name"]: r for r in records}
    for name in ("data/ours/workers0", "data/torchvision/workers0", "data/ours/workers2",
                 "data/torchvision/workers2"):
        assert name in by_name
    assert by_name["data/ours/workers0"]["reference"] == "data/torchvision/workers0"
    assert by_name["data/ours/workers0"]["passed"] in (True, False)  # the 10x target, on a CPU
    for spec in make_plan(CPU, quick=True).models:
        prefix = f"train/{spec.name}/fp32"
        assert by_name[f"{prefix}/lightning"]["reference"] == f"{prefix}/plain"
        assert by_name[f"{prefix}/lightning"]["passed"] in (True, False)
    sam = next(r for r in records if r["name"].endswith("/lightning-sam"))
    assert sam["reference"].endswith("/lightning")
    assert any(r["name"].endswith("/lightning-datamodule") for r in records)
    assert all(r["memory"].startswith("cpu peak RSS") for r in records)
    assert "images/s" in result.stdout and header["date"] in result.stdout
    assert ("PASS" in result.stdout) or ("FAIL" in result.stdout)


def test_data_bench_compares_ours_with_torchvision():
    ours, reference = bench_data(CPU, batch_size=16, num_workers=0, warmup=1, batches=2, repeats=2)
    assert ours.name == "data/ours/workers0" and reference.name == "data/torchvision/workers0"
    check_records([vars(ours), vars(reference)], "cpu")
    assert len(ours.details["times_s"]) == 2


def test_model_bench_records_plain_lightning_sam_and_datamodule():
    spec = ModelSpec("tiny", partial(PyramidNet, depth=11, alpha=4, bottleneck=True, shakedrop=0.5))
    records = bench_model(spec, [MODES["fp32"]], CPU, batch_size=4, steps=Steps(1, 1, 2),
                          with_sam=True, with_datamodule=True)
    assert [r.name.rsplit("/", 1)[-1] for r in records] == [
        "plain", "lightning", "lightning-sam", "lightning-datamodule"]
    check_records([vars(r) for r in records], "cpu")
    assert not any(r.details["compile_fell_back"] for r in records)


def test_targets_apply_by_device_and_show_in_the_table():
    def record(name: str, ratio: float | None, **details) -> Record:
        return Record(name, "cpu", 100.0, 256, 1.0, "cpu peak RSS rise",
                      reference=None if ratio is None else "ref", ratio=ratio, details=details)

    records = [record("data/ours/workers0", 12.0), record("data/ours/workers2", 3.0),
               record("train/m/fp32/lightning", 0.9, precision="32-true", model="m"),
               record("train/m/fp32/lightning-sam", 0.5)]
    check_targets(records, make_plan(CPU, quick=True), CPU, num_workers=0)
    assert [r.passed for r in records] == [True, None, False, None]
    header = {"date": "today", "plan": "quick", "device": "cpu", "device_name": "x",
              "cpus_usable": 2, "cpu_count": 2, "torch_threads": 1, "torch": "2",
              "pytorch_lightning": "2", "python": "3"}
    text = table(records, header)
    assert text.count("PASS") == 1 and text.count("FAIL") == 1 and "today" in text


def test_windows_cover_whole_steps_after_warmup():
    windows = Windows(CPU, warmup=2, steps=3, repeats=2)
    assert windows.total_steps == 2 + 3 * 2 + 1
    for _ in range(windows.total_steps):
        windows.step_starts()
    assert len(windows.times()) == 2
    short = Windows(CPU, warmup=1, steps=1, repeats=2)
    short.step_starts()
    with pytest.raises(RuntimeError, match="steps ran"):
        short.times()


def test_cpu_peak_memory_sees_an_allocation():
    with PeakMemory(CPU) as memory:
        block = torch.ones(64 * 2**20, dtype=torch.uint8)  # 64 MiB, touched
        del block
    assert memory.mb is not None and memory.mb >= 60
    assert memory.kind.startswith("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_without_a_device_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--device", "cuda"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --device cuda but torch.cuda.is_available() is False; use --device cpu"]


@pytest.mark.parametrize("args, message", [
    (["--modes", "fp32,fp8"], "--modes fp8 unknown; choose from fp32, bf16-cl, bf16-cl-compile"),
    (["--num-workers", "-1"], "--num-workers=-1 must be an integer >= 0"),
    (["--threads", "0"], "--threads=0 must be an integer >= 1"),
    (["--out", "/no/such/folder/b.json"], "--out /no/such/folder/b.json: folder /no/such/folder "
                                          "does not exist"),
])
def test_bad_arguments_are_refused_in_one_line(capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["--device", "cpu", *args])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {message}"]


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_quick_bench_on_cuda_runs_every_mode(tmp_path):
    out = tmp_path / "bench.json"
    result = bench("--quick", "--device", "cuda", "--out", str(out), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    records = json.loads(out.read_text())["records"]
    check_records(records, "cuda")
    for mode in MODES:
        assert any(f"/{mode}/lightning" in r["name"] for r in records)
    assert not any(r["details"].get("compile_fell_back") for r in records)
    assert any(r["name"].endswith("/lightning-nocheck") for r in records)
