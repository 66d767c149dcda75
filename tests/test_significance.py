"""Is a recipe's difference real? The report's tests, on constructed predictions whose answer is known,
on simulated tables (no training: seed variance, image noise and correlated errors drawn directly)
run many times through the report's own functions, and on run folders in the report's format."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.stats.proportion import proportion_confint

from pyramid_lab.report import ReportWarning, build_tables, csv_text, load_runs, markdown_table
from pyramid_lab.report.__main__ import main
from pyramid_lab.report.figures import plot_test_accuracy
from pyramid_lab.report.power import (
    paired_detectable_difference,
    recipe_detectable_difference,
    seeds_needed,
    t_test_power,
)
from pyramid_lab.report.render_effects import detectable_text, effects_table
from pyramid_lab.report.significance import ONE_SEED, Pair, coherent, compare, holm, load_predictions
from tests.table_blocks import recorded_table

N = 1000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def correctness(right: int, n: int = N, offset: int = 0) -> np.ndarray:
    """[n] booleans with ``right`` of them True, starting at ``offset`` (wrapping around)."""
    out = np.zeros(n, dtype=bool)
    out[(offset + np.arange(right)) % n] = True
    return out


def one_pair(row: np.ndarray, base: np.ndarray, seed: int | None = None) -> Pair:
    return Pair(row, base, "t", seed=seed)


def shifted(base: np.ndarray, gained: int, lost: int = 0) -> np.ndarray:
    """``base`` right on ``gained`` more images (from index 800) and wrong on ``lost`` (from 0)."""
    row = base.copy()
    row[800 : 800 + gained] = True
    row[:lost] = False
    return row


def pair_with(only_row: int, only_baseline: int) -> tuple[np.ndarray, np.ndarray]:
    """A row and a baseline that disagree on exactly these many images each way."""
    base = correctness(800)
    return shifted(base, only_row, only_baseline), base


# --- one comparison, by hand -------------------------------------------------------------------


def test_one_seed_makes_no_recipe_verdict_and_mcnemar_speaks_for_the_two_models():
    base = correctness(800)
    row = shifted(base, 90, 30)  # right on 90 images the baseline gets wrong, wrong on 30: +6 points
    effect = compare([one_pair(row, base)])
    assert effect.delta == pytest.approx(6.0) and (effect.only_row, effect.only_baseline) == ((90,), (30,))
    # McNemar's exact test is a two-sided binomial test of 30 of 120 at 1/2: these models differ.
    assert effect.mcnemar[0] == pytest.approx(stats.binomtest(30, 120, 0.5).pvalue)
    assert effect.mcnemar[0] < 1e-6
    for right, wrong in ((90, 30), (7, 3), (0, 5), (12, 12)):
        expected = mcnemar([[100, right], [wrong, 100]], exact=True).pvalue
        assert compare([one_pair(*pair_with(right, wrong))]).mcnemar[0] == pytest.approx(expected)
    assert effect.verdict == ONE_SEED and effect.p_value is None and effect.ci_low is None
    assert holm([effect]) == [effect]  # not in the Holm family: it has no p value
    same = compare([one_pair(base, base)])
    assert same.mcnemar == (1.0,) and same.delta == 0.0 and same.verdict == ONE_SEED


def test_the_recipe_test_is_scipys_paired_t_test_and_its_interval():
    base = correctness(800)
    pairs = [one_pair(shifted(base, gained), base, seed) for seed, gained in enumerate((60, 50, 55))]
    effect = compare(pairs)
    row_acc = [p.correct.mean() for p in pairs]
    base_acc = [p.baseline_correct.mean() for p in pairs]
    assert effect.p_raw == pytest.approx(stats.ttest_rel(row_acc, base_acc).pvalue)
    deltas = 100 * (np.array(row_acc) - np.array(base_acc))
    low, high = stats.t.interval(0.95, 2, loc=deltas.mean(), scale=stats.sem(deltas))
    assert (effect.ci_low, effect.ci_high) == pytest.approx((low, high))
    assert effect.deltas == pytest.approx(tuple(deltas)) and effect.seeds == (0, 1, 2)
    assert effect.level == 0.95 and effect.verdict == "better" and coherent(effect)
    # Seeds that disagree in sign: the seed-to-seed spread, not the images, sets the interval.
    mixed = compare([one_pair(shifted(base, 60), base), one_pair(base, shifted(base, 20))])
    assert mixed.ci_low < 0 < mixed.ci_high and mixed.verdict == "no detectable difference"
    # Every seed's two models differ beyond doubt, all in one direction, yet three seeds spread
    # from +2 to +6 points do not show the recipe is better: McNemar speaks for models only.
    spread = compare([one_pair(shifted(base, g), base) for g in (60, 20, 35)])
    assert max(spread.mcnemar) < 1e-5 and spread.verdict == "no detectable difference"


def test_holm_adjusts_p_and_the_interval_together():
    base = correctness(800)
    rows = [
        [one_pair(shifted(base, g + s), base) for s in (0, 3, 6)] for g in (40, 6, 4)
    ]  # a large, a small and a tiny effect, three seeds each
    raw = [compare(pairs) for pairs in rows]
    adjusted = holm([raw[0], None, raw[1], raw[2]])
    assert adjusted[1] is None
    kept = [a for a in adjusted if a is not None]
    expected = multipletests([e.p_raw for e in raw], method="holm")[1]
    assert [a.p_value for a in kept] == pytest.approx(list(expected))
    for before, after in zip(raw, kept):
        assert after.level == pytest.approx(1 - 0.05 * before.p_raw / after.p_value)
        assert after.ci_low <= before.ci_low and after.ci_high >= before.ci_high  # only ever wider
        assert coherent(after)
    # The middle row: p < 0.05 alone, not after Holm, and its interval now reaches 0 as well.
    assert raw[1].p_raw < 0.05 and raw[1].verdict == "better"
    assert kept[1].p_value >= 0.05 and kept[1].ci_low <= 0 and kept[1].verdict == "no detectable difference"


# --- simulated tables: no training, many times -------------------------------------------------


def simulate(
    rng: np.random.Generator,
    tables: int,
    rows: int,
    seeds: int,
    images: int,
    shift: tuple[float, ...] | None = None,
    seed_sd: float = 0.12,
) -> tuple[np.ndarray, np.ndarray]:
    """Correctness ``[tables, rows, seeds, images]`` of models whose errors are correlated.

    Each image has a difficulty shared by every model (sd 2 on the latent scale), each run a seed
    effect (``seed_sd``) and each (run, image) its own noise (sd 0.6); a run is right where
    ``2.6 + shift[row] + seed + difficulty + noise > 0``. Row 0 is the baseline. With shift 0 this
    gives about 89% accuracy, models that disagree on about 6% of the images and a seed-to-seed sd
    of about 1 point (issue 19's synthetic null); the recipes then do not differ.

    Returns:
        The correctness and the difficulties ``[tables, images]``.
    """
    shift = np.zeros(rows) if shift is None else np.asarray(shift, dtype=np.float32)
    difficulty = rng.standard_normal((tables, 1, 1, images), dtype=np.float32) * 2.0
    seed = rng.standard_normal((tables, rows, seeds, 1), dtype=np.float32) * seed_sd
    noise = rng.standard_normal((tables, rows, seeds, images), dtype=np.float32) * 0.6
    return 2.6 + shift[None, :, None, None] + seed + difficulty + noise > 0, difficulty[:, 0, 0]


def table_effects(correct: np.ndarray) -> list:
    """One simulated table ``[rows, seeds, images]`` through the report: each row against row 0,
    paired by seed, then Holm across the rows."""
    rows = [
        compare([Pair(correct[r, s], correct[0, s], "sim", seed=s) for s in range(correct.shape[1])])
        for r in range(1, correct.shape[0])
    ]
    return holm(rows)


def test_a_null_table_is_calibrated_false_alarms_near_5_percent():
    rng = np.random.default_rng(19)
    correct, _ = simulate(rng, tables=300, rows=4, seeds=2, images=2000)
    effects = [e for table in correct for e in table_effects(table)]
    assert all(coherent(e) for e in effects)
    raw = np.mean([e.p_raw < 0.05 for e in effects])
    called = np.mean([e.verdict != "no detectable difference" for e in effects])
    # 900 null comparisons: the raw test rejects about 5% (binomial sd 0.7%), Holm's fewer.
    assert 0.025 <= raw <= 0.08, raw
    assert called <= min(raw, 0.08), called
    # What the old pooled McNemar on these tables did: it ignores the seed-to-seed variation.
    pooled = [
        mcnemar([[0, np.sum(t[r] & ~t[0])], [np.sum(~t[r] & t[0]), 0]], exact=False, correction=False).pvalue
        < 0.05
        for t in correct[:50]
        for r in (1, 2, 3)
    ]
    assert np.mean(pooled) > 0.25


def test_the_interval_covers_the_true_recipe_effect_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    correct, difficulty = simulate(rng, tables=400, rows=2, seeds=3, images=2000, shift=(0.0, 0.2))
    # The recipe effect on a table's test images: the expected accuracy difference over seeds.
    scale = np.sqrt(0.12**2 + 0.6**2)
    truth = 100 * (
        stats.norm.cdf((2.8 + difficulty) / scale) - stats.norm.cdf((2.6 + difficulty) / scale)
    ).mean(axis=1)
    effects = [table_effects(table)[0] for table in correct]
    covered = np.mean([e.ci_low <= t <= e.ci_high for e, t in zip(effects, truth)])
    assert 0.92 <= covered <= 0.98, covered
    assert 1.0 < truth.mean() < 3.0  # a real effect, of about the size a table reports


def test_issue_19_null_at_most_5_of_60_rows_get_a_verdict():
    rng = np.random.default_rng(2026)
    correct, _ = simulate(rng, tables=20, rows=4, seeds=2, images=2000)
    effects = [e for table in correct for e in table_effects(table)]
    assert len(effects) == 60 and all(coherent(e) for e in effects)
    assert sum(e.verdict in ("better", "worse") for e in effects) <= 5


def test_a_true_8_point_effect_over_5_seeds_is_better():
    rng = np.random.default_rng(5)
    correct, _ = simulate(rng, tables=20, rows=2, seeds=5, images=2000, shift=(0.0, 1.4))
    effects = [table_effects(table)[0] for table in correct]
    assert 7.5 < np.mean([e.delta for e in effects]) < 8.5  # the shift is about +8 points
    assert all(e.verdict == "better" and coherent(e) for e in effects)


# --- what a comparison can detect --------------------------------------------------------------


def test_detectable_differences():
    # Paired models at 88-91% disagreeing on 5-8% of 90,000 images: McNemar detects 0.21-0.26 points.
    assert paired_detectable_difference(90_000, 0.05) == pytest.approx(0.209, abs=1e-3)
    assert paired_detectable_difference(90_000, 0.08) == pytest.approx(0.264, abs=1e-3)
    # The recipe's: the paired t-test's power, equal to statsmodels' where that is sound.
    size = TTestPower().solve_power(effect_size=None, nobs=5, alpha=0.05, power=0.8)
    assert recipe_detectable_difference(0.3, 5) == pytest.approx(0.3 * size, rel=1e-4)
    assert recipe_detectable_difference(0.3, 1) == np.inf
    # More comparisons, a stricter level, more needed: even with two seeds (statsmodels errs there).
    assert recipe_detectable_difference(1.0, 2, alpha=0.0125) > recipe_detectable_difference(1.0, 2)
    assert t_test_power(recipe_detectable_difference(1.0, 2, alpha=0.0125), 2, 0.0125) == pytest.approx(0.8)
    k = seeds_needed(0.2, 0.15 * np.sqrt(2))
    assert k == 11
    assert t_test_power(0.2 / (0.15 * np.sqrt(2)), k) >= 0.8 > t_test_power(0.2 / (0.15 * np.sqrt(2)), k - 1)
    assert seeds_needed(0.001, 1.0) is None  # more than 1,000 seeds


def test_plan_says_how_many_seeds(capsys):
    assert main(["plan", "--delta", "0.2", "--seed-sd", "0.15"]) == 0
    out = capsys.readouterr().out
    assert "seeds per row: 11" in out and "2: 2.45" in out and "5: 0.357" in out
    assert (
        main(["plan", "--delta", "0.2", "--seed-sd", "0.15", "--images", "90000", "--disagreement", "0.05"])
        == 0
    )
    assert "McNemar detects 0.209 points" in capsys.readouterr().out
    assert main(["plan", "--delta", "0", "--seed-sd", "0.15"]) == 2
    assert capsys.readouterr().err == "error: --delta 0.0 must be a difference in points > 0\n"
    with pytest.raises(SystemExit) as exited:
        main(["plan", "--help"])
    assert exited.value.code == 0 and "--seed-sd" in capsys.readouterr().out


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
    """A completed run's metrics.json and, when ``correct`` is given, its test_predictions.npz
    (on the first ``len(correct)`` test images)."""
    folder.mkdir(parents=True)
    n = N if correct is None else len(correct)
    target = np.arange(n) % 10
    record = {
        "status": "completed",
        "table": recorded_table(table),
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
            "index": np.arange(n, dtype=np.int32),
            "classes": np.array(CLASSES),
            "test_set": np.array(test_set),
        }
        if ensemble is not None:
            arrays["pred_ensemble"] = np.where(ensemble, target, (target + 1) % 10).astype(np.int16)
            record["test/acc_ensemble"] = float(ensemble.mean())
        np.savez_compressed(folder / "test_predictions.npz", **arrays)
        record["test/acc"] = float(correct.mean())
        per_class = {c: float(correct[target == i].mean()) for i, c in enumerate(CLASSES) if i < n}
        record["test/acc_per_class"] = per_class
        (folder / "confident_wrong.png").write_bytes(PNG_MAGIC)
    else:
        record["test/acc"] = 0.5
    (folder / "metrics.json").write_text(json.dumps(record))


@pytest.fixture
def table5(tmp_path: Path) -> Path:
    """Table 5 with three seeds: leaky_relu +5 to +7 points, selu identical to relu, hardswish an
    old run without predictions, and a failed relu run that must not count."""
    base = correctness(800)
    for seed, gained in zip((1, 2, 3), (60, 50, 70)):
        write_run(tmp_path / f"relu{seed}", "relu", base, seed)
        write_run(tmp_path / f"leaky{seed}", "leaky_relu", shifted(base, gained), seed)
        write_run(tmp_path / f"selu{seed}", "selu", base, seed)
    write_run(tmp_path / "hardswish", "hardswish", None)
    (tmp_path / "relu4").mkdir()
    (tmp_path / "relu4" / "metrics.json").write_text(
        json.dumps(
            {
                "status": "failed",
                "table": recorded_table("table5_activations"),
                "row": "relu",
                "seed": 4,
                "error": "RuntimeError: boom",
            }
        )
    )
    return tmp_path


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    return {line["row"]: line for line in csv.DictReader(path.open())}


def rows_of(folder: Path) -> tuple[dict, tuple[str, ...]]:
    (table,) = build_tables(load_runs(folder))
    return {row.row: row for row in table.rows}, table.notes


def test_report_columns_figure_and_sections(table5, capsys):
    assert main([str(table5)]) == 0
    rows = read_csv(table5 / "results.csv")
    leaky, selu, relu, hardswish = (rows[name] for name in ("leaky_relu", "selu", "relu", "hardswish"))
    assert relu["verdict"] == "baseline" and relu["delta"] == "" and relu["n_completed"] == "3"
    assert leaky["baseline"] == "relu" and float(leaky["delta"]) == pytest.approx(6.0)
    assert leaky["delta_per_seed"] == "6.0000 5.0000 7.0000" and leaky["n_pairs"] == "3"
    p_raw = stats.ttest_1samp([6.0, 5.0, 7.0], 0.0).pvalue
    # Holm across the table's two comparisons: the smaller p doubled, the interval widened to match.
    assert float(leaky["p_value_raw"]) == pytest.approx(p_raw, rel=1e-5)
    assert float(leaky["p_value"]) == pytest.approx(2 * p_raw, rel=1e-5) and leaky["verdict"] == "better"
    assert float(leaky["ci_level"]) == pytest.approx(0.975)
    low, high = stats.t.interval(0.975, 2, loc=6.0, scale=1 / np.sqrt(3))
    assert (float(leaky["delta_ci_low"]), float(leaky["delta_ci_high"])) == pytest.approx(
        (low, high), abs=1e-4
    )
    assert len(leaky["mcnemar_p_per_seed"].split()) == 3
    (table,) = build_tables(load_runs(table5))
    assert all(coherent(row.effect) for row in table.rows if row.effect is not None)
    assert float(selu["p_value"]) == 1.0 and float(selu["delta"]) == 0.0
    assert selu["verdict"] == "no detectable difference"
    # An old run without predictions: blanks, and a note that names it.
    assert hardswish["delta"] == hardswish["p_value"] == hardswish["verdict"] == ""
    markdown = (table5 / "results.md").read_text()
    assert f"hardswish: no test_predictions.npz beside {table5 / 'hardswish'}" in markdown
    assert "![table5_activations: differences from the baseline](table5_activations_effects.png)" in markdown
    assert (table5 / "table5_activations_effects.png").read_bytes()[:8] == PNG_MAGIC
    assert "| leaky_relu | +6.00" in markdown and "at 97.5%" in markdown and "| better" in markdown
    # What the runs can detect: the paired models' and the recipes' (from the seeds' spread).
    assert "disagreeing on 3.0% of them" in markdown  # leaky: 60/50/70 of 1,000 images; selu: none
    assert "vary with an sd of 0.71 points (pooled, 4 df)" in markdown
    assert "0.00 points" not in markdown and "0.31 points" not in markdown
    assert "table5_activations leaky_relu +0.057" in markdown  # below what two models can show
    # Per class: counts over the three runs and the Wilson interval.
    low, high = proportion_confint(240, 300, method="wilson")
    assert f"80.0 (240/300; {100 * low:.1f}–{100 * high:.1f})" in markdown
    assert "[most confidently wrong](leaky1/confident_wrong.png)" in markdown
    assert "against relu:" in capsys.readouterr().out


def test_a_tiny_test_set_prints_no_detectable_difference_of_0(tmp_path):
    # 8 test images on which the models never disagree: no "0.00 points on these 8 test images".
    for seed in (1, 2):
        write_run(tmp_path / f"relu{seed}", "relu", correctness(6, n=8), seed)
        write_run(tmp_path / f"selu{seed}", "selu", correctness(6, n=8), seed)
    (table,) = build_tables(load_runs(tmp_path))
    text = detectable_text(table)
    assert "McNemar detects" not in text and "0.00" not in text
    assert "per-seed deltas are identical" in text


def test_a_duplicated_run_is_named_and_does_not_shrink_p(tmp_path):
    base = correctness(800)
    for seed, gained in zip((1, 2), (40, 20)):
        write_run(tmp_path / f"relu{seed}", "relu", base, seed)
        write_run(tmp_path / f"selu{seed}", "selu", shifted(base, gained), seed)
    before, _ = rows_of(tmp_path)
    (tmp_path / "selu1_copy").mkdir()
    for file in (tmp_path / "selu1").iterdir():
        (tmp_path / "selu1_copy" / file.name).write_bytes(file.read_bytes())
    after, notes = rows_of(tmp_path)
    assert after["selu"].effect.p_raw == before["selu"].effect.p_raw
    assert after["selu"].effect.pairs == 2 and after["selu"].test_acc == before["selu"].test_acc
    assert len(after["selu"].completed) == 2 and len(after["selu"].runs) == 3
    assert any("duplicate" in note and "selu1_copy" in note and "counted once" in note for note in notes)


def test_unpaired_runs_are_named_and_the_accuracy_says_it_used_other_runs(tmp_path):
    base = correctness(800)
    for seed in (1, 2):
        write_run(tmp_path / f"relu{seed}", "relu", base, seed)
    for seed, gained in zip((1, 2, 3), (30, 20, 90)):
        write_run(tmp_path / f"selu{seed}", "selu", shifted(base, gained), seed)
    rows, notes = rows_of(tmp_path)
    assert rows["selu"].effect.seeds == (1, 2) and rows["selu"].effect.delta == pytest.approx(2.5)
    assert any("unpaired" in note and "selu seed 3" in note for note in notes)
    assert any("test accuracy over 3 runs, Δ over the 2 seed pair(s)" in note for note in notes)


def test_unreadable_predictions_other_test_sets_and_fewer_images_are_named(tmp_path):
    write_run(tmp_path / "a", "relu", correctness(800))
    write_run(tmp_path / "b", "selu", correctness(800))
    write_run(tmp_path / "c", "hardswish", correctness(800), test_set="digest-b")
    write_run(tmp_path / "d", "leaky_relu", correctness(700, n=900))
    (tmp_path / "b" / "test_predictions.npz").write_bytes(b"not a zip")
    with pytest.warns(ReportWarning, match=r"b/test_predictions\.npz: cannot be read"):
        rows, notes = rows_of(tmp_path)
    assert rows["selu"].effect is None and rows["hardswish"].effect is None
    assert any("cannot be read" in note for note in notes)
    assert any("hardswish: seed 1 tested on different test images" in note for note in notes)
    assert any(
        "leaky_relu: compared on fewer test images" in note and "900 of 1,000" in note for note in notes
    )
    assert rows["leaky_relu"].effect.images == 900
    (table,) = build_tables(load_runs(tmp_path))
    one_seed = "one seed: no recipe verdict (these two models differ, McNemar p <0.001)"
    assert one_seed in effects_table(table, str)
    assert load_predictions(tmp_path / "a" / "test_predictions.npz").correct.sum() == 800


def test_snapshot_ensembles_are_a_holm_family_of_their_own(tmp_path):
    base = correctness(800)
    for seed, gained in zip((1, 2), (50, 40)):
        write_run(tmp_path / f"m{seed}", "multistep", base, seed, table="table3_schedulers")
        write_run(
            tmp_path / f"r{seed}",
            "cosine_restarts",
            shifted(base, gained // 4),
            seed,
            table="table3_schedulers",
            ensemble=shifted(base, gained),
        )
    tables = build_tables(load_runs(tmp_path))
    rows = {line["row"]: line for line in csv.DictReader(io.StringIO(csv_text(tables)))}
    ensemble = rows["cosine_restarts + snapshot ensemble"]
    assert ensemble["baseline"] == "cosine_restarts" and float(ensemble["test_acc_pct"]) == pytest.approx(
        84.5
    )
    # Each family holds one comparison: Holm changes neither p (one family of two would double one).
    for row in (ensemble, rows["cosine_restarts"]):
        assert row["p_value"] == row["p_value_raw"]
    text = effects_table(tables[0], str)
    assert "Snapshot ensembles against their single models (a Holm family of their own)" in text


def test_merge_val_rows_show_no_best_val_acc(tmp_path):
    base = correctness(800)
    write_run(tmp_path / "b", "none", base, table="table7_merge_val", **{"val/acc_best": 0.8})
    write_run(tmp_path / "m", "merge_val", base, table="table7_merge_val", **{"val/acc_best": 0.99})
    write_run(tmp_path / "t", "", base, table=None, overrides=["tricks=[shakedrop,merge_val]"])
    write_run(tmp_path / "u", "", base, table=None, overrides=["experiment=table7_merge_val"])
    tables = {table.name: table for table in build_tables(load_runs(tmp_path))}
    rows = {line["row"]: line for line in csv.DictReader(io.StringIO(csv_text(tables.values())))}
    assert rows["none"]["val_acc_best_pct"] == "80.0000" and rows["merge_val"]["val_acc_best_pct"] == ""
    assert "| merge_val | 80.00        | — (merge_val)" in markdown_table(tables["table7_merge_val"])
    untabled = {row.row: row.val_is_train for row in tables["runs"].rows}
    assert untabled == {"tricks=[shakedrop,merge_val]": True, "experiment=table7_merge_val": False}


@pytest.mark.parametrize("seeds", [2, 3])
def test_the_accuracy_panel_shows_every_run_and_never_cuts_an_interval(tmp_path, seeds):
    base = correctness(800)
    for seed, (a, b) in zip(range(seeds), ((0, 0), (90, 40), (150, 10))):
        write_run(tmp_path / f"relu{seed}", "relu", shifted(base, a), seed)
        write_run(tmp_path / f"selu{seed}", "selu", shifted(base, b), seed)
    (table,) = build_tables(load_runs(tmp_path))
    ax = plot_test_accuracy(table, ax=Figure().subplots())
    bars = [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
    low, high = ax.get_ylim()
    assert low > 10.0  # a dot plot: the axis need not start at 0
    if seeds == 2:
        assert not bars  # no ± std of two numbers: the two runs' dots show their range
        assert table.rows[0].test_acc_std is None and table.rows[0].test_acc_range == (80.0, 89.0)
    else:
        assert len(bars) == 2
        ends = [y for bar in bars for line in bar.lines[2] for y in line.get_segments()[0][:, 1]]
        assert low < min(ends) and max(ends) < high
    dots = [y for line in ax.lines if line.get_marker() == "o" for y in line.get_ydata()]
    assert len(dots) == 2 * seeds and all(low < y < high for y in dots)


# --- end to end: a real sweep, then the report -----------------------------------------------


@pytest.mark.slow
def test_the_report_on_a_real_table5_sweep_with_two_seeds(table5_sweep, capsys):
    # The sweep is the session's (tests/conftest.py): the CLI, scale=smoke, seeds 1 and 2. The
    # report's own CLI is tested in tests/test_report.py; here its main reads the real sweep.
    sweep, made = table5_sweep
    assert made.returncode == 0, made.stderr[-3000:]
    assert main([str(sweep)]) == 0
    stdout = capsys.readouterr().out
    rows = read_csv(sweep / "results.csv")
    assert set(rows) == {"relu", "selu", "hardswish", "leaky_relu"}
    assert rows["relu"]["verdict"] == "baseline" and rows["relu"]["n_completed"] == "2"
    for name in ("selu", "hardswish", "leaky_relu"):
        row = rows[name]
        low, delta, high = (float(row[k]) for k in ("delta_ci_low", "delta", "delta_ci_high"))
        assert low <= delta <= high and -100 <= delta <= 100
        assert 0.0 <= float(row["p_value"]) <= 1.0
        assert row["verdict"] in ("better", "worse", "no detectable difference")
        assert (row["verdict"] != "no detectable difference") == (float(row["p_value"]) < 0.05)
        assert row["baseline"] == "relu" and row["n_pairs"] == "2"  # seed 1 with 1, 2 with 2
    assert (sweep / "table5_activations_effects.png").read_bytes()[:8] == PNG_MAGIC
    assert "against relu:" in stdout
