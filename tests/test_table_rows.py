"""Every row of every table composes to the experiment the study ran, exactly as the sweeper
composes it: the experiment file, then the row's own override, through the whole defaults list.

A row must (1) carry the setting it is about, (2) differ from its table's baseline row only in
the keys that setting owns, and (3) differ from every other row. The baseline row of each table
is the baseline recipe itself (``experiment=paper_baseline``). docs/study.md gives the readings.
"""

from __future__ import annotations

import copy
import functools
import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from pyramid_lab.optim.schedule import counts_steps
from tests.helpers import CONFIG_DIR
from tests.table_blocks import table_block

TABLES = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("table*.yaml"))
# Keys that name a run rather than change its experiment.
IDENTITY = {"table", "row", "task_name"}


def compose_run(overrides: list[str], tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the job's resolved config without ``hydra``, the ``hydra`` node) as a Hydra job sees them.
    Nothing is written: the configs are only compared, so they are composed once per session."""
    config, hydra_node = _compose_cached(tuple(overrides))
    return copy.deepcopy(config), copy.deepcopy(hydra_node)


@functools.cache
def _compose_cached(overrides: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose(
            "config", overrides=["paths.output_dir=/nonexistent/run", *overrides], return_hydra_config=True
        )
    HydraConfig.instance().set_config(cfg)  # resolves row: ${hydra:runtime.choices.<group>}
    hydra_node = OmegaConf.to_container(cfg.hydra)
    with open_dict(cfg):
        del cfg["hydra"]
    return OmegaConf.to_container(cfg, resolve=True), hydra_node


def row_overrides(table: str, tmp_path: Path) -> list[str]:
    """The jobs' overrides as Hydra's basic sweeper makes them from ``hydra.sweeper.params``."""
    _, hydra_node = compose_run([f"experiment={table}"], tmp_path)
    params = hydra_node["sweeper"]["params"]
    assert str(hydra_node["mode"]).endswith("MULTIRUN"), f"{table} must sweep by itself"
    choices = [[f"{key}={value}" for value in str(values).split(",")] for key, values in params.items()]
    return [" ".join(combo) for combo in itertools.product(*choices)]


def compose_rows(table: str, tmp_path: Path, extra: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    rows = {}
    for override in row_overrides(table, tmp_path):
        config, _ = compose_run([f"experiment={table}", *override.split(), *extra], tmp_path)
        assert config["table"]["name"] == table
        rows[config["row"]] = config
    return rows


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat or {prefix[:-1]: {}}
    return {prefix[:-1]: node}


def changed_keys(a: dict[str, Any], b: dict[str, Any]) -> set[str]:
    fa, fb = flatten(a), flatten(b)
    changed = {k for k in fa.keys() | fb.keys() if fa.get(k, "<absent>") != fb.get(k, "<absent>")}
    return {k for k in changed if k.split(".")[0] not in IDENTITY}


def owned_by(keys: set[str], prefixes: tuple[str, ...]) -> set[str]:
    """The keys outside ``prefixes``: what a row changes that it should not."""
    return {k for k in keys if not any(k == p or k.startswith(p + ".") for p in prefixes)}


def params_of(config: dict[str, Any]) -> int:
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        net = instantiate(config["model"])
    return sum(p.numel() for p in net.parameters())


def lr_trace(config: dict[str, Any], steps_per_epoch: int = 10) -> list[float]:
    """The learning rate of each of the run's epochs under the row's scheduler; of each optimizer
    step (``steps_per_epoch`` per epoch) for a scheduler that counts steps (cosine_periodic)."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=config["optimizer"]["lr"])
    factory = instantiate(config["scheduler"])
    per_step = counts_steps(factory)
    scheduler = factory(optimizer, steps_per_epoch=steps_per_epoch) if per_step else factory(optimizer)
    lrs = []
    for _ in range(config["trainer"]["max_epochs"] * (steps_per_epoch if per_step else 1)):
        lrs.append(optimizer.param_groups[0]["lr"])
        scheduler.step(*([1.0] if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) else []))
    return lrs


# What each table's rows may change relative to its baseline row (the study changed one thing).
OWNS: dict[str, tuple[str, ...]] = {
    "table1_models": ("model",),
    "table2_depth_alpha": ("model",),
    "table3_schedulers": ("scheduler", "module.scheduler_interval"),
    "table4_optimizers": ("optimizer",),
    "table5_activations": ("activation", "model.act_layer"),
    "table6_tricks": ("data.augment", "data.train_repeats", "module.loss.label_smoothing", "model.shakedrop"),
    "table7_merge_val": ("data.merge_val",),
    "table8_final": (
        "model.shakedrop",
        "activation",
        "model.act_layer",
        "module.loss.label_smoothing",
        "scheduler",
        "data.merge_val",
        "trainer.max_epochs",
    ),
    # Ours (docs/beyond.md): one addition to the final recipe per row, then all of recipe=beyond.
    "table9_beyond": (
        "data.augment",
        "data.policy",
        "data.cutout",
        "module.mixing",
        "callbacks.tta",
        "module.scheduler.warmup_epochs",
        "module.scheduler.warmup_start_factor",
        "callbacks.ema",
        "optimizer",
    ),
}
# The report's: each table's baseline row, from its `table` block.
BASELINE_ROW = {table: table_block(table)["baseline"] for table in TABLES}
# The recipe each table's baseline row must be: the study's baseline, or its final recipe for ours.
RECIPE = {"table9_beyond": "experiment=paper_final"}


def test_every_table_is_checked():
    assert sorted(OWNS) == sorted(BASELINE_ROW) == TABLES


@pytest.mark.parametrize("table", TABLES)
def test_each_row_changes_only_what_it_is_about_and_no_two_rows_are_alike(table, tmp_path):
    rows = compose_rows(table, tmp_path)
    baseline = rows[BASELINE_ROW[table]]
    recipe, _ = compose_run([RECIPE.get(table, "experiment=paper_baseline")], tmp_path)
    # The baseline row is the study's baseline recipe (Table 1 drops the 2M budget, see its file).
    allowed = ("budget",) if table == "table1_models" else ()
    assert owned_by(changed_keys(baseline, recipe), allowed) == set()
    # module.optimizer and module.scheduler are interpolations of the optimizer and scheduler groups.
    owned = OWNS[table] + tuple(f"module.{prefix}" for prefix in OWNS[table])
    for name, config in rows.items():
        stray = owned_by(changed_keys(config, baseline), owned)
        assert stray == set(), f"{table} row {name} also changes {sorted(stray)}"
    for (a, ca), (b, cb) in itertools.combinations(rows.items(), 2):
        assert changed_keys(ca, cb), f"{table}: rows {a} and {b} compose to the same config"


def test_table1_models_are_the_named_families(tmp_path):
    rows = compose_rows("table1_models", tmp_path)
    for name, config in rows.items():
        assert config["model"]["_target_"].rsplit(".", 1)[-1] == name
    assert params_of(rows["pyramidnet196_a48"]) == 1_996_512
    assert params_of(rows["resnet20"]) == 269_722


def test_table2_rows_are_the_depth_alpha_pairs_under_the_budget(tmp_path):
    rows = compose_rows("table2_depth_alpha", tmp_path)
    params = {name: params_of(config) for name, config in rows.items()}
    assert params["pyramidnet196_a48"] == 1_996_512 and params["pyramidnet128_a64"] == 1_970_726
    assert all(n <= 2_000_000 for n in params.values()), params
    assert len(set(params.values())) == len(params)  # five different networks


def test_table3_schedules_have_the_shape_their_reading_says(tmp_path):
    rows = compose_rows("table3_schedulers", tmp_path)
    lr = {name: lr_trace(config) for name, config in rows.items()}
    assert len(lr["multistep"]) == 100
    # MultiStepLR x0.1 at epochs 32 and 64 (the study's baseline).
    assert lr["multistep"][31] == pytest.approx(0.1) and lr["multistep"][32] == pytest.approx(0.01)
    assert lr["multistep"][64] == pytest.approx(0.001)
    # One half-cosine: never rises.
    assert all(b <= a for a, b in itertools.pairwise(lr["cosine"]))
    # The periodic reading, stepped every optimizer step (10 per epoch here): falls to ~0 at the
    # end of epoch 20, back at the peak at the end of 40, ends low; no step at lr 0.
    periodic = lr["cosine_periodic"]
    assert rows["cosine_periodic"]["module"]["scheduler_interval"] == "step" and len(periodic) == 1000
    assert min(periodic) > 0 and periodic[199] == pytest.approx(periodic[200]) and periodic[200] < 1e-5
    assert periodic[399] == pytest.approx(periodic[400]) == pytest.approx(0.1, rel=1e-4)
    assert periodic[999] < 1e-5 and sum(b > a for a, b in itertools.pairwise(periodic)) >= 300
    assert lr["exp"][1] / lr["exp"][0] == pytest.approx(rows["exp"]["scheduler"]["gamma"])
    # Plateau: a linear warm-up first (then it waits for the monitored loss).
    assert lr["plateau"][0] < lr["plateau"][4] < lr["plateau"][5] == pytest.approx(0.1)


def test_table4_rows_change_the_optimizer_and_keep_the_weight_decay(tmp_path):
    rows = compose_rows("table4_optimizers", tmp_path)
    targets = {name: config["optimizer"]["_target_"] for name, config in rows.items()}
    assert targets == {
        "sgd": "torch.optim.SGD",
        "adadelta": "torch.optim.Adadelta",
        "adam": "torch.optim.Adam",
        "sam": "pyramid_lab.optim.SAM",
    }
    assert {config["optimizer"]["weight_decay"] for config in rows.values()} == {1e-4}


def test_table5_activation_reaches_the_model(tmp_path):
    for name, config in compose_rows("table5_activations", tmp_path).items():
        assert config["activation"]["name"] == name == config["model"]["act_layer"]


def test_table6_each_trick_takes_effect_alone(tmp_path):
    rows = compose_rows("table6_tricks", tmp_path)
    base = rows["none"]
    assert base["data"]["augment"]["noise_std"] == 0 and base["data"]["train_repeats"] == 1
    assert base["module"]["loss"]["label_smoothing"] == 0 and base["model"]["shakedrop"] == 0
    noise = rows["gaussian_noise"]["data"]["augment"]
    assert noise["noise_std"] == 0.5 and noise["noise_at_eval"] is False  # pixel units of [0, 1]
    assert rows["label_smoothing"]["module"]["loss"]["label_smoothing"] == 0.1
    assert rows["shakedrop"]["model"]["shakedrop"] == 0.5
    augment = rows["augment"]
    # "Crop, Rotate" with a train set that grew, in the reading this row runs: each image twice per
    # epoch with fresh draws (tricks=augment_doubled is the other reading, not a row).
    assert (
        augment["data"]["augment"]["crop_padding"] == 4 and augment["data"]["augment"]["rotate_degrees"] > 0
    )
    assert augment["data"]["train_repeats"] == 2


def test_table7_merge_val_row_trains_on_train_and_validation(tmp_path):
    rows = compose_rows("table7_merge_val", tmp_path)
    assert rows["merge_val"]["data"]["merge_val"] is True
    assert rows["none"]["data"]["merge_val"] is False


def test_table8_final_row_is_the_final_recipe(tmp_path):
    final = compose_rows("table8_final", tmp_path)["final"]
    assert final["data"]["merge_val"] is True and final["model"]["shakedrop"] == 0.5
    assert final["activation"]["name"] == "leaky_relu" and final["module"]["loss"]["label_smoothing"] == 0.1
    assert final["scheduler"]["_target_"].endswith("CosineAnnealingWarmRestarts")
    assert final["trainer"]["max_epochs"] == 230


@pytest.mark.parametrize("table", ["table6_tricks", "table7_merge_val", "table8_final"])
def test_smoke_scale_keeps_each_row_setting(table, tmp_path):
    """scale=smoke shrinks the run (data, batches, steps) but must not undo what a row is about."""
    full, smoke = compose_rows(table, tmp_path), compose_rows(table, tmp_path, ("scale=smoke",))
    for name in full:
        row, smoke_row = flatten(full[name]), flatten(smoke[name])
        for key in changed_keys(full[name], full[BASELINE_ROW[table]]) & row.keys():
            if key != "trainer.max_epochs":
                assert smoke_row[key] == row[key], (name, key)


def test_a_trick_on_the_command_line_wins_over_the_recipe(tmp_path):
    config, _ = compose_run(["experiment=paper_baseline", "tricks=merge_val"], tmp_path)
    assert config["data"]["merge_val"] is True


@pytest.mark.slow
def test_table7_row_as_the_command_line_composes_it(tmp_path):
    """The audit's own command: the row's job config, printed by the app itself."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pyramid_lab",
            "experiment=table7_merge_val",
            "tricks=merge_val",
            "hydra.mode=RUN",
            "--cfg",
            "job",
            "--resolve",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "merge_val: true" in result.stdout and "merge_val: false" not in result.stdout


@pytest.mark.slow
def test_every_row_of_table9_trains_at_smoke_scale(tmp_path):
    """Table 9's rows (ours: one addition each to the final recipe) train end to end, in-process:
    the smoke scale of `python -m pyramid_lab experiment=table9_beyond scale=smoke`, on the
    smallest PyramidNet (every row is a trick on top of the recipe, none is about the model; the
    rows' configs, the study's model included, are checked above)."""
    from pyramid_lab.train import train
    from tests.helpers import SMALL_MODEL, compose_config

    quiet = ["logger=none", "~callbacks.progress_bar", "~callbacks.predictions", "~callbacks.images"]
    for override in row_overrides("table9_beyond", tmp_path):
        name = override.split("=", 1)[1]
        overrides = ["experiment=table9_beyond", override, f"row={name}", "scale=smoke", *SMALL_MODEL, *quiet]
        record = train(compose_config(overrides, tmp_path / name))
        assert record["status"] == "completed", (name, record.get("error"))
