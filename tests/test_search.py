"""The Optuna search (experiment=search_budget): its space, the budget, pruning, resume and growth.

The command-line tests run ``python -m pyramid_lab`` with the repository root on PYTHONPATH, so that
Hydra finds the sweeper (``hydra_plugins/pyramid_lab_search``) even in an editable install made
before setup.py listed ``hydra_plugins`` (a fresh ``pip install -e .`` finds it by itself). They fix
a small PyramidNet (depth 20) and batches of 8 so that a trial is a few seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from pyramid_lab.errors import ConfigError
from pyramid_lab.models.budget import over_budget
from pyramid_lab.runs.record_file import read_record
from pyramid_lab.search.bookkeeping import REASON, default_storage
from pyramid_lab.search.pruning import PRUNER_ATTR, TrialPruned
from pyramid_lab.search.results import RESULTS_NAME, WINNER_NAME
from pyramid_lab.search.space import parse_space
from pyramid_lab.search.sweep import Search, SearchSettings
from tests.helpers import CONFIG_DIR, compose_config, run_app, start_app

REPO = CONFIG_DIR.parent
# A search a 2-core CPU runs in seconds per trial: the searched PyramidNet is fixed to depth 20 (its
# width, unit type and every other axis are still searched), batches of 8, two steps, no logger.
TINY_SEARCH = ["scale=smoke", "model.depth=20", "data.batch_size=8", "logger=none", "~callbacks.progress_bar"]
optuna.logging.set_verbosity(optuna.logging.WARNING)


def search_config():
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        return compose("config", overrides=["experiment=search_budget"], return_hydra_config=True)


def test_the_space_reads_hydra_optuna_syntax_and_sam_alone_gets_rho():
    sweeper = search_config().hydra.sweeper
    space = parse_space(sweeper.params, ["scale=smoke", "data.batch_size=8"], sweeper.conditions)
    d = space.distributions
    assert d["model.depth"] == IntDistribution(20, 200, step=18)  # range(20, 201, 18): 201 excluded
    assert d["model.alpha"] == IntDistribution(8, 96, log=True)
    assert d["optimizer.lr"] == FloatDistribution(0.01, 0.5, log=True)
    assert d["optimizer.weight_decay"].log and d["module.loss.label_smoothing"] == FloatDistribution(0.0, 0.2)
    assert d["optimizer"] == CategoricalDistribution(["sgd", "sam"])
    assert d["model.bottleneck"] == CategoricalDistribution([True, False])
    assert "data.batch_size" not in d and space.fixed == ["scale=smoke", "data.batch_size=8"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    parser = OverridesParser.create()
    seen = set()
    for _ in range(40):
        trial = study.ask()
        values = space.sample(trial)
        assert ("optimizer.rho" in values) == (values["optimizer"] == "sam")
        # Every override reads back, through Hydra's parser, as the value sampled.
        parsed = {o.get_key_element(): o.value() for o in parser.parse_overrides(space.overrides(values))}
        assert {k: parsed[k] for k in values} == values
        seen.add(values["optimizer"])
        study.tell(trial, 0.5)
    assert seen == {"sgd", "sam"}


def test_a_search_refuses_the_test_set_and_bad_settings(tmp_path):
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    settings = {
        "n_trials": 3,
        "n_jobs": 1,
        "storage": None,
        "study_name": "s",
        "direction": "maximize",
        "objective": "val/acc_best",
        "sampler": {},
        "pruner": {},
        "params": {},
        "conditions": {},
        "heartbeat_interval": None,
    }
    with pytest.raises(ConfigError, match="objective=test/acc: a search must not select on the test set"):
        Search(SearchSettings(**{**settings, "objective": "test/acc"}), config, None, None)
    with pytest.raises(ConfigError, match="one direction per objective"):
        Search(SearchSettings(**{**settings, "objective": ["val/acc_best", "params"]}), config, None, None)
    with pytest.raises(ConfigError, match=r"conditions.optimizer.rho=lr=1: write 'PARENT=VALUE"):
        parse_space({"optimizer.rho": "interval(0.01, 0.5)"}, [], {"optimizer.rho": "lr=1"})


@pytest.mark.slow
def test_the_pruning_callback_stops_a_hopeless_run_after_its_epoch(tmp_path):
    from pyramid_lab.train import train

    storage = default_storage(tmp_path)
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    # A pruner that prunes any val/acc below 1.1, i.e. every run, at its first epoch.
    study.set_user_attr(PRUNER_ATTR, {"_target_": "optuna.pruners.ThresholdPruner", "lower": 1.1})
    trial = study.ask()
    cfg = compose_config(
        [
            "experiment=search_budget",
            *TINY_SEARCH,
            "model.alpha=4",
            "trainer.max_steps=-1",
            "trainer.max_epochs=3",
            "trainer.limit_train_batches=1",
            f"search.storage='{storage}'",
            "search.study_name=s",
            f"search.trial={trial.number}",
        ],
        tmp_path / "run",
    )
    with pytest.raises(TrialPruned, match="pruned by ThresholdPruner after epoch 1: val/acc="):
        train(cfg)
    frozen = study.trials[0]
    assert list(frozen.intermediate_values) == [0] and "ThresholdPruner" in frozen.user_attrs[REASON]
    record = read_record(tmp_path / "run")
    assert record["epochs"] == 1 and len(record["history"]) == 1  # stopped after 1 of 3 epochs
    assert "pruned by ThresholdPruner" in record["error"]
    # train() records the status of the RunStopped that ended the run.
    assert record["status"] == "pruned"


def run_search(
    sweep_dir: Path, *overrides: str, wait: bool = True
) -> subprocess.CompletedProcess | subprocess.Popen:
    args = ["experiment=search_budget", *TINY_SEARCH, f"hydra.sweep.dir={sweep_dir}", *overrides]
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    if not wait:
        output = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        return start_app(args, sweep_dir.parent, env=env, start_new_session=True, **output)
    return run_app(args, sweep_dir.parent, timeout=600, env=env)


def load_study(sweep_dir: Path) -> optuna.Study:
    return optuna.load_study(study_name="search_budget", storage=default_storage(sweep_dir))


def states(study: optuna.Study) -> dict[int, str]:
    return {t.number: t.state.name for t in study.get_trials(deepcopy=False)}


@pytest.mark.slow
def test_a_search_grows_and_resumes_after_sigkill_without_repeating_trials(tmp_path):
    sweep = tmp_path / "search"
    first = run_search(sweep, "hydra.sweeper.n_trials=3")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "search_budget: 3 complete, 0 pruned, 0 fail" in first.stdout
    results = OmegaConf.load(sweep / RESULTS_NAME)
    assert 0 <= results.best_value <= 1 and set(results.best_params) >= {
        "model.alpha",
        "optimizer",
        "scheduler",
    }
    assert results.best_value == max(read_record(sweep / str(n))["val/acc_best"] for n in range(3))
    finished = {n: (sweep / str(n) / "metrics.json").stat().st_mtime_ns for n in range(3)}

    # Raise n_trials to 5 and SIGKILL the search while its second new trial runs.
    search = run_search(sweep, "hydra.sweeper.n_trials=5", wait=False)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and states(load_study(sweep)).get(4) != "RUNNING":
            time.sleep(0.5)
        assert states(load_study(sweep)) == {
            0: "COMPLETE",
            1: "COMPLETE",
            2: "COMPLETE",
            3: "COMPLETE",
            4: "RUNNING",
        }
    finally:
        os.killpg(search.pid, signal.SIGKILL)
        search.wait()

    again = run_search(sweep, "hydra.sweeper.n_trials=5")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    # Trial 4 died with its process: failed, and its slot ran again as trial 5; nothing is left running.
    assert states(load_study(sweep)) == {
        0: "COMPLETE",
        1: "COMPLETE",
        2: "COMPLETE",
        3: "COMPLETE",
        4: "FAIL",
        5: "COMPLETE",
    }
    assert {n: (sweep / str(n) / "metrics.json").stat().st_mtime_ns for n in range(3)} == finished
    assert "search_budget: 5 complete, 0 pruned, 1 fail" in again.stdout

    # The winner's config is a primary config: it composes as is, trains on train + validation,
    # and builds the best trial's model.
    best = OmegaConf.load(sweep / RESULTS_NAME)
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(sweep)):
        winner = compose(
            WINNER_NAME.removesuffix(".yaml"), overrides=[f"hydra.searchpath=[file://{CONFIG_DIR}]"]
        )
    assert (
        winner.data.merge_val is True and "optuna_pruning" not in winner.callbacks and "search" not in winner
    )
    assert winner.model.alpha == best.best_params["model.alpha"] and winner.model.depth == 20
    assert read_record(best.best_run_dir)["params"] == load_study(sweep).best_trial.user_attrs["params"]


@pytest.mark.slow
def test_every_model_over_a_tiny_budget_is_pruned_before_training(tmp_path):
    sweep = tmp_path / "search"
    result = run_search(sweep, "hydra.sweeper.n_trials=3", "budget.max_params=1000")
    assert result.returncode == 1 and "no trial completed" in result.stderr
    assert "experimental" not in result.stderr  # Optuna's notices: launch/warnings_filter.py silences them
    assert "search_budget: 0 complete, 3 pruned, 0 fail" in result.stdout
    study = load_study(sweep)
    for trial in study.trials:
        assert trial.state == TrialState.PRUNED and not trial.intermediate_values
        record = read_record(sweep / str(trial.number))
        assert trial.user_attrs[REASON] == over_budget(record["params"], 1000)  # train()'s message
        assert record["status"] == "pruned" and record["epochs"] == 0 and record["params"] > 1000
        # No job ran: no checkpoint, no config, no log of a run in the trial's folder.
        assert sorted(p.name for p in (sweep / str(trial.number)).iterdir()) == ["metrics.json"]


def fake_search(sweep: Path) -> None:
    """A study as the sweeper leaves it: completed, pruned by val/acc, over budget and failed trials."""
    sweep.mkdir()
    storage = default_storage(sweep)
    study = optuna.create_study(storage=storage, study_name="search_budget", direction="maximize")
    outcomes = [
        (0.6, 300_000),
        (0.9, 900_000),
        (0.7, 1_500_000),
        ("pruned", 500_000),
        ("budget", 3_000_000),
        ("fail", 0),
    ]
    for outcome, params in outcomes:
        trial = study.ask(
            {
                "model.alpha": IntDistribution(8, 96, log=True),
                "optimizer": CategoricalDistribution(["sgd", "sam"]),
            }
        )
        trial.set_user_attr("params", params)
        trial.set_user_attr("max_params", 2_000_000)
        if outcome == "pruned":
            trial.report(0.2, 0)
            trial.set_user_attr(REASON, "pruned by MedianPruner after epoch 1")
            study.tell(trial, state=TrialState.PRUNED)
        elif outcome == "budget":
            trial.set_user_attr(REASON, "3,000,000 parameters, over budget.max_params=2,000,000: not trained")
            study.tell(trial, state=TrialState.PRUNED)
        elif outcome == "fail":
            study.tell(trial, state=TrialState.FAIL)
        else:
            study.tell(trial, outcome)
    (sweep / RESULTS_NAME).write_text(
        f"name: optuna\nbest_value: 0.9\nbest_trial: 1\nobjective: val/acc_best\nstudy_name: search_budget\n"
        f"storage: {storage}\nbest_config: {sweep / WINNER_NAME}\n"
    )


@pytest.mark.slow
def test_the_report_section_draws_a_search_without_importing_torch(tmp_path):
    fake_search(tmp_path / "search")
    # The report's path imports no torch: run it as the report would, in a fresh interpreter.
    code = (
        "import sys; from pyramid_lab.search.report import find_searches, write_search_section; "
        f"[print(write_search_section(d, {str(tmp_path / 'out')!r})) "
        f"for d in find_searches({str(tmp_path)!r})]; "
        "assert 'torch' not in sys.modules, 'the report imported torch'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    text = result.stdout
    assert "6 trials: 3 completed, 2 pruned (1 over the parameter budget before training), 1 failed" in text
    assert "optuna-dashboard sqlite:///" in text and "val/acc_best = 90.00%" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    # The top trials, best first: rank, trial number, val/acc_best (%), parameters.
    assert [row.split(" | ")[:4] for row in rows] == [
        ["| 1", "1", "90.00", "900,000"],
        ["| 2", "2", "70.00", "1,500,000"],
        ["| 3", "0", "60.00", "300,000"],
    ]
    for name in ("search_history.png", "search_importances.png", "search_size.png"):
        assert (tmp_path / "out" / name).stat().st_size > 10_000


def test_log_tree_names_are_short_unique_file_names_for_any_overrides(tmp_path):
    from pyramid_lab.runs.log_tree import link_into_log_tree, run_label

    trial = tmp_path / "multirun" / "2026-12-03" / "02-40-00" / "2"
    storage = f"++search.storage='sqlite:///{tmp_path / ('deep/' * 40)}optuna.db'"
    sampled = [f"optimizer.lr={0.1 + n / 7}" for n in range(12)]
    lists = [
        [],
        ["optimizer=adam"],
        ["experiment=search_budget", "scale=smoke", *sampled, storage, "++search.trial=2"],
        [*sampled, "module.loss.label_smoothing=0.1"],  # the same prefix as the one before, then longer
        [*sampled, "module.loss.label_smoothing=0.2"],
        ["data.root=/tmp/a/b", "data.root=-tmp-a-b"],
        ["data.root=/tmp/a/b"],
        ["data.root=-tmp-a-b"],
        ["tag=" + "é" * 300],  # multi-byte characters cut whole
        ["tag=a\nb\x00c", "tag=..hidden"],
        ["+x=" + "y" * 5000],
    ]
    labels = [run_label(trial, overrides) for overrides in lists]
    assert len(set(labels)) == len(labels)
    for label in labels:
        assert len(label.encode()) <= 120 and "/" not in label and label.isprintable()
        assert "search." not in label and "sqlite" not in label
    assert labels[1] == "2026-12-03_02-40-00_job2_optimizer=adam"  # short ones stay as they were
    assert labels[2].startswith("2026-12-03_02-40-00_job2_optimizer.lr=0.1_")
    # The search's own overrides name nothing: a trial is named by what it sampled.
    assert labels[2] == run_label(trial, sampled)
    # Each is a name the file system takes, and a second run folder with the same name gets its own.
    logs = tmp_path / "logs"
    for n, label in enumerate(labels):
        events = tmp_path / "events" / str(n)
        events.mkdir(parents=True)
        assert link_into_log_tree(events, logs, "search_budget", label).resolve() == events
    other = tmp_path / "elsewhere"
    other.mkdir()
    again = link_into_log_tree(other, logs, "search_budget", labels[1])
    assert again.resolve() == other and again.name != labels[1] and len(again.name.encode()) <= 120
    assert link_into_log_tree(tmp_path / "events" / "1", logs, "search_budget", labels[1]).name == labels[1]


def search_with_runs(sweep: Path, trials: int = 20) -> None:
    """A search as the sweeper and its trials leave it, without training: the study and records."""
    from pyramid_lab.runs.record_file import write_record
    from pyramid_lab.search.sweep import trial_row

    sweep.mkdir()
    storage = default_storage(sweep)
    study = optuna.create_study(
        storage=storage,
        study_name="search_budget",
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    space = {
        "model.alpha": IntDistribution(8, 96, log=True),
        "optimizer": CategoricalDistribution(["sgd", "sam"]),
        "optimizer.lr": FloatDistribution(0.01, 0.5, log=True),
    }
    for n in range(trials):
        trial = study.ask(space)
        trial.set_user_attr("params", 10_000 * trial.params["model.alpha"])
        trial.set_user_attr("max_params", 900_000)
        if n in (4, 9):
            trial.report(0.1, 0)
            study.tell(trial, state=TrialState.PRUNED)
            continue
        value = 0.3 + 0.5 * trial.params["model.alpha"] / 96
        study.tell(trial, value)
        overrides = [
            "experiment=search_budget",
            "scale=smoke",
            *(f"{key}={value}" for key, value in trial.params.items()),
            f"++search.storage={storage}",
            "++search.study_name=search_budget",
            f"++search.trial={n}",
            f"++row='{trial_row(n)}'",
            f"hydra.sweep.subdir={n}",
        ]
        history = [
            {"epoch": e, "train/acc": value * (e + 1) / 3, "train/loss": 2.0 / (e + 1)} for e in range(3)
        ]
        write_record(
            sweep / str(n) / "metrics.json",
            {
                "status": "completed",
                "row": trial_row(n),
                "overrides": overrides,
                "test/acc": value,
                "val/acc_best": value,
                "epochs": 3,
                "history": history,
            },
        )
    (sweep / RESULTS_NAME).write_text(
        f"name: optuna\nobjective: val/acc_best\nstudy_name: search_budget\nstorage: {storage}\n"
    )


def assert_readable(figure) -> None:
    """Every tick label and legend inside the figure, tick labels apart, legends beside the axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure).draw()
    renderer = figure.canvas.get_renderer()
    inside = figure.bbox
    for ax in figure.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            labels = [
                label
                for label, at in zip(axis.get_majorticklabels(), axis.get_majorticklocs())
                if label.get_text() and low - 1e-9 <= at <= high + 1e-9  # drawn: inside the axis range
            ]
            boxes = [label.get_window_extent(renderer) for label in labels]
            assert boxes, f"{ax.get_title()}: no tick labels"
            for box in boxes:
                assert inside.x0 - 1 <= box.x0 and box.x1 <= inside.x1 + 1, (
                    f"{ax.get_title()}: a label is cut off"
                )
                assert inside.y0 - 1 <= box.y0 and box.y1 <= inside.y1 + 1, (
                    f"{ax.get_title()}: a label is cut off"
                )
            for a, b in zip(boxes, boxes[1:]):
                assert not a.overlaps(b), f"{ax.get_title()}: tick labels overlap"
        legend = ax.get_legend()
        if legend is not None:
            box = legend.get_window_extent(renderer)
            assert not box.overlaps(ax.get_window_extent(renderer)), f"{ax.get_title()}: legend over the plot"
            assert inside.x0 - 1 <= box.x0 and box.x1 <= inside.x1 + 1, f"{ax.get_title()}: legend cut off"


@pytest.mark.slow
def test_the_search_figures_are_readable(tmp_path):
    from pyramid_lab.report.figures import table_figure
    from pyramid_lab.report.tables import build_tables
    from pyramid_lab.report.write import load_runs, write_report
    from pyramid_lab.search.importance import param_importances
    from pyramid_lab.search.report import (
        history_figure,
        importance_figure,
        load_search,
        size_figure,
        write_search_section,
    )

    sweep = tmp_path / "search"
    search_with_runs(sweep)
    study, _ = load_search(sweep)
    trials = study.get_trials(deepcopy=False)
    history = history_figure(trials, "val/acc_best")
    figures = {
        "history": history,
        "importances": importance_figure(param_importances(study, "val/acc_best")),
        "size": size_figure(trials, "val/acc_best"),
        "runs": table_figure(build_tables(load_runs(sweep))[0]),
    }
    for figure in figures.values():
        assert_readable(figure)
    # Trials are counted: the history's axis has whole numbers only, with 20 trials or 3.
    for figure in (history, history_figure(trials[:3], "val/acc_best")):
        labels = figure.axes[0].get_xticklabels()
        ticks = [label.get_text().replace("\N{MINUS SIGN}", "-") for label in labels]
        assert all(text.lstrip("-").isdigit() for text in ticks), ticks
    # The report's runs table names each trial by its number, in trial order; its bars are those rows.
    runs = figures["runs"].axes[2]
    assert [label.get_text() for label in runs.get_xticklabels()] == [
        f"trial {n:03d}" for n in range(20) if n not in (4, 9)
    ]
    # Both writers run on this fixture.
    write_report(sweep, tmp_path / "out")
    write_search_section(sweep, tmp_path / "out")
    for name in ("runs.png", "search_history.png", "search_importances.png", "search_size.png"):
        assert (tmp_path / "out" / name).stat().st_size > 10_000


def test_importances_rank_for_the_maximised_objective_and_name_their_method():
    from pyramid_lab.search.importance import param_importances

    # val/acc_best is x, except where y < 0.3 crashes the run to 0: the best trials are set apart
    # by x; the worst by y.
    study = optuna.create_study(direction="maximize")
    rng = np.random.default_rng(0)
    space = {"x": FloatDistribution(0, 1), "y": FloatDistribution(0, 1)}
    for _ in range(100):
        x, y = rng.uniform(), rng.uniform()
        study.add_trial(
            optuna.trial.create_trial(
                params={"x": x, "y": y}, distributions=space, value=x if y >= 0.3 else 0.0
            )
        )
    importances = param_importances(study, "val/acc_best")
    assert list(importances.values) == ["x", "y"] and importances.values["x"] > 0.7
    assert importances.as_record()["evaluator"] == "PED-ANOVA" and importances.direction == "maximize"
    assert "highest val/acc_best" in importances.describe()
    # What the report drew before: Optuna's default evaluator with target= ranks for LOW values.
    with pytest.warns(UserWarning, match="low `target` values"):
        naive = optuna.importance.get_param_importances(study, target=lambda t: t.values[0])
    assert list(naive)[0] == "y"
    # Too few completed trials: no values, and why.
    empty = param_importances(optuna.create_study(direction="maximize"), "val/acc_best")
    assert empty.values == {} and "0 completed" in empty.note


@pytest.mark.slow
def test_the_readme_search_completes_with_the_default_logger_at_smoke_scale(tmp_path):
    """README's command as a user types it: the default (TensorBoard) logger, the smoke scale."""
    sweep = tmp_path / "search"
    env = {key: value for key, value in os.environ.items() if key != "PYRAMID_LAB_LOGS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    result = run_app(
        ["experiment=search_budget", "scale=smoke", "hydra.sweeper.n_trials=3", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "0 fail" in result.stdout
    assert "scale=smoke fixes data.batch_size=8 for every trial" in result.stderr + result.stdout
    study = load_study(sweep)
    assert study.metric_names == ["val/acc_best"]  # what optuna-dashboard shows
    done = [t.number for t in study.trials if t.state == TrialState.COMPLETE]
    assert done
    links = {link.resolve(): link.name for link in (tmp_path / "logs" / "search_budget").iterdir()}
    for n in done:
        run = sweep / str(n)
        # The scale's batch, not the space's 64 to 256; the trial named by its number.
        assert OmegaConf.load(run / "config.yaml").data.batch_size == 8
        assert read_record(run)["row"] == f"trial {n:03d}"
        name = links[(run / "tensorboard").resolve()]
        assert len(name.encode()) <= 120 and "search." not in name
        assert any(path.name.startswith("events.out.tfevents") for path in (run / "tensorboard").iterdir())
    results = OmegaConf.load(sweep / RESULTS_NAME)
    assert results.importances.evaluator == "PED-ANOVA" and results.importances.direction == "maximize"


def test_the_scale_wins_over_the_space_and_the_command_line_over_both():
    from pyramid_lab.search.scale import scale_settings, scale_wins

    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose(
            "config", overrides=["experiment=search_budget", "scale=smoke"], return_hydra_config=True
        )
        settings = scale_settings(GlobalHydra.instance().config_loader(), cfg.hydra.runtime.choices.scale)
    assert settings["data"] == "digits" and settings["data.batch_size"] == "8"
    assert settings["trainer.precision"] == "32-true"
    params, fixed = scale_wins(cfg.hydra.sweeper.params, settings)
    assert fixed == ["data.batch_size=8"] and params["model.depth"] == "range(20, 201, 18)"
    space = parse_space(params, ["scale=smoke"], cfg.hydra.sweeper.conditions)
    assert "data.batch_size" not in space.distributions and "data.batch_size=8" in space.fixed
    again = parse_space(params, ["scale=smoke", "data.batch_size=choice(8,16)"], cfg.hydra.sweeper.conditions)
    assert again.distributions["data.batch_size"] == CategoricalDistribution([8, 16])
    # No scale, nothing fixed.
    assert scale_wins(cfg.hydra.sweeper.params, {}) == (dict(cfg.hydra.sweeper.params), [])
