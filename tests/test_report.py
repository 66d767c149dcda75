"""The report: fake run folders -> results.md/csv, figures, terminal tables, errors and exit codes."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pyramid_lab.report import (
    ReportWarning,
    Run,
    build_tables,
    load_runs,
    plot_curves,
    write_report,
)
from pyramid_lab.report.__main__ import main
from tests.table_blocks import recorded_table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROOT = Path(__file__).resolve().parents[1]


def history(epochs: int, final_acc: float) -> list[dict]:
    return [
        {
            "epoch": e,
            "train/loss": 2.3 / e,
            "train/acc": final_acc * e / epochs,
            "val/acc": final_acc,
            "train/lr": 0.1,
        }
        for e in range(1, epochs + 1)
    ]


def record(status: str, table: str | None = None, row: str | None = None, **fields) -> dict:
    data = {
        "status": status,
        "params": 97_746,
        "model": "PyramidNet",
        "epochs": 3,
        "wall_time_s": 125.0,
        "overrides": [],
        "task_name": "train",
        "dataset": "CINIC10",
        "history": history(3, fields.get("test/acc", 0.5)),
    }
    if table:
        data.update(table=recorded_table(table), row=row)
    return {**data, **fields}


def write(folder: Path, data: dict | str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "metrics.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


@pytest.fixture
def sweeps(tmp_path: Path) -> Path:
    """Two table sweeps (one nested deeper), several seeds, every non-completed status, bad files."""
    t3 = tmp_path / "multirun" / "2026-11-28" / "10-00-00"
    for job, acc in enumerate((0.87102, 0.88102, 0.89102)):
        write(
            t3 / str(job),
            record(
                "completed",
                "table3_schedulers",
                "multistep",
                seed=job,
                **{"test/acc": acc, "val/acc_best": acc + 0.01},
            ),
        )
    write(
        t3 / "3",
        record(
            "diverged",
            "table3_schedulers",
            "multistep",
            seed=3,
            epochs=2,
            error="train/loss became nan at epoch 2",
        ),
    )
    write(
        t3 / "4",
        record("completed", "table3_schedulers", "cosine", **{"test/acc": 0.86561, "val/acc_best": 0.87}),
    )
    write(
        t3 / "5",
        record(
            "failed",
            "table3_schedulers",
            "exp",
            epochs=0,
            history=[],
            error="ConfigError: scheduler.gamma=-1 must be in (0, 1]",
        ),
    )
    write(t3 / "6", record("running", "table3_schedulers", "plateau"))
    write(
        t3 / "7",
        record("interrupted", "table3_schedulers", "cosine_restarts", error="training was interrupted"),
    )
    t5 = tmp_path / "multirun" / "2026-11-29" / "08-00-00" / "nested"
    write(
        t5 / "0",
        record("completed", "table5_activations", "relu", **{"test/acc": 0.87731, "val/acc_best": 0.88}),
    )
    write(
        t5 / "1",
        record("completed", "table5_activations", "leaky_relu", **{"test/acc": 0.88, "val/acc_best": 0.89}),
    )
    write(t5 / "2", "{not json")
    write(t5 / "3", json.dumps({"test/acc": 0.5}))
    return tmp_path


def read_csv(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    return {(line["table"], line["row"]): line for line in csv.DictReader(path.open())}


def md_row(markdown: str, table: str, row: str) -> list[str]:
    """The cells of one table row in results.md (sections are '## <table>')."""
    section = markdown.split(f"## {table}\n", 1)[1].split("\n## ", 1)[0]
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        if cells[0] == row:
            return cells
    raise AssertionError(f"no row {row!r} in {table}")


def test_report_tables_with_study_numbers_seeds_and_failures(sweeps, capsys):
    code = main([str(sweeps)])
    out, err = capsys.readouterr()
    assert code == 1  # two unreadable records; the other runs are still reported
    markdown = (sweeps / "results.md").read_text()
    # row | test | val best | n | study | diff | params | epochs | wall | status | error
    assert md_row(markdown, "table3_schedulers", "multistep") == [
        "multistep",
        "88.10 ± 1.00",
        "89.10 ± 1.00",
        "3",
        "87.485",
        "+0.62",
        "97,746",
        "3",
        "2m 05s",
        "3 completed, 1 diverged",
        "seed 3: diverged: train/loss became nan at epoch 2",
    ]
    assert md_row(markdown, "table3_schedulers", "cosine")[1:6] == ["86.56", "87.00", "1", "88.563", "-2.00"]
    assert md_row(markdown, "table3_schedulers", "exp")[1:] == [
        "—",
        "—",
        "0",
        "81.633",
        "—",
        "97,746",
        "0",
        "2m 05s",
        "failed",
        "failed: ConfigError: scheduler.gamma=-1 must be in (0, 1]",
    ]
    assert md_row(markdown, "table3_schedulers", "plateau")[-2:] == [
        "running",
        "running: no final status: still running, or killed",
    ]
    # A row the study does not have: no study number, no difference, still listed.
    assert md_row(markdown, "table3_schedulers", "cosine_restarts")[4:6] == ["—", "—"]
    assert md_row(markdown, "table5_activations", "relu")[1:6] == ["87.73", "88.00", "1", "87.485", "+0.25"]
    assert md_row(markdown, "table5_activations", "leaky_relu")[5] == "+0.46"
    # The study's row order, whatever the order of the job folders.
    section = markdown.split("## table3_schedulers")[1]
    assert (
        section.index("| multistep")
        < section.index("| cosine ")
        < section.index("| exp")
        < section.index("| plateau")
    )
    assert "## Skipped files" in markdown and "not valid JSON" in markdown
    for table in ("table3_schedulers", "table5_activations"):
        assert f"![{table}]({table}.png)" in markdown
        assert f"{table} (" in out  # printed under its name
    assert "| multistep" in out and "88.10 ± 1.00" in out and "wrote" in out
    warnings = err.splitlines()
    assert len(warnings) == 2 and all(w.startswith("warning: ") for w in warnings)
    assert any(
        str(sweeps / "multirun/2026-11-29/08-00-00/nested/2/metrics.json") in w and "not valid JSON" in w
        for w in warnings
    )
    assert any("nested/3/metrics.json: missing 'status'" in w for w in warnings)


def test_csv_has_raw_numbers_and_reasons(sweeps):
    main([str(sweeps), "--out", str(sweeps / "report")])
    rows = read_csv(sweeps / "report" / "results.csv")
    multistep = rows[("table3_schedulers", "multistep")]
    assert float(multistep["test_acc_pct"]) == pytest.approx(88.102)
    assert float(multistep["test_acc_pct_std"]) == pytest.approx(1.0)
    assert float(multistep["diff_pts"]) == pytest.approx(0.617)
    assert (multistep["n_completed"], multistep["n_not_completed"]) == ("3", "1")
    assert float(multistep["study_test_acc_pct"]) == pytest.approx(87.485)
    exp = rows[("table3_schedulers", "exp")]
    assert exp["test_acc_pct"] == "" and exp["status"] == "failed" and "scheduler.gamma=-1" in exp["error"]
    assert len(rows) == 7
    # Runs without test predictions (older runs): the comparison columns are blank, not errors.
    assert multistep["verdict"] == "baseline" and multistep["delta"] == ""
    cosine = rows[("table3_schedulers", "cosine")]
    assert cosine["baseline"] == "multistep" and cosine["delta"] == cosine["p_value"] == ""
    assert not (sweeps / "results.md").exists()  # --out: nothing written into DIR


def test_figures_exist_and_are_pngs(sweeps):
    paths = write_report(sweeps / "multirun" / "2026-11-28")
    assert set(paths.tables) == {"table3_schedulers"}
    for png in (paths.curves, *paths.tables.values()):
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000
    assert paths.markdown.parent == sweeps / "multirun" / "2026-11-28"


def test_no_figure_is_written_twice_and_none_is_blank(sweeps, tmp_path):
    import hashlib

    from matplotlib.image import imread

    one = write_report(sweeps / "multirun" / "2026-11-28", tmp_path / "one")
    both = write_report(sweeps / "multirun", tmp_path / "both")
    assert len(both.tables) == 2 and both.curves == tmp_path / "both" / "curves.png"
    # One table: its figure is the figure of every table; no curves.png repeating it.
    assert one.curves == one.tables["table3_schedulers"] and not (tmp_path / "one" / "curves.png").exists()
    for out in (tmp_path / "one", tmp_path / "both"):
        pngs = sorted(out.glob("*.png"))
        digests = [hashlib.sha256(png.read_bytes()).hexdigest() for png in pngs]
        assert len(set(digests)) == len(pngs), pngs
        for png in pngs:
            pixels = imread(png)[..., :3]
            drawn = (pixels < 0.9).any(axis=-1).mean()  # the share of pixels that are not white
            assert pixels.shape[0] > 200 and pixels.shape[1] > 200 and 0.01 < drawn < 0.9, (png, drawn)


@pytest.mark.parametrize("case", ["missing", "empty", "no_records", "a_file"])
def test_unusable_folder_is_one_line_and_exit_2(tmp_path, capsys, case):
    folder = tmp_path / "sweep"
    if case == "empty":
        folder.mkdir()
    elif case == "no_records":
        write(folder / "0", {}).rename(folder / "0" / "config.json")
    elif case == "a_file":
        folder.write_text("")
    assert main([str(folder)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith("error: ") and str(folder) in err and "metrics.json" in err


def test_all_records_unreadable_exit_1(tmp_path, capsys):
    write(tmp_path / "0", "[1, 2")
    assert main([str(tmp_path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert (
        err[0].startswith("warning: ")
        and err[-1] == f"error: none of the 1 metrics.json files under {tmp_path} could be read"
    )


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"status": "done"}, "status 'done' is not one of running, completed"),
        ({"status": "completed"}, "status is 'completed' but 'test/acc' is missing"),
        ({"status": "completed", "test/acc": 87.5}, "'test/acc' is 87.5, expected a fraction in [0, 1]"),
        ({"status": "failed", "params": "many"}, "'params' is 'many', expected a number"),
        ({"status": "failed", "history": {"epoch": 1}}, "'history' must be a list"),
    ],
)
def test_incomplete_records_are_named_and_skipped(tmp_path, fields, problem):
    write(tmp_path / "bad", fields)
    write(tmp_path / "good", record("completed", "table7_merge_val", "train", **{"test/acc": 0.9}))
    with pytest.warns(
        ReportWarning, match=r"bad/metrics\.json: " + problem.replace("[", r"\[").replace("(", r"\(")
    ):
        runs = load_runs(tmp_path)
    assert [run.row for run in runs] == ["train"]


def test_untabled_runs_are_labelled_by_the_overrides_that_differ(tmp_path):
    common = ["experiment=quickstart", "trainer.max_epochs=1", "hydra.sweep.dir=/x", "paths.data_dir=/d"]
    for job, (optimizer, seed) in enumerate([("adam", 1), ("adam", 2), ("sgd", 1)]):
        write(
            tmp_path / str(job),
            record(
                "completed",
                overrides=[*common, f"optimizer={optimizer}", f"seed={seed}"],
                **{"test/acc": 0.5 + job / 10},
            ),
        )
    runs = load_runs(tmp_path)
    assert [(run.table, run.row, run.seed) for run in runs] == [
        ("runs", "optimizer=adam", 1),
        ("runs", "optimizer=adam", 2),
        ("runs", "optimizer=sgd", 1),
    ]
    (table,) = build_tables(runs)
    adam = table.rows[0]
    assert (adam.row, len(adam.completed), adam.test_acc) == ("optimizer=adam", 2, pytest.approx(55.0))
    assert adam.study is None


def test_plot_curves_one_line_per_run_with_history(sweeps):
    from matplotlib.figure import Figure

    runs = [run for run in load_runs(sweeps / "multirun" / "2026-11-28") if run.row in ("multistep", "exp")]
    ax = Figure().subplots()
    assert plot_curves(runs, "train/acc", ax=ax) is ax
    assert len(ax.lines) == 4  # three seeds and the diverged run; the failed one has no history
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["multistep"]  # one entry per row
    assert max(ax.lines[0].get_ydata()) == pytest.approx(87.102)  # fractions drawn in percent


def test_run_from_an_in_memory_record():
    run = Run.from_record(
        {"status": "completed", "test/acc": 0.9, "row": "quickstart", "history": history(2, 0.9)}
    )
    assert (run.table, run.row, run.test_acc, len(run.history)) == ("runs", "quickstart", 0.9, 2)


def test_command_line_exit_code(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pyramid_lab.report", str(tmp_path / "nope")],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert (
        result.stderr == f"error: {tmp_path / 'nope'} does not exist; expected a run or sweep folder with "
        "metrics.json files (e.g. multirun/<date>/<time>)\n"
    )


DEMO_SWEEP = [
    "-m",
    "experiment=quickstart",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=1",
    "logger=none",
    "~callbacks.progress_bar",
    "scheduler=cosine,exp",
]


@pytest.mark.slow
def test_report_on_a_real_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    made = subprocess.run(
        [sys.executable, "-m", "pyramid_lab", *DEMO_SWEEP, f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert made.returncode == 0, made.stderr[-2000:]
    result = subprocess.run(
        [sys.executable, "-m", "pyramid_lab.report", str(sweep)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rows = read_csv(sweep / "results.csv")
    assert set(rows) == {("runs", "scheduler=cosine"), ("runs", "scheduler=exp")}
    for line in rows.values():
        assert line["status"] == "completed" and 0 <= float(line["test_acc_pct"]) <= 100
        assert line["epochs_max"] == "1" and int(line["params"]) > 0
    assert "| scheduler=cosine" in result.stdout
    # One table: its figure, and no curves.png repeating it.
    assert (sweep / "runs.png").stat().st_size > 0 and not (sweep / "curves.png").exists()


def test_out_must_be_a_folder(sweeps, capsys):
    (sweeps / "taken").write_text("")
    assert main([str(sweeps / "multirun" / "2026-11-28"), "--out", str(sweeps / "taken")]) == 2
    assert (
        capsys.readouterr().err
        == f"error: --out {sweeps / 'taken'} is a file; expected a folder for results.md, "
        "results.csv and the PNGs\n"
    )


def test_study_numbers_only_beside_runs_on_the_study_data():
    on_digits = Run.from_record(
        record("completed", "table3_schedulers", "cosine", **{"test/acc": 0.9, "dataset": "Digits"})
    )
    on_cinic = Run.from_record(record("completed", "table3_schedulers", "cosine", **{"test/acc": 0.9}))
    assert build_tables([on_digits])[0].rows[0].study is None
    assert build_tables([on_cinic])[0].rows[0].study == pytest.approx(88.563)
