"""Nothing read back from a file runs code: a checkpoint's saved config, the study's pruner, the
best trial's overrides and the report's inputs are checked against pyramid_lab/runs/trust.py's
allow-list of ``_target_`` values before anything instantiates them.

Every hostile file plants ``{_target_: builtins.open, _args_: [PWNED, w]}``, which creates PWNED when
Hydra instantiates it. Each entry point must leave PWNED absent and stop with one ``error:`` line
naming the key and the target; where ``trust_checkpoint=true`` applies, the same file goes through,
and the tests that load it trusted see PWNED appear: the plant is live, so its absence means
something.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch
from omegaconf import OmegaConf

from pyramid_lab.errors import ConfigError
from pyramid_lab.runs.recorder import RUN_STATE_KEY
from pyramid_lab.runs.trust import UntrustedConfig, check_trusted
from pyramid_lab.search.bookkeeping import default_storage
from pyramid_lab.search.pruning import PRUNER_ATTR, OptunaPruning
from pyramid_lab.search.results import RESULTS_NAME
from pyramid_lab.search.sweep import Search
from pyramid_lab.train import train
from tests.helpers import CONFIG_DIR, TINY, compose_config, run_app
from tests.test_search import TINY_SEARCH, fake_search
from tests.test_table_rows import compose_run

optuna.logging.set_verbosity(optuna.logging.WARNING)


def opener(pwned: Path) -> dict:
    """A config node that creates ``pwned`` when instantiated."""
    return {"_target_": "builtins.open", "_args_": [str(pwned), "w"]}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One tiny real run (in-process): its folder, with config.yaml, metrics.json and last.ckpt."""
    run_dir = tmp_path_factory.mktemp("trust") / "run"
    train(compose_config(list(TINY), run_dir))
    return run_dir


def planted_checkpoint(trained: Path, dest: Path, pwned: Path) -> Path:
    """The run's last.ckpt with its saved config's optimizer replaced by ``opener(pwned)``."""
    checkpoint = torch.load(trained / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    checkpoint[RUN_STATE_KEY]["config"]["optimizer"] = opener(pwned)
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, dest)
    return dest


def one_error_line(result: subprocess.CompletedProcess) -> str:
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return errors[0]


def refused(args: list[str], run_dir: Path) -> str:
    """``error: MESSAGE`` for the ConfigError that the CLI's run (pyramid_lab.__main__.run) raises
    on ``args``, in-process: the CLI prints it as its one line (the mode=test case checks that)."""
    from pyramid_lab.__main__ import run

    with pytest.raises(ConfigError) as info:
        run(compose_config(args, run_dir), args)
    assert "\n" not in str(info.value), info.value
    return f"error: {info.value}"


def assert_names_the_plant(line: str) -> None:
    assert "optimizer._target_='builtins.open'" in line and "trust_checkpoint=true" in line, line


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["test", "predict"])
def test_test_and_predict_refuse_a_planted_target_in_the_checkpoints_config(trained, tmp_path, mode):
    pwned = tmp_path / "pwned"
    ckpt = planted_checkpoint(trained, tmp_path / "planted.ckpt", pwned)
    args = [f"mode={mode}", f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'out'}"]
    if mode == "test":  # the command line, as a user meets it
        line = one_error_line(run_app(args, cwd=tmp_path))
    else:  # the same entry point in-process: the CLI's error path is the same
        line = refused(args[:-1], tmp_path / "out")
    assert_names_the_plant(line)
    assert str(ckpt) in line and not pwned.exists()
    if mode == "test":
        # Trusted, the same file is loaded as it asks: the plant is live (the optimizer is
        # instantiated, creating the file), and the test still runs on the weights.
        result = run_app([*args, "trust_checkpoint=true"], cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        assert pwned.exists() and "completed: test/acc=" in result.stdout


@pytest.mark.slow
def test_a_resume_refuses_a_planted_checkpoint_and_trusted_never_instantiates_it(trained, tmp_path):
    pwned = tmp_path / "pwned"
    ckpt = planted_checkpoint(trained, tmp_path / "planted.ckpt", pwned)
    # In-process, as the command line composes it (the CLI's error line: the mode=test case).
    args = [*TINY, "trainer.max_epochs=2", f"ckpt_path={ckpt}"]
    line = refused(args, tmp_path / "run")
    assert_names_the_plant(line)
    assert not pwned.exists() and not (tmp_path / "run" / "metrics.json").exists()  # nothing recorded
    # Trusted, the resume continues from its weights and states; it builds everything from the
    # composed config, never from the checkpoint's, so the plant stays inert.
    train(compose_config([*args, "trust_checkpoint=true"], tmp_path / "run"))
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["status"] == "completed" and record["epochs"] == 2 and not pwned.exists()


def test_planted_hyper_parameters_are_refused_too(trained, tmp_path):
    """Lightning's load_from_checkpoint would instantiate these; no pyramid_lab run writes targets there."""
    from pyramid_lab.runs.checkpoint import load_checkpoint

    checkpoint = torch.load(trained / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["ema"] = [{"x": opener(tmp_path / "pwned")}]
    torch.save(checkpoint, tmp_path / "hp.ckpt")
    with pytest.raises(
        UntrustedConfig, match=r"hyper_parameters names ema\[0\]\.x\._target_='builtins.open'"
    ):
        load_checkpoint(tmp_path / "hp.ckpt")
    assert load_checkpoint(tmp_path / "hp.ckpt", trust=True)["hyper_parameters"]["ema"]


def planted_study(tmp_path: Path, pwned: Path) -> tuple[str, int]:
    storage = default_storage(tmp_path)
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    # Whoever can write to the storage (a shared database server) plants the pruner.
    study.set_user_attr(
        PRUNER_ATTR,
        {"_target_": "optuna.pruners.PatientPruner", "wrapped_pruner": opener(pwned), "patience": 1},
    )
    return storage, study.ask().number


def test_a_search_trial_refuses_a_planted_pruner_in_the_study(tmp_path):
    pwned = tmp_path / "pwned"
    storage, trial = planted_study(tmp_path, pwned)
    cfg = compose_config(
        [
            "experiment=search_budget",
            *TINY_SEARCH,
            "model.depth=8",
            "model.alpha=4",
            f"search.storage='{storage}'",
            "search.study_name=s",
            f"search.trial={trial}",
        ],
        tmp_path / "run",
    )
    # A trial's job, as the launcher runs it: it stops at fit's start, recorded as failed.
    with pytest.raises(UntrustedConfig) as refused:
        train(cfg)
    message = str(refused.value)
    assert "\n" not in message and "wrapped_pruner._target_='builtins.open'" in message
    assert "user attribute pruner of study s" in message and "trust_checkpoint=true" in message
    assert not pwned.exists()
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["status"] == "failed" and "builtins.open" in record["error"]
    # trust=true (trust_checkpoint=true in the trial's config) instantiates it: the plant is live.
    callback = OptunaPruning(storage, "s", trial, trust=True)
    callback.setup(SimpleNamespace(is_global_zero=True), None, "fit")
    assert pwned.exists()


def test_the_best_trials_overrides_from_the_storage_are_checked_before_best_config_is_written(tmp_path):
    def compose(_config, overrides):
        return compose_config(overrides, tmp_path)

    search = SimpleNamespace(
        storage_url="sqlite:///db",
        config=OmegaConf.create({"trust_checkpoint": False}),
        hydra_context=SimpleNamespace(config_loader=SimpleNamespace(load_sweep_config=compose)),
    )
    assert Search._winner_config(search, ["optimizer=adam"]).optimizer._target_ == "torch.optim.Adam"
    with pytest.raises(
        UntrustedConfig, match=r"overrides in sqlite:///db names optimizer._target_='os.system'"
    ):
        Search._winner_config(search, ["optimizer._target_=os.system"])
    with pytest.raises(UntrustedConfig, match="an interpolation"):
        Search._winner_config(search, ["optimizer.lr=${oc.create:{_target_: os.system}}"])
    search.config.trust_checkpoint = True
    assert Search._winner_config(search, ["optimizer._target_=os.system"]).optimizer._target_ == "os.system"


@pytest.mark.slow
def test_the_report_instantiates_nothing_from_run_or_sweep_folders(trained, tmp_path):
    pwned = tmp_path / "pwned"
    root = tmp_path / "runs"
    run = root / "run"
    shutil.copytree(trained, run, ignore=shutil.ignore_patterns("*.ckpt"))
    config = OmegaConf.load(run / "config.yaml")
    config.optimizer = opener(pwned)
    OmegaConf.save(config, run / "config.yaml")
    record = json.loads((run / "metrics.json").read_text())
    record["optimizer"] = opener(pwned)
    (run / "metrics.json").write_text(json.dumps(record))
    # A sweep folder whose results name a storage that does not exist (opening it would create it)
    # and carry planted targets; its own optuna.db holds a planted pruner.
    sweep = root / "sweep"
    fake_search(sweep)
    study = optuna.load_study(study_name="search_budget", storage=default_storage(sweep))
    study.set_user_attr(PRUNER_ATTR, opener(pwned))
    missing_db = tmp_path / "pwned.db"
    (sweep / RESULTS_NAME).write_text(
        OmegaConf.to_yaml(
            {
                "name": "optuna",
                "study_name": "search_budget",
                "storage": f"sqlite:///{missing_db}",
                "objective": "val/acc_best",
                "best_value": None,
                "pruner": opener(pwned),
                "sampler": {"_target_": "hydra.utils.get_class", "path": "os.system"},
            }
        )
    )
    from pyramid_lab.report.__main__ import main

    assert main([str(root), "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "results.md").is_file()
    assert not pwned.exists() and not missing_db.exists()


def test_the_report_never_opens_a_missing_sqlite_storage_that_would_create_it(tmp_path):
    from pyramid_lab.errors import ConfigError
    from pyramid_lab.search.report import load_search

    sweep, planted_db = tmp_path / "sweep", tmp_path / "elsewhere" / "pwned.db"
    sweep.mkdir()
    planted_db.parent.mkdir()
    (sweep / RESULTS_NAME).write_text(f"study_name: s\nstorage: sqlite:///{planted_db}\n")
    with pytest.raises(ConfigError, match=f"names storage sqlite:///{planted_db}, which does not exist"):
        load_search(sweep)
    assert not planted_db.exists()  # SQLAlchemy would have created it (a 100 kB database)


OWN_FILES = sorted(p for p in CONFIG_DIR.rglob("*.yaml") if "hydra" not in p.relative_to(CONFIG_DIR).parts)


def test_every_option_of_every_group_passes_the_allow_list():
    """The allow-list never refuses the package's own targets: each file of conf/ as written (every
    option of every group; hydra/ is Hydra's own and never saved in a run), and every experiment
    composed and resolved as a run saves it in its checkpoints."""
    assert len(OWN_FILES) > 80  # 88 on 2026-12-03
    for path in OWN_FILES:
        check_trusted(OmegaConf.load(path), str(path), resolved=False)
    for experiment in [None, *sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))]:
        config, _ = compose_run([f"experiment={experiment}"] if experiment else [], Path("."))
        check_trusted(config, f"experiment={experiment}")


@pytest.mark.parametrize(
    "target, why",
    [
        ("builtins.open", "outside the allowed packages"),
        ("os.system", "outside the allowed packages"),
        # A pyramid_lab spelling of numpy.load, and of torch.load: judged by what they are.
        ("pyramid_lab.evaluate.np.load", "a function of numpy"),
        ("torch.nn.functional.torch.load", "a function of torch.serialization"),
        # pyramid_lab's own functions other than builders: this one writes any file.
        ("pyramid_lab.runs.atomic.atomic_write", "a function of pyramid_lab.runs.atomic"),
        ("pyramid_lab.no_such_module.X", "cannot be imported"),
        ("builtins.open; import os", "not a dotted path of public Python names"),
        ("pyramid_lab.bench.__main__.main", "not a dotted path of public Python names"),
    ],
)
def test_targets_are_judged_by_what_they_resolve_to(target, why):
    with pytest.raises(UntrustedConfig, match=why):
        check_trusted({"model": {"net": [{"_target_": target}]}}, "a file")
    # hydra.utils.get_class's path is a target of its own.
    with pytest.raises(UntrustedConfig, match=r"base_optimizer.path="):
        check_trusted({"base_optimizer": {"_target_": "hydra.utils.get_class", "path": target}}, "a file")
    check_trusted({"model": {"_target_": target}}, "a file", trust=True)


def test_get_class_names_its_class_by_path_alone():
    sgd = {"_target_": "hydra.utils.get_class", "path": "torch.optim.SGD"}
    check_trusted({"base_optimizer": sgd}, "a file")
    # Through _args_ the class would escape the path check (SAM calls its base_optimizer).
    popen = {"_target_": "hydra.utils.get_class", "_args_": ["subprocess.Popen"]}
    with pytest.raises(UntrustedConfig, match=r"base_optimizer._target_='hydra.utils.get_class', given more"):
        check_trusted({"base_optimizer": popen}, "a file")


def test_mode_test_fetches_nothing_a_checkpoint_names(trained, tmp_path):
    # A saved config may name a data set that downloads from the file's choice of address into
    # the file's choice of folder: mode=test must not fetch it unless the user asks.
    from pyramid_lab.evaluate import evaluate

    checkpoint = torch.load(trained / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    root = tmp_path / "planted_root"
    bait = tmp_path / "archive.tar.gz"
    bait.write_bytes(b"not an archive")
    checkpoint[RUN_STATE_KEY]["config"]["data"]["dataset"] = {
        "_target_": "pyramid_lab.data.CINIC10",
        "root": str(root),
        "download": True,
        "url": bait.as_uri(),
    }
    ckpt = tmp_path / "planted.ckpt"
    torch.save(checkpoint, ckpt)
    overrides = ["mode=test", f"ckpt_path={ckpt}"]
    with pytest.raises(
        ConfigError, match=r"data\.dataset\.root=.* does not exist; set data\.dataset\.download=true"
    ):
        evaluate(compose_config(overrides, tmp_path / "test"), overrides=overrides)
    assert not root.exists()  # nothing fetched or unpacked there
    # The user's own override still downloads (here: the bait, refused as no archive).
    overrides.append("data.dataset.download=true")
    with pytest.raises(ConfigError, match="cannot be unpacked") as refused:
        evaluate(compose_config(overrides, tmp_path / "test2"), overrides=overrides)
    assert "\n" not in str(refused.value)
    assert (root / "archive.tar.gz").exists()
