"""The package as a user installs it: the sdist and the wheel built from it carry the configs and
the console commands; the installed wheel trains from a folder outside the repository, and reads a
user's own experiment and model through Hydra's search path (the worked example of docs/install.md).

The installed wheel runs in a Python that cannot see the checkout: the test puts a
``sitecustomize`` first on PYTHONPATH that drops the editable install's import hooks, so that a
module or config missing from the wheel fails the test instead of being read from the checkout.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import typing
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import pyramid_lab
from pyramid_lab import config_dir
from pyramid_lab.runs.provenance import code_version
from tests.helpers import TINY

REPO = Path(__file__).resolve().parents[1]
# What a build reads; hydra_plugins/ (Hydra's namespace for plugins) only once it exists.
SOURCES = ("pyproject.toml", "setup.py", "README.md", "conf", "pyramid_lab", "hydra_plugins")
COMMANDS = {
    "pyramid-lab": "pyramid_lab.__main__:cli",
    "pyramid-lab-report": "pyramid_lab.report.__main__:main",
    "pyramid-lab-bench": "pyramid_lab.bench.__main__:console",
}
# TINY without its experiment and PyramidNet settings: the trainer limits, for any experiment.
TINY_TRAINER = [o for o in TINY if not o.startswith(("experiment=", "model."))]
NO_CHECKOUT = '''\
"""Written by tests/test_packaging.py: this Python must not import from the checkout, so the
editable install's finders and path hooks (modules named __editable__...) are dropped."""
import sys


def _editable(hook):
    return getattr(hook, "__module__", "").startswith("__editable__")


sys.meta_path[:] = [finder for finder in sys.meta_path if not _editable(finder)]
sys.path_hooks[:] = [hook for hook in sys.path_hooks if not _editable(hook)]
sys.path_importer_cache.clear()
'''


@dataclass(frozen=True)
class Installed:
    """A wheel built from an sdist of the working tree, installed with ``pip --target``."""

    source: Path  # the copy of the working tree it was built from (others may edit the checkout)
    sdist: Path
    wheel: Path
    site: Path  # the install: the packages, and bin/ with the console commands
    guard: Path  # the folder of the sitecustomize that hides the checkout
    version: str

    def env(self, *pythonpath: str | Path) -> dict[str, str]:
        environ = {key: value for key, value in os.environ.items() if key != "HYDRA_FULL_ERROR"}
        paths = [self.guard, self.site, *pythonpath]
        environ.update(PYTHONPATH=os.pathsep.join(map(str, paths)), OMP_NUM_THREADS="1")
        return environ


def run(
    command: list[str | Path], cwd: Path, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def check(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"{result.args}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result


class Started:
    """A command started in the background in ``cwd``; :meth:`result` waits for it (once)."""

    def __init__(self, command: list[str | Path], cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        cwd.mkdir(parents=True, exist_ok=True)
        parts = [str(part) for part in command]
        pipe = subprocess.PIPE
        self.process = subprocess.Popen(parts, cwd=cwd, env=env, stdout=pipe, stderr=pipe, text=True)
        self._result: subprocess.CompletedProcess | None = None

    def result(self, timeout: float = 300) -> subprocess.CompletedProcess:
        if self._result is None:
            stdout, stderr = self.process.communicate(timeout=timeout)
            self._result = subprocess.CompletedProcess(
                self.process.args, self.process.returncode, stdout, stderr
            )
        return self._result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("package")
    # A copy of the working tree: building in the checkout would write build/ and *.egg-info there,
    # and setuptools reuses build/, which can carry modules deleted since the last build.
    source = root / "source"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=ignore)
        elif (REPO / name).is_file():
            shutil.copy2(REPO / name, source / name)
    dist = root / "dist"
    # The sdist through the build backend's own hook (what `python -m build` calls), then the wheel
    # as pip builds it from that sdist: conf/ must survive both.
    build_sdist = "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"
    sdist = dist / check(run([sys.executable, "-c", build_sdist, dist], source)).stdout.split()[-1]
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    check(run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", dist, sdist], root))
    wheel = next(dist.glob("pyramid_lab-*.whl"))
    site = root / "site"
    check(run([*pip, "install", "--no-deps", "--no-compile", "--target", site, wheel], root))
    guard = root / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(NO_CHECKOUT)
    version = next(importlib.metadata.distributions(name="pyramid_lab", path=[str(site)])).version
    return Installed(source=source, sdist=sdist, wheel=wheel, site=site, guard=guard, version=version)


def docs_example(project: Path) -> Path:
    """Writes the worked example of docs/install.md (its code blocks under a file name ``my_...``)
    into ``project``; returns it."""
    text = (REPO / "docs" / "install.md").read_text()
    blocks = re.findall(r"\*\*`(my_[^`]+)`\*\*\n\n```(?:python|yaml)\n(.*?)```", text, flags=re.S)
    assert {name for name, _ in blocks} == {
        "my_models.py",
        "my_conf/model/tiny_cnn.yaml",
        "my_conf/experiment/my_table.yaml",
    }
    for name, body in blocks:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(body)
    return project


@pytest.fixture(scope="module")
def started(installed: Installed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Started]]:
    """The installed wheel's commands, all started at once (each spends seconds importing torch)."""
    root = tmp_path_factory.mktemp("runs")
    project = docs_example(root / "my_project")
    bin_dir = installed.site / "bin"
    commands = {
        # As the issue asks: python -m pyramid_lab experiment=quickstart, at tests/conftest.py's scale.
        "quickstart": ([sys.executable, "-m", "pyramid_lab", *TINY, "hydra.run.dir=run"], root / "work"),
        # As docs/install.md says: PYTHONPATH=. pyramid-lab 'hydra.searchpath=[file://./my_conf]' ...;
        # one row of the table (the user's model), trained for two batches.
        "my_table": (
            [
                bin_dir / "pyramid-lab",
                "hydra.searchpath=[file://./my_conf]",
                "experiment=my_table",
                "hydra.sweeper.params.model=tiny_cnn",
                "hydra.sweep.dir=sweep",
                *TINY_TRAINER,
            ],
            project,
        ),
        "pyramid-lab --help": ([bin_dir / "pyramid-lab", "--help"], root / "help"),
        "pyramid-lab-report --help": ([bin_dir / "pyramid-lab-report", "--help"], root / "help"),
        "pyramid-lab-bench --help": ([bin_dir / "pyramid-lab-bench", "--help"], root / "help"),
    }
    # PYTHONPATH=. as in the docs: the user's folder, for their module (the others do not need it).
    launched = {name: Started(command, cwd, installed.env(".")) for name, (command, cwd) in commands.items()}
    yield launched
    for command in launched.values():  # those a failed test left running
        if command.process.poll() is None:
            command.process.kill()
            command.process.communicate()


@pytest.mark.slow
def test_the_sdist_and_the_wheel_carry_every_config_module_and_command(installed, tmp_path):
    conf = installed.source / "conf"
    configs = {p.relative_to(conf).as_posix() for p in conf.rglob("*.yaml")}
    assert {"config.yaml", "experiment/quickstart.yaml", "hydra/help/pyramid_lab.yaml"} <= configs
    with tarfile.open(installed.sdist) as sdist:
        top = f"{installed.sdist.name.removesuffix('.tar.gz')}/conf/"
        in_sdist = {
            n.removeprefix(top) for n in sdist.getnames() if n.startswith(top) and n.endswith(".yaml")
        }
    assert in_sdist == configs
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = dict(re.findall(r"^(\S+) = (\S+)$", wheel.read(entry_points).decode(), flags=re.M))
    assert {
        n.removeprefix("pyramid_lab/conf/") for n in names if n.startswith("pyramid_lab/conf/")
    } >= configs
    # Every module of the tree, hydra_plugins/ included: no package left out of setup.py's list.
    modules = {
        p.relative_to(installed.source).as_posix()
        for top_level in ("pyramid_lab", "hydra_plugins")
        if (installed.source / top_level).is_dir()
        for p in (installed.source / top_level).rglob("*.py")
    }
    assert modules <= names, sorted(modules - names)
    assert "hydra_plugins/__init__.py" not in names  # a namespace: it would hide every other plugin
    assert scripts == COMMANDS
    assert all((installed.site / "bin" / command).is_file() for command in COMMANDS)
    # The checkout is out of reach of the installed wheel's Python: without the install, no package.
    alone = run(
        [sys.executable, "-c", "import pyramid_lab"],
        tmp_path,
        {**installed.env(), "PYTHONPATH": str(installed.guard)},
    )
    assert alone.returncode != 0 and "No module named 'pyramid_lab'" in alone.stderr, alone.stderr


@pytest.mark.slow
def test_the_installed_wheel_trains_the_quickstart_outside_the_checkout(installed, started):
    check(started["quickstart"].result())
    run_dir = started["quickstart"].cwd / "run"
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "completed" and record["epochs"] == 1
    # The configs came from the wheel (and so did the package that looked them up).
    sources = yaml.safe_load((run_dir / ".hydra" / "hydra.yaml").read_text())["hydra"]["runtime"]
    main = next(s for s in sources["config_sources"] if s["provider"] == "main")
    assert (main["schema"], main["path"]) == ("file", str(installed.site / "pyramid_lab" / "conf"))
    # The record names the code: the wheel's version, and no commit (an installed wheel).
    assert record["version"] == installed.version == "0.1.0"
    assert record["git_commit"] is None


@pytest.mark.slow
def test_the_command_runs_a_users_own_experiment_and_model_from_their_folder(installed, started):
    check(started["my_table"].result())
    project = started["my_table"].cwd
    record = json.loads((project / "sweep" / "0" / "metrics.json").read_text())
    assert record["status"] == "completed"
    assert (record["model"], record["table"], record["row"]) == ("TinyCNN", "my_table", "tiny_cnn")
    assert record["params"] == 16 * 27 + 2 * 16 + 32 * 16 * 9 + 2 * 32 + 32 * 10 + 10  # TinyCNN(width=16)
    assert record["version"] == installed.version


@pytest.mark.slow
def test_every_command_has_help_that_lists_the_groups_and_the_common_commands(installed, started):
    app_help = check(started["pyramid-lab --help"].result()).stdout
    # Every config group of conf/ (Hydra's own aside), with all its options, as the wheel has them.
    listed: dict[str, str] = {}
    for group, options in re.findall(r"^([\w/]+): (.+)$", app_help, flags=re.M):
        listed.setdefault(group, options)
    conf = installed.source / "conf"
    expected = {
        folder.relative_to(conf).as_posix(): ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
        for folder in conf.rglob("*")
        if folder.is_dir() and any(folder.glob("*.yaml")) and folder.relative_to(conf).parts[0] != "hydra"
    }
    assert {"experiment", "model", "tricks"} <= set(expected)
    assert {group: listed.get(group) for group in expected} == expected
    report_help = check(started["pyramid-lab-report --help"].result()).stdout
    assert report_help.startswith("usage: pyramid-lab-report ") and "DIR" in report_help
    assert check(started["pyramid-lab-bench --help"].result()).stdout.startswith("usage: pyramid-lab-bench ")
    assert "== Common commands ==" in app_help  # conf/hydra/help/pyramid_lab.yaml
    assert "pyramid-lab-report" in app_help and "hydra.searchpath" in app_help


def test_every_console_command_is_a_function_that_returns_an_exit_status():
    """The installed commands (pyproject.toml's [project.scripts]) name functions; a console script
    exits with what its function returns, so that must be None or an exit code, never a result."""
    scripts = {
        entry.name: entry.value
        for entry in importlib.metadata.entry_points(group="console_scripts")
        if entry.dist is not None and entry.dist.name == "pyramid_lab"
    }
    assert scripts == COMMANDS
    for command, target in scripts.items():
        module, _, name = target.partition(":")
        function = getattr(importlib.import_module(module), name, None)
        assert callable(function), f"{command} = {target}: no such function"
        assert typing.get_type_hints(function).get("return") in (int, type(None)), command


def test_an_editable_install_reads_the_checkouts_configs():
    if Path(pyramid_lab.__file__).resolve().parent != REPO / "pyramid_lab":
        pytest.skip("pyramid_lab is not imported from this checkout")
    assert Path(config_dir()) == REPO / "conf"
    assert pyramid_lab.__version__ == importlib.metadata.version("pyramid_lab")


def git(cwd: Path, *args: str) -> str:
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main"]
    return subprocess.run(
        ["git", *identity, *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_code_version_names_the_commit_of_a_checkout_only(tmp_path, monkeypatch):
    checkout = tmp_path / "checkout"
    (checkout / "pyramid_lab").mkdir(parents=True)
    (checkout / "pyramid_lab" / "__init__.py").write_text("")
    git(checkout, "init", "-q")
    git(checkout, "add", ".")
    git(checkout, "commit", "-q", "-m", "one")
    head = git(checkout, "rev-parse", "HEAD").strip()
    package = checkout / "pyramid_lab"
    assert code_version(package) == {
        "version": pyramid_lab.__version__,
        "git_commit": head,
        "git_dirty": False,
    }
    (package / "new.py").write_text("")
    assert code_version(package)["git_dirty"] is True
    # A wheel installed in a virtual environment inside some repository is not a checkout of ours.
    in_a_venv = checkout / ".venv" / "lib" / "site-packages" / "pyramid_lab"
    in_a_venv.mkdir(parents=True)
    assert code_version(in_a_venv) == {
        "version": pyramid_lab.__version__,
        "git_commit": None,
        "git_dirty": None,
    }
    assert code_version(tmp_path)["git_commit"] is None  # no repository at all
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))  # no git executable
    assert code_version(package)["git_commit"] is None


HELP_PROBE = """\
import importlib, sys
command, target = sys.argv[1], sys.argv[2]
sys.argv = [f"/venv/bin/{command}", "--help"]  # what a console script's Python sees
module, _, name = target.partition(":")
try:
    getattr(importlib.import_module(module), name)()
except SystemExit:
    pass
heavy = ("torch", "pytorch_lightning", "lightning_fabric", "matplotlib", "statsmodels", "optuna")
print("imported:", *[m for m in heavy if m in sys.modules])
"""


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_answers_help_with_its_own_name_before_importing_torch(command, tmp_path):
    # Not timed (a shared machine's timings say little); what made --help slow was importing torch
    # and Lightning (seconds) before reading the arguments.
    result = check(run([sys.executable, "-c", HELP_PROBE, command, COMMANDS[command]], tmp_path))
    assert result.stdout.rstrip().splitlines()[-1] == "imported:", result.stdout
    first = result.stdout.lstrip().splitlines()[0]
    assert first.startswith(f"usage: {command} " if command != "pyramid-lab" else "pyramid-lab "), first
