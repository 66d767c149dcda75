"""Is a difference real? Paired tests and intervals on constructed predictions whose answer is known,
and the report's new columns, figure and sections over run folders with test_predictions.npz."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from pyramid_lab.report import ReportWarning, build_tables, load_runs, write_report
from pyramid_lab.report.__main__ import main
from pyramid_lab.report.significance import Pair, compare, holm, load_predictions
from pyramid_lab.report.study import smallest_detectable_difference

N = 1000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def correctness(right: int, n: int = N, offset: int = 0) -> np.ndarray:
    """[n] booleans with ``right`` of them True, starting at ``offset`` (wrapping around)."""
    out = np.zeros(n, dtype=bool)
    out[(offset + np.arange(right)) % n] = True
    return out


def one_pair(row: np.ndarray, base: np.ndarray, test_set: str = "t") -> Pair:
    return Pair(row, base, test_set)


def test_identical_predictions_give_p_1_and_an_interval_at_0():
    same = correctness(870)
    effect = compare([one_pair(same, same)])
    assert effect.p_raw == 1.0 and effect.delta == 0.0
    assert effect.ci_low <= 0.0 <= effect.ci_high and effect.ci_high - effect.ci_low < 0.1
    assert effect.verdict == "no detectable difference"


def test_sixty_more_right_images_of_1000_is_a_small_p_and_the_interval_holds_the_difference():
    base = correctness(800)
    # The row is right on 90 images the baseline gets wrong, and wrong on 30 it gets right: +60.
    row = base.copy()
    row[800:890] = True
    row[:30] = False
    effect = compare([one_pair(row, base)])
    assert (effect.only_row, effect.only_baseline) == (90, 30)
    assert effect.delta == pytest.approx(6.0)
    # McNemar's exact test is a two-sided binomial test of 30 of 120 at 1/2.
    assert effect.p_raw == pytest.approx(stats.binomtest(30, 120, 0.5).pvalue)
    assert effect.p_raw < 1e-6
    assert effect.ci_low < 6.0 < effect.ci_high and effect.ci_low > 0.0
    assert effect.verdict == "better"
    worse = compare([one_pair(base, row)])
    assert worse.delta == pytest.approx(-6.0) and worse.verdict == "worse"


def test_the_bootstrap_matches_scipy_on_one_pair():
    rng = np.random.default_rng(3)
    base = rng.random(N) < 0.85
    row = np.where(rng.random(N) < 0.1, ~base, base)
    effect = compare([one_pair(row, base)])
    d = row.astype(float) - base.astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ci = stats.bootstrap((d,), np.mean, n_resamples=4000, method="percentile", rng=0).confidence_interval
    # Two Monte Carlo estimates of one interval: within a fraction of a point of each other.
    assert effect.ci_low == pytest.approx(100 * ci.low, abs=0.3)
    assert effect.ci_high == pytest.approx(100 * ci.high, abs=0.3)


def test_several_seeds_carry_the_seed_to_seed_variation():
    base = correctness(800)
    plus = base.copy()
    plus[800:860] = True  # +6 points
    minus = base.copy()
    minus[:20] = False  # -2 points
    both = compare([one_pair(plus, base), one_pair(minus, base)])
    assert both.pairs == 2 and both.delta == pytest.approx(2.0)
    alone = compare([one_pair(plus, base)])
    # The seeds disagree by 8 points: the interval spans both of them, far wider than one seed's.
    assert both.ci_low <= -1.0 and both.ci_high >= 5.0
    assert both.ci_high - both.ci_low > 2 * (alone.ci_high - alone.ci_low)
    assert both.verdict == "no detectable difference"
    # McNemar's p is pooled over the seed pairs' disagreeing images: 60 vs 20.
    assert both.p_raw == pytest.approx(stats.binomtest(20, 80, 0.5).pvalue)


def test_holm_correction_across_a_table():
    base = correctness(800)
    effects = []
    for gained in (60, 16, 15):
        row = base.copy()
        row[800 : 800 + gained] = True
        row[:5] = False
        effects.append(compare([one_pair(row, base)]))
    corrected = holm([effects[0], None, effects[1], effects[2]])
    assert corrected[1] is None
    expected = multipletests([e.p_raw for e in effects], method="holm")[1]
    assert [c.p_value for c in corrected if c] == pytest.approx(list(expected))
    assert all(c.p_value >= e.p_raw for c, e in zip([c for c in corrected if c], effects))
    # 16 - 5 = +1.1 points: p 0.027 alone, 0.053 once three rows are tested (2 x 0.027).
    assert effects[1].p_raw < 0.05 and effects[1].verdict == "better"
    assert corrected[2].p_value == pytest.approx(2 * effects[1].p_raw)
    assert corrected[2].verdict == "no detectable difference"


def test_smallest_detectable_difference():
    # 1.96 * sqrt(2 * 0.875 * 0.125 / 90,000) = 0.306 points on the study's test set.
    assert smallest_detectable_difference(90_000, 0.875) == pytest.approx(0.3056, abs=1e-3)
    assert smallest_detectable_difference(270, 0.98) == pytest.approx(2.36, abs=0.01)


# --- the report over run folders ---------------------------------------------------------------

CLASSES = [f"c{i}" for i in range(10)]


def write_run(
    folder: Path,
    row: str,
    correct: np.ndarray | None,
    seed: int = 1,
    table: str = "table5_activations",
    ensemble: np.ndarray | None = None,
    test_set: str = "digest-a",
    **fields,
) -> None:
    """A completed run's metrics.json and, when ``correct`` is given, its test_predictions.npz."""
    folder.mkdir(parents=True)
    target = np.arange(N) % 10
    record = {
        "status": "completed",
        "table": table,
        "row": row,
        "seed": seed,
        "dataset": "Digits",
        "params": 1000,
        "epochs": 1,
        "history": [],
        **fields,
    }
    if correct is not None:
        pred = np.where(correct, target, (target + 1) % 10)
        arrays = {
            "pred": pred.astype(np.int16),
            "target": target.astype(np.int16),
            "probs": np.eye(10, dtype=np.float16)[pred],
            "index": np.arange(N, dtype=np.int32),
            "classes": np.array(CLASSES),
            "test_set": np.array(test_set),
        }
        if ensemble is not None:
            arrays["pred_ensemble"] = np.where(ensemble, target, (target + 1) % 10).astype(np.int16)
            record["test/acc_ensemble"] = float(ensemble.mean())
        np.savez_compressed(folder / "test_predictions.npz", **arrays)
        record["test/acc"] = float(correct.mean())
        per_class = {c: float(correct[target == i].mean()) for i, c in enumerate(CLASSES)}
        record["test/acc_per_class"] = per_class
        (folder / "confident_wrong.png").write_bytes(PNG_MAGIC)
    else:
        record["test/acc"] = 0.5
    (folder / "metrics.json").write_text(json.dumps(record))


@pytest.fixture
def table5(tmp_path: Path) -> Path:
    """Table 5 with two seeds: leaky_relu +6 points, selu identical to relu, hardswish an old run
    without predictions, and a failed relu run that must not count."""
    base = correctness(800)
    better = base.copy()
    better[800:890] = True
    better[:30] = False
    for seed in (1, 2):
        write_run(tmp_path / f"relu{seed}", "relu", base, seed)
        write_run(tmp_path / f"leaky{seed}", "leaky_relu", better, seed)
        write_run(tmp_path / f"selu{seed}", "selu", base, seed)
    write_run(tmp_path / "hardswish", "hardswish", None)
    (tmp_path / "relu3").mkdir()
    (tmp_path / "relu3" / "metrics.json").write_text(
        json.dumps(
            {
                "status": "failed",
                "table": "table5_activations",
                "row": "relu",
                "seed": 3,
                "error": "RuntimeError: boom",
            }
        )
    )
    return tmp_path


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    return {line["row"]: line for line in csv.DictReader(path.open())}


def test_report_columns_figure_and_sections(table5, capsys):
    assert main([str(table5)]) == 0
    rows = read_csv(table5 / "results.csv")
    leaky, selu, relu, hardswish = (
        rows["leaky_relu"],
        rows["selu"],
        rows["relu"],
        rows["hardswish"],
    )
    assert relu["verdict"] == "baseline" and relu["delta"] == "" and relu["n_completed"] == "2"
    assert leaky["baseline"] == "relu" and float(leaky["delta"]) == pytest.approx(6.0)
    assert float(leaky["delta_ci_low"]) < 6.0 < float(leaky["delta_ci_high"])
    assert float(leaky["p_value"]) < 1e-6 and leaky["verdict"] == "better" and leaky["n_pairs"] == "2"
    assert float(selu["p_value"]) == 1.0 and float(selu["delta"]) == 0.0
    assert selu["verdict"] == "no detectable difference"
    # An old run without predictions: blanks, not an error.
    assert hardswish["delta"] == hardswish["p_value"] == hardswish["verdict"] == ""
    assert float(hardswish["test_acc_pct"]) == 50.0
    # Holm across the table: the smaller of two p values is doubled.
    raw = sorted(float(r["p_value_raw"]) for r in (leaky, selu))
    assert float(leaky["p_value"]) == pytest.approx(2 * raw[0])
    markdown = (table5 / "results.md").read_text()
    assert "![table5_activations: differences from the baseline](table5_activations_effects.png)" in markdown
    assert (table5 / "table5_activations_effects.png").read_bytes()[:8] == PNG_MAGIC
    assert "| leaky_relu | +6.00" in markdown and "| better" in markdown
    assert "0.31 points" in markdown and "table5_activations leaky_relu +0.057" in markdown
    assert "1.0 test images" not in markdown and "on these 1,000 test images" in markdown
    assert "Test accuracy per class" in markdown and "| c0 " in markdown
    assert "[most confidently wrong](leaky1/confident_wrong.png)" in markdown
    assert "against relu:" in capsys.readouterr().out


def test_study_differences_only_beside_study_data(table5):
    (tables,) = [build_tables(load_runs(table5), resamples=500)]
    rows = {row.row: row for row in tables[0].rows}
    assert rows["leaky_relu"].study_delta is None  # digits runs: no CINIC-10 numbers beside them
    for path in table5.glob("*/metrics.json"):
        record = json.loads(path.read_text())
        record["dataset"] = "CINIC10"
        path.write_text(json.dumps(record))
    rows = {row.row: row for row in build_tables(load_runs(table5), resamples=500)[0].rows}
    assert rows["leaky_relu"].study_delta == pytest.approx(0.057)


def test_snapshot_ensemble_is_a_row_against_its_single_model(tmp_path):
    base = correctness(800)
    ensemble = base.copy()
    ensemble[800:850] = True
    write_run(
        tmp_path / "restarts",
        "cosine_restarts",
        base,
        table="table3_schedulers",
        ensemble=ensemble,
    )
    write_run(tmp_path / "multistep", "multistep", base, table="table3_schedulers")
    paths = write_report(tmp_path)
    rows = read_csv(paths.csv)
    row = rows["cosine_restarts + snapshot ensemble"]
    assert row["baseline"] == "cosine_restarts" and float(row["test_acc_pct"]) == pytest.approx(85.0)
    assert float(row["delta"]) == pytest.approx(5.0) and row["verdict"] == "better"
    assert float(rows["cosine_restarts"]["delta"]) == 0.0  # against multistep
    assert "table3_schedulers" in paths.effects


def test_runs_on_other_test_images_are_not_paired(tmp_path):
    base = correctness(800)
    write_run(tmp_path / "a", "relu", base, test_set="digest-a")
    write_run(tmp_path / "b", "selu", base, test_set="digest-b")
    (table,) = build_tables(load_runs(tmp_path))
    selu = next(row for row in table.rows if row.row == "selu")
    assert selu.effect is None
    assert any("different test images" in note for note in table.notes)


def test_a_runs_table_compares_with_the_run_without_overrides(tmp_path):
    base = correctness(800)
    write_run(tmp_path / "0", "", base, table=None, overrides=["experiment=quickstart"])
    write_run(
        tmp_path / "1",
        "",
        base,
        table=None,
        overrides=["experiment=quickstart", "optimizer=adam"],
    )
    (table,) = build_tables(load_runs(tmp_path))
    assert table.name == "runs" and table.baseline == "experiment=quickstart"
    assert [row.effect is not None for row in table.rows] == [False, True]


def test_an_unreadable_predictions_file_is_a_warning(tmp_path):
    write_run(tmp_path / "a", "relu", correctness(800))
    write_run(tmp_path / "b", "selu", correctness(800))
    (tmp_path / "b" / "test_predictions.npz").write_bytes(b"not a zip")
    with pytest.warns(ReportWarning, match=r"b/test_predictions\.npz: cannot be read"):
        runs = load_runs(tmp_path)
    (table,) = build_tables(runs)
    assert table.rows[-1].effect is None  # reported (tests/test_report_hostile.py), not compared
    assert load_predictions(tmp_path / "a" / "test_predictions.npz").correct.sum() == 800
    assert load_predictions(tmp_path / "a" / "test_predictions.npz").correct.sum() == 800


# --- end to end: a real sweep, then the report (needs the module's test_step to return its
# --- outputs and conf/config.yaml's callbacks to include `predictions`) ---------------------


@pytest.mark.slow
def test_the_report_on_a_real_table5_sweep_with_two_seeds(tmp_path):
    sweep = tmp_path / "sweep"
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "pyramid_lab",
            "experiment=table5_activations",
            "scale=smoke",
            "seed=1,2",
            "~callbacks.progress_bar",
            f"hydra.sweep.dir={sweep}",
        ],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert made.returncode == 0, made.stderr[-3000:]
    result = subprocess.run(
        [sys.executable, "-m", "pyramid_lab.report", str(sweep)],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_csv(sweep / "results.csv")
    assert set(rows) == {"relu", "selu", "hardswish", "leaky_relu"}
    assert rows["relu"]["verdict"] == "baseline" and rows["relu"]["n_completed"] == "2"
    for name in ("selu", "hardswish", "leaky_relu"):
        row = rows[name]
        low, delta, high = (float(row[k]) for k in ("delta_ci_low", "delta", "delta_ci_high"))
        assert low <= high and -100 <= delta <= 100
        assert 0.0 <= float(row["p_value"]) <= 1.0
        assert row["verdict"] in ("better", "worse", "no detectable difference")
        assert row["baseline"] == "relu" and row["n_pairs"] == "2"  # seed 1 with 1, 2 with 2
    assert (sweep / "table5_activations_effects.png").read_bytes()[:8] == PNG_MAGIC
    assert "against relu:" in result.stdout
