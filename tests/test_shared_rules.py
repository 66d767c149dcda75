"""Rules that several floors apply have one owner each (pyramid_lab.errors): how a user's mistake
is shown and the exit status it gives, and what counts as a finite number."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest

from pyramid_lab.errors import ConfigError, exit_with_error, is_finite_number, show_error
from pyramid_lab.optim.schedulers import multistep
from pyramid_lab.optim.settings import check_optimizer_numbers

PACKAGE = Path(__file__).resolve().parents[1] / "pyramid_lab"


def test_an_error_is_one_line_on_stderr_and_an_exit_status(capsys):
    assert show_error("data.root=/x is not a folder", 2) == 2
    with pytest.raises(SystemExit) as stopped:
        exit_with_error("no trial completed", 1)
    assert stopped.value.code == 1
    out, err = capsys.readouterr()
    assert out == "" and err == "error: data.root=/x is not a folder\nerror: no trial completed\n"


def _error_lines(path: Path) -> list[int]:
    """Lines of ``path`` that spell an ``error: ...`` message themselves (an f-string's text parts
    are string constants too)."""
    return [
        node.lineno
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("error:")
    ]


def test_only_the_errors_module_spells_an_error_line():
    sources = [*PACKAGE.rglob("*.py"), *(PACKAGE.parent / "hydra_plugins").rglob("*.py")]
    spelled = {
        str(path.relative_to(PACKAGE.parent)): _error_lines(path)
        for path in sorted(sources)
        if str(path.relative_to(PACKAGE.parent)) != "pyramid_lab/errors.py"
    }
    assert {path: lines for path, lines in spelled.items() if lines} == {}
    assert _error_lines(PACKAGE / "errors.py")  # the reader finds the one that is there


@pytest.mark.parametrize(
    "value, finite",
    [
        (0, True),
        (-3, True),
        (0.1, True),
        (np.float64(0.5), True),  # a float subclass, as numpy's scalars from a record
        (10**300, True),
        (10**400, False),  # beyond any float: JSON holds it, math.isfinite raises on it
        (math.nan, False),
        (math.inf, False),
        (-math.inf, False),
        (True, False),  # True == 1 to Python, never a number setting
        ("0.1", False),
        (None, False),
        ([0.1], False),
    ],
)
def test_what_counts_as_a_finite_number(value, finite):
    assert is_finite_number(value) is finite


@pytest.mark.parametrize("value", [10**400, math.nan, True])
def test_the_settings_refuse_what_is_not_a_finite_number_in_one_line(value):
    with pytest.raises(ConfigError, match=r"^optimizer.lr=.* must be a finite number$"):
        check_optimizer_numbers({"lr": value})
    with pytest.raises(ConfigError, match=r"^scheduler.gamma=.* must be in \(0, 1\]"):
        multistep(None, milestones=[1], gamma=value, max_epochs=2)
