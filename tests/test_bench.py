"""python -m pyramid_lab.bench: windows taken in turn, records complete and consistent, every plan
runnable (the GPU plan with toy sizes on the CPU). No timing assertions on real models: the
machine is shared and noisy (the targets are the benchmark's own PASS/FAIL)."""

from __future__ import annotations

import json
import math
import statistics
import threading
import time

import pytest
import torch

from pyramid_lab.bench.cli import main, table
from pyramid_lab.bench.interleave import Clock, Windows, compare, interleave, to_record
from pyramid_lab.bench.loops import (
    MODES,
    Contender,
    ModelSpec,
    Workload,
    device_batches,
    lightning_fit,
    plain_loop,
)
from pyramid_lab.bench.plans import TINY_MODELS, check_targets, make_plan
from pyramid_lab.bench.timing import PeakMemory, Record

FIELDS = {"name", "device", "images_per_s", "batch_size", "peak_memory_mb", "ratio", "reference", "spread"}
CPU = torch.device("cpu")


def check_records(records: list[dict], device: str) -> None:
    names = {r["name"] for r in records}
    assert len(names) == len(records)
    for r in records:
        assert FIELDS <= r.keys(), r["name"]
        assert r["device"] == device
        assert r["images_per_s"] > 0 and r["batch_size"] > 0 and r["spread"] >= 0
        assert r["peak_memory_mb"] is None or r["peak_memory_mb"] >= 0
        assert (r["ratio"] is None) == (r["reference"] is None), r["name"]
        times = r["details"]["times_s"]
        assert len(times) >= 3 and all(t > 0 for t in times)
        if r["reference"] is not None:
            assert r["reference"] in names and r["ratio"] > 0
            pairs = r["details"].get("window_ratios")
            if pairs is not None:  # paired: the median of the window-by-window ratios
                assert r["ratio"] == pytest.approx(statistics.median(pairs))


def test_windows_are_taken_in_turn_one_configuration_at_a_time():
    log: list[tuple[str, int]] = []
    running = threading.Lock()

    def contender(name: str):
        def run(clock: Clock) -> str:
            step = 0
            while clock.step_starts():
                assert running.acquire(blocking=False), "two configurations ran at once"
                time.sleep(0.002)
                log.append((name, len(clock.window_times)))
                running.release()
                step += 1
            return f"{name} ran {step} steps"

        return run

    windows = Windows(warmup=2, window_s=0.01, count=4, min_steps=2)
    results = interleave({"A": contender("A"), "B": contender("B")}, CPU, windows)
    assert results["A"].value.startswith("A ran") and len(results["B"].clock.window_times) == 4
    # Warm-ups one after the other, then windows in turn: A0 B0, B1 A1, A2 B2, B3 A3.
    timed = log[4:]
    windows_run = [key for i, key in enumerate(timed) if i == 0 or timed[i - 1] != key]
    assert windows_run == [("A", 0), ("B", 0), ("B", 1), ("A", 1), ("A", 2), ("B", 2), ("B", 3), ("A", 3)]
    assert [name for name, _ in log[:4]] == ["A", "A", "B", "B"]
    clock = results["A"].clock
    assert clock.steps_per_window >= 2 and clock.first_step_s > 0


def test_windows_are_sized_by_time_and_hold_whole_steps():
    def run(clock: Clock) -> None:
        while clock.step_starts():
            time.sleep(0.01)

    result = interleave({"A": run}, CPU, Windows(warmup=2, window_s=0.05, count=3, min_steps=1))["A"]
    clock = result.clock
    marks = clock.warmup_marks  # starts of the 2 warm-up steps and of the first timed one
    assert clock.steps_per_window == max(1, math.ceil(0.05 / (marks[2] - marks[1])))
    assert all(t >= 0.01 * clock.steps_per_window for t in clock.window_times)  # whole steps
    record = to_record("A", CPU, result, batch_size=2, group="g")
    assert record.images_per_s == pytest.approx(
        2 * result.clock.steps_per_window / sorted(result.clock.window_times)[1]
    )


def test_an_error_in_one_configuration_stops_the_group():
    def fails(clock: Clock) -> None:
        for step in range(100):
            if not clock.step_starts():
                return
            if step == 3:
                raise ZeroDivisionError("step 3")

    def fine(clock: Clock) -> None:
        while clock.step_starts():
            pass

    with pytest.raises(ZeroDivisionError, match="step 3"):
        interleave({"fine": fine, "fails": fails}, CPU, Windows(2, 0.001, 5, 1))


def test_paired_ratio_is_the_median_of_the_window_ratios():
    def record(name: str, rates: list[float]) -> Record:
        return Record(
            name,
            "cpu",
            sorted(rates)[len(rates) // 2],
            1,
            None,
            "",
            details={"group": "g", "interleaved": True, "window_images_per_s": rates},
        )

    a, b = record("a", [10, 12, 8, 11, 9]), record("b", [10, 10, 10, 10, 12])
    compare(a, b)
    assert a.ratio == pytest.approx(1.0) and a.reference == "b"
    assert a.details["ratio_spread"] == pytest.approx(0.45)
    b.details["group"] = "other"  # timed apart: the ratio of the medians
    assert compare(a, b).ratio == pytest.approx(10 / 10)


@pytest.mark.parametrize(
    "native, target, passed",
    [
        (True, ">= 1.5x fp32 (native bf16)", False),
        (False, "none: emulated bf16 (no AMX/AVX512-BF16)", None),
    ],
)
def test_targets_apply_by_device_and_show_in_the_table(monkeypatch, native, target, passed):
    monkeypatch.setattr("pyramid_lab.bench.plans.native_cpu_bf16", lambda: (native, "pretended"))

    def record(name: str, ratio: float | None, reference: str | None = None, **details) -> Record:
        return Record(
            name,
            "cpu",
            100.0,
            32,
            1.0,
            "cpu peak RSS rise",
            spread=0.02,
            reference=reference,
            ratio=ratio,
            details=details,
        )

    records = [
        record("data/ours/workers0", 12.0, "data/torchvision/workers0"),
        record("data/ours/workers2", 3.0, "data/torchvision/workers2"),
        record("train/m/fp32/lightning", 0.9, "train/m/fp32/plain", precision="32-true"),
        record("train/m/bf16-cl/lightning", 1.2, "train/m/fp32/lightning", precision="bf16-mixed"),
        record("train/m/fp32/lightning-sam", 0.5, "train/m/fp32/lightning"),
    ]
    check_targets(records, make_plan("quick", CPU, native_bf16=native), CPU, num_workers=0)
    assert [r.passed for r in records] == [True, None, False, passed, None]
    assert records[3].target == target
    header = {
        "date": "today",
        "plan": "quick",
        "device": "cpu",
        "device_name": "x",
        "cpus_usable": 2,
        "cpu_count": 2,
        "torch_threads": 1,
        "torch": "2",
        "pytorch_lightning": "2",
        "python": "3",
    }
    text = table(records, header)
    assert text.count("FAIL") == 1 + (passed is False) and "today" in text and target in text


@pytest.mark.slow  # ~10 s on an idle 2-core CPU: seven fits, one compiled (eager backend)
def test_the_gpu_plan_runs_with_tiny_sizes_on_the_cpu(tmp_path, capsys):
    out = tmp_path / "bench.json"
    main(
        [
            "--plan",
            "gpu",
            "--tiny",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--compile-backend",
            "eager",
            "--out",
            str(out),
        ]
    )
    payload = json.loads(out.read_text())
    records, header = payload["records"], payload["header"]
    assert header["plan"].startswith("gpu (tiny)") and header["elapsed_s"] > 0
    check_records(records, "cpu")
    by_name = {r["name"]: r for r in records}
    prefix = "train/tiny_pyramidnet11b_a4+shakedrop/"
    expected = {
        "fp32/plain": None,
        "fp32/lightning": "fp32/plain",
        "bf16-cl/plain": "fp32/plain",
        "bf16-cl/lightning": "bf16-cl/plain",
        "bf16-cl-compile/lightning": "bf16-cl/lightning",
        "bf16-cl/lightning-sam": "bf16-cl/lightning",
        "bf16-cl/lightning-datamodule": "bf16-cl/lightning",
    }
    for key, reference in expected.items():
        r = by_name[prefix + key]
        assert r["reference"] == (reference and prefix + reference)
        if reference is not None:  # timed in turn with its reference
            assert len(r["details"]["window_ratios"]) == len(r["details"]["times_s"])
    compiled = by_name[prefix + "bf16-cl-compile/lightning"]
    assert compiled["details"]["compile_s"] >= 0 and not compiled["details"]["compile_fell_back"]
    assert {"data/ours/workers0", "data/torchvision/workers0"} <= by_name.keys()
    for policy in ("none", "autoaugment", "randaugment", "trivialaugment", "cutout"):
        r = by_name[f"data/policy/{policy}"]  # each policy's pipeline against the one without
        assert r["details"]["policy"] == policy
        assert r["reference"] == (None if policy == "none" else "data/policy/none")
    for side in ("ours", "torchvision"):  # one torch thread each, the same augmentation
        details = by_name[f"data/{side}/workers0"]["details"]
        assert details["torch_threads"] == 1 and details["augment"].startswith("crop (pad 4) + flip True")
    text = capsys.readouterr()
    assert "compile" in text.out and "images/s" in text.out
    assert "training tiny_pyramidnet11b_a4+shakedrop, batch 4:" in text.err  # elapsed per item


@pytest.mark.parametrize("native, best", [(True, "bf16-cl"), (False, "fp32")])
def test_the_quick_plan_compares_precisions_compiled_lightning_and_the_plain_loop(native, best):
    plan = make_plan("quick", CPU, native_bf16=native)
    ((model, contenders),) = plan.groups
    assert {c.key: c.reference for c in contenders} == {
        "fp32/plain": None,
        "fp32/lightning": "fp32/plain",
        "bf16/lightning": "fp32/lightning",
        "bf16-cl/lightning": "fp32/lightning",
        # compiled against eager in the precision auto picks on such a CPU (issue 21)
        f"{best}-compile/lightning": f"{best}/lightning",
    }
    assert plan.windows.count >= 5 and plan.windows.window_s >= 2  # the CPU's steady windows
    full = make_plan("cpu", CPU, native_bf16=False)
    keys = {c.key: c.reference for c in full.groups[0][1]}
    assert keys["fp32-compile/lightning"] == "fp32/lightning"  # auto's precision on this CPU
    assert make_plan("cpu", CPU, native_bf16=True).groups[0][1][4].key == "bf16-cl-compile/lightning"


class Steps:
    """A clock for ``plain_loop`` and ``lightning_fit`` that lets ``n`` steps run, untimed."""

    def __init__(self, n: int) -> None:
        self.left = n

    def step_starts(self) -> bool:
        self.left -= 1
        return self.left > 0


@pytest.mark.parametrize("mode", ["fp32", "bf16-cl"])
def test_the_plain_loop_and_lightning_train_the_same_workload(mode):
    """A fair comparison: from one Workload both sides start from the same weights and take the
    same steps (BatchNorm counts them) with the same loss, optimizer, batches and precision, so
    they end with the same weights; only the driver, which is what is timed, differs."""
    nets = []

    def build() -> torch.nn.Module:
        nets.append(TINY_MODELS[1].build())  # no ShakeDrop: no random draws to tell the sides apart
        return nets[-1]

    work = Workload(ModelSpec("tiny", build), CPU, device_batches(CPU, batch_size=4, count=2))
    assert plain_loop(work, MODES[mode], Steps(3)) == {"compile_fell_back": False}
    assert lightning_fit(work, MODES[mode], Contender(mode), 100, Steps(3)) == {"compile_fell_back": False}
    plain, lightning = (net.state_dict() for net in nets)
    initial = work.net().state_dict()
    assert plain.keys() == lightning.keys()
    steps = [v for k, v in plain.items() if k.endswith("num_batches_tracked")]
    assert steps and all(v == 3 for v in steps)
    for key in plain:
        torch.testing.assert_close(plain[key], lightning[key], msg=key)
    assert any(not torch.equal(plain[key], initial[key]) for key in plain if key.endswith("weight"))


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
        "error: --device cuda but torch.cuda.is_available() is False; use --device cpu"
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--quick", "--plan", "gpu"], "--quick and --plan gpu contradict; give one"),
        (["--num-workers", "-1"], "--num-workers=-1 must be an integer >= 0"),
        (["--windows", "0"], "--windows=0 must be an integer >= 1"),
        (["--window-s", "0"], "--window-s=0.0 must be > 0 (seconds)"),
        (
            ["--out", "/no/such/folder/b.json"],
            "--out /no/such/folder/b.json: folder /no/such/folder does not exist",
        ),
    ],
)
def test_bad_arguments_are_refused_in_one_line(capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["--device", "cpu", *args])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {message}"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_gpu_plan_runs_tiny_on_cuda(tmp_path):
    out = tmp_path / "bench.json"
    main(["--plan", "gpu", "--tiny", "--device", "cuda", "--out", str(out)])
    records = json.loads(out.read_text())["records"]
    check_records(records, "cuda")
    assert not any(r["details"].get("compile_fell_back") for r in records)
    assert all(r["memory"].startswith("cuda") for r in records)


def _decode(out: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """Pixel values 0..255 of normalised ``[N, 3, 32, 32]`` images."""
    return (out * std + mean).mul(255).round().long()


def test_the_data_comparison_augments_and_normalises_alike_on_both_sides():
    """bench_data's two sides, ours (BatchAugment on the batch, then the data module's
    normalisation) and torchvision's (its per-image transform), given one coordinate image: every
    output is a crop of the same zero-padded image at offsets 0..8, mirrored or not, normalised
    to the same values; all 81 offsets and both flips turn up on each side."""
    from PIL import Image

    from pyramid_lab.bench.input_pipeline import CROP_PADDING, our_augment, torchvision_transform
    from pyramid_lab.data.datamodule import normalisation, normalise

    pad, n, mean, std = CROP_PADDING, 2000, 0.5, 0.25
    rows = torch.arange(1, 33)[:, None].expand(32, 32)
    image = torch.stack([rows, rows.T, torch.full((32, 32), 200)]).to(torch.uint8)  # 0 = padding
    transform = torchvision_transform((mean,) * 3, (std,) * 3)
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    torch.manual_seed(0)
    theirs = torch.stack([transform(pil) for _ in range(n)])
    batch = our_augment()(image.expand(n, -1, -1, -1), generator=torch.Generator().manual_seed(0))
    ours = normalise(batch, *normalisation((mean,) * 3, (std,) * 3, CPU, batch.dtype))
    padded = torch.nn.functional.pad(image, (pad,) * 4)
    for side in (ours, theirs):
        pixels = _decode(side, mean, std)
        mirrored = pixels[:, 1, 16, 17] < pixels[:, 1, 16, 15]
        dy = pixels[:, 0, 16, 16] - 17 + pad
        dx = pixels[:, 1, 16, 16] - torch.where(mirrored, 16, 17) + pad  # column 16 read back
        assert dy.min() >= 0 and dy.max() <= 2 * pad and dx.min() >= 0 and dx.max() <= 2 * pad
        for i in range(0, n, 37):
            crop = padded[:, dy[i] : dy[i] + 32, dx[i] : dx[i] + 32]
            expected = (crop.flip(-1) if mirrored[i] else crop).float() / 255
            torch.testing.assert_close(side[i], (expected - mean) / std)
        counts = torch.bincount(dy * (2 * pad + 1) + dx, minlength=(2 * pad + 1) ** 2)
        assert counts.min() > 0 and len(counts) == (2 * pad + 1) ** 2
        assert abs(mirrored.float().mean().item() - 0.5) < 4 * (0.25 / n) ** 0.5


def test_the_data_comparison_runs_on_one_torch_thread_and_restores_the_count():
    from pyramid_lab.bench.input_pipeline import CPU_THREADS, torch_threads

    before = torch.get_num_threads()
    with torch_threads(CPU) as threads:
        assert threads == CPU_THREADS == torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
