"""Issue 22: a table is one file. Each conf/experiment/table*.yaml carries its `table` block (name,
baseline row, per row the study's number, the study's name and the reading); runs record it, the
report reads it from them, docs/study.md is checked against it, and a new table needs one file."""

from __future__ import annotations

import csv
import re

import pytest
from omegaconf import OmegaConf

from pyramid_lab.report import build_tables
from pyramid_lab.report.__main__ import main as report_main
from pyramid_lab.report.collect import UNTABLED, Run
from pyramid_lab.report.inputs import RecordError
from pyramid_lab.report.render import readings_text
from pyramid_lab.runs.record_file import read_record
from tests.helpers import CONFIG_DIR, compose_config, run_app
from tests.table_blocks import TABLES, sweep_rows, table_block

DOCS = CONFIG_DIR.parent / "docs" / "study.md"
README = CONFIG_DIR.parent / "README.md"
# docs/study.md's generated section, between these two lines.
BEGIN, END = "<!-- tables: generated from conf/experiment/table*.yaml -->", "<!-- end of tables -->"
# Numbers of the study that are no table's row: its abstract's final accuracy (Table 8: 91.485).
OTHER_STUDY_NUMBERS = {91.418}


# --- the blocks -------------------------------------------------------------------------------


@pytest.mark.parametrize("table", TABLES)
def test_each_table_file_states_its_table_once_and_whole(table):
    block = table_block(table)
    group, rows = sweep_rows(table)
    assert block["name"] == table  # the runs' `table`: the file it came from
    assert block["baseline"] in rows, f"{table}: baseline {block['baseline']} is not a row of the sweep"
    # The sweep's values are the rows: the block only adds facts to them, for every row.
    assert list(block["rows"]) == rows
    for row, facts in block["rows"].items():
        assert set(facts) == {"study", "label", "reading"}, (table, row)
        assert facts["label"] and facts["reading"], (table, row)
        assert facts["study"] is None or 0 < facts["study"] < 100, (table, row)
    assert block["rows"][block["baseline"]]["study"] is not None  # every table compares with the study


def test_the_block_composes_as_the_file_states_it(tmp_path):
    """What a run records (the composed, resolved block) is what the file says: no block holds an
    interpolation, and Hydra adds nothing (one table composed: seconds each on 2 busy cores)."""
    assert not any("${" in str(table_block(table)) for table in TABLES)
    cfg = compose_config(["experiment=table6_tricks"], tmp_path)
    assert OmegaConf.to_container(cfg.table, resolve=True) == table_block("table6_tricks")
    assert cfg.task_name == "table6_tricks"


def test_the_defaults_are_the_baseline_recipes_groups(tmp_path):
    """conf/recipe/baseline.yaml states the recipe; conf/config.yaml's defaults must not drift."""
    groups = ("data", "model", "optimizer", "scheduler", "activation")
    plain, recipe = (
        OmegaConf.to_container(compose_config(o, tmp_path), resolve=False) for o in ([], ["recipe=baseline"])
    )
    assert {g: plain[g] for g in groups} == {g: recipe[g] for g in groups}


def test_the_study_tables_have_the_study_numbers_and_ours_has_its_baseline_only():
    numbered = {t: [r for r, f in table_block(t)["rows"].items() if f["study"] is not None] for t in TABLES}
    assert all(numbered[t] == sweep_rows(t)[1] for t in TABLES if t != "table9_beyond")
    assert numbered["table9_beyond"] == ["none"]  # ours: the study's final recipe only
    # Table 1's own number for PyramidNet, 87.485 elsewhere (docs/study.md, known inconsistencies).
    assert table_block("table1_models")["rows"]["pyramidnet196_a48"]["study"] == 87.520
    assert table_block("table2_depth_alpha")["baseline"] == "pyramidnet196_a48"


# --- docs/study.md against the files -------------------------------------------------------------


def table_line(table: str) -> str:
    """docs/study.md's line for a table, from its block."""
    block = table_block(table)
    number = table.split("_")[0].removeprefix("table")
    rows = block["rows"]
    cells = [f"{f['label']} `{row}` {f['study']:.3f}" for row, f in rows.items() if f["study"] is not None]
    blank = [f"`{row}`" for row, f in rows.items() if f["study"] is None]
    if blank:
        cells.append("not in the study: " + ", ".join(blank))
    return f"| {number}, {block['title']} | `{block['baseline']}` | {' · '.join(cells)} |"


def test_docs_study_tables_are_the_experiment_files():
    text = DOCS.read_text()
    generated = text.split(BEGIN)[1].split(END)[0].strip().splitlines()[2:]  # below the header
    expected = [table_line(table) for table in TABLES]
    paste = "\n".join(expected)
    assert generated == expected, f"docs/study.md's tables differ from the files; paste:\n{paste}"


@pytest.mark.parametrize("doc", [DOCS, README], ids=lambda p: p.name)
def test_every_study_number_the_docs_state_is_a_files(doc):
    """A number of the study anywhere in the prose (three decimals: 87.485) is one of the files'."""
    files = {f["study"] for t in TABLES for f in table_block(t)["rows"].values() if f["study"] is not None}
    stated = {float(n) for n in re.findall(r"(?<![\d.])\d{2}\.\d{3}(?![\d.])", doc.read_text())}
    assert stated and stated <= files | OTHER_STUDY_NUMBERS, sorted(stated - files - OTHER_STUDY_NUMBERS)


# --- the report reads the block from the records -------------------------------------------------


def record(table: object, row: str, acc: float, **fields) -> dict:
    return {"status": "completed", "table": table, "row": row, "dataset": "CINIC10", "test/acc": acc} | fields


def test_the_report_takes_study_numbers_and_baseline_from_the_recorded_block():
    block = {
        "name": "table10_mine",
        "baseline": "b",
        "rows": {"b": {"study": 80.0}, "a": {"study": 82.5, "reading": "more"}, "c": None},
    }
    runs = [Run.from_record(record(block, row, 0.8)) for row in ("a", "b", "c")]
    (table,) = build_tables(runs)
    rows = {row.row: row for row in table.rows}
    assert table.name == "table10_mine" and table.baseline == "b" and list(rows) == ["b", "a", "c"]
    assert rows["a"].study == 82.5 and rows["a"].study_delta == pytest.approx(2.5)
    assert rows["c"].study is None and rows["a"].baseline == "b"
    assert readings_text(table) == "What each row runs: a: more."


def test_records_without_a_block_get_no_study_numbers_and_the_untabled_baseline_rule():
    # A record from before the blocks, naming a study table: no numbers from anywhere else.
    old = Run.from_record(record("table3_schedulers", "cosine", 0.88))
    assert build_tables([old])[0].rows[0].study is None
    # An unknown table without a block: the plain row (no override of its own) is the baseline.
    runs = [
        Run.from_record(record("mine", "plain", 0.8, overrides=["experiment=mine"])),
        Run.from_record(record("mine", "adam", 0.8, overrides=["experiment=mine", "optimizer=adam"])),
    ]
    (table,) = build_tables(runs)
    assert table.name == "mine" != UNTABLED and table.baseline == "plain"
    assert all(row.study is None for row in table.rows)


def test_runs_that_recorded_different_blocks_use_the_most_common_and_say_so():
    old = {"name": "t", "baseline": "a", "rows": {"a": {"study": 80.0}}}
    new = {"name": "t", "baseline": "a", "rows": {"a": {"study": 81.0}}}
    runs = [Run.from_record(record(block, "a", 0.8, seed=s)) for s, block in enumerate([old, new, new])]
    (table,) = build_tables(runs)
    assert table.rows[0].study == 81.0
    assert any("2 different table blocks" in note and "2 of 3 runs" in note for note in table.notes)


def test_a_baseline_row_that_did_not_run_is_named():
    block = {"name": "t", "baseline": "missing", "rows": {}}
    (table,) = build_tables([Run.from_record(record(block, "a", 0.8))])
    assert table.baseline is None and any("baseline row missing has no runs" in n for n in table.notes)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"baseline": "a"}, "without a 'name'"),
        ({"name": "t", "rows": ["a", "b"]}, "'table.rows' of t must map"),
        ({"name": "t", "rows": {"a": {"study": "high"}}}, "'table.rows.a.study' of t must be a percentage"),
        ({"name": "t", "rows": {"a": {"study": 120}}}, "'table.rows.a.study' of t must be a percentage"),
        ({"name": "t", "baseline": ["a"]}, "the table block of t: 'baseline' must be text"),
    ],
)
def test_a_malformed_block_is_one_line_about_the_record(block, message):
    with pytest.raises(RecordError, match=re.escape(message)):
        Run.from_record(record(block, "a", 0.8))


# --- renamed options -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg", "line"),
    [
        ("tricks=baseline", "error: tricks=baseline is now tricks=none"),
        ("tricks=[baseline,merge_val]", "error: tricks=baseline is now tricks=none"),
        ("model=vgg16", "error: model=vgg16 is now model=vgg16_bn"),
        ("model=vgg19", "error: model=vgg19 is now model=vgg19_bn"),
    ],
)
def test_old_option_names_stop_with_one_line_naming_the_new(arg, line, tmp_path):
    result = run_app([arg], tmp_path, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"{line} (renamed; see README)"]
    assert not any(tmp_path.iterdir())  # nothing ran


# --- the criterion: Table 10 is one file --------------------------------------------------

TABLE10 = """\
# @package _global_
# Table 10 (a newcomer's): the activation on the baseline recipe, two rows.
defaults:
  - override /recipe: baseline

task_name: ${table.name}
table:
  name: table10_activations
  title: activation, ours
  baseline: relu
row: ${hydra:runtime.choices.activation}

hydra:
  mode: MULTIRUN
  sweeper:
    params:
      activation: relu,leaky_relu
"""


@pytest.mark.slow
def test_a_new_table_is_one_yaml_file_run_and_reported(tmp_path):
    extra = tmp_path / "my_conf"
    (extra / "experiment").mkdir(parents=True)
    (extra / "experiment" / "table10_activations.yaml").write_text(TABLE10)
    sweep = tmp_path / "sweep"
    # As a user runs it: the file found through Hydra's search path, the sweep at smoke scale on
    # the smallest PyramidNet (test predictions kept: the baseline comparison needs them).
    tiny = ["model=pyramidnet", "model.depth=8", "model.alpha=4", "~callbacks.images", "logger=none"]
    result = run_app(
        [
            "-m",
            "experiment=table10_activations",
            f"hydra.searchpath=[file://{extra}]",
            "scale=smoke",
            *tiny,
            "~callbacks.progress_bar",
            f"hydra.sweep.dir={sweep}",
        ],
        tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-1500:] + result.stderr[-1500:]
    records = [read_record(job) for job in sorted(sweep.iterdir()) if job.name.isdigit()]
    assert sorted(r["row"] for r in records) == ["leaky_relu", "relu"]
    block = {"name": "table10_activations", "title": "activation, ours", "baseline": "relu"}
    assert all(r["table"] == block for r in records)  # recorded as the file states it

    assert report_main([str(sweep)]) == 0
    with (sweep / "results.csv").open() as file:
        rows = {line["row"]: line for line in csv.DictReader(file) if line["table"] == "table10_activations"}
    assert set(rows) == {"relu", "leaky_relu"}
    # No study numbers: blank.
    assert all(line["study_test_acc_pct"] == line["study_delta_pts"] == "" for line in rows.values())
    assert rows["relu"]["verdict"] == "baseline"
    compared = rows["leaky_relu"]
    assert compared["baseline"] == "relu" and compared["n_pairs"] == "1" and compared["delta"] != ""
    markdown = (sweep / "results.md").read_text()
    assert "## table10_activations" in markdown and "Against the baseline row, relu:" in markdown
