"""The architecture as the folder list shows it: entry points on top, one concern per folder, and
imports in one direction (the parts know neither Lightning nor Hydra; the report no torch)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pyramid_lab"


def test_the_top_level_holds_the_entry_points_only():
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert modules == ["__init__.py", "__main__.py", "build.py", "errors.py", "evaluate.py", "train.py"]


@pytest.mark.parametrize(
    "package, forbidden",
    [
        ("pyramid_lab.models", ["pytorch_lightning", "lightning", "hydra", "omegaconf"]),
        ("pyramid_lab.optim", ["pytorch_lightning", "lightning", "hydra", "omegaconf"]),
        ("pyramid_lab.data", ["hydra", "omegaconf"]),
        ("pyramid_lab.report", ["torch"]),
        ("pyramid_lab.runs.record_file", ["torch"]),
        ("pyramid_lab.search.report", ["torch"]),  # the report's search section
        # What training writes for the report: below both, and readable without torch.
        ("pyramid_lab.runs.predictions_file, pyramid_lab.runs.pictures", ["torch", "pytorch_lightning"]),
    ],
)
def test_imports_go_one_way(package, forbidden):
    code = f"import sys, {package}; print(' '.join(m for m in {forbidden!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"{package} imports {result.stdout.strip()}"


def imported(source: str, package: str) -> set[str]:
    """Every module the code ``source`` of a module in ``package`` imports, at the top or inside a
    function (a lazy import is still an import): ``from a.b import c`` counts as ``a.b`` and
    ``a.b.c`` (``c`` may be a module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module) if part)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize(
    "folder, above",
    [
        # Training writes what the report reads (the predictions file, the pictures) through runs/.
        ("training", ["pyramid_lab.report", "pyramid_lab.search", "pyramid_lab.bench", "pyramid_lab.launch"]),
        ("runs", ["pyramid_lab.report", "pyramid_lab.search", "pyramid_lab.bench", "pyramid_lab.launch"]),
    ],
)
def test_no_module_imports_a_floor_above_its_own(folder, above):
    modules = sorted((PACKAGE / folder).rglob("*.py"))
    assert modules, folder
    upward = {}
    for path in modules:
        package = ".".join(path.relative_to(PACKAGE.parent).parent.parts)
        names = imported(path.read_text(), package)
        upward[str(path.relative_to(PACKAGE.parent))] = sorted(
            name for name in names if any(name == a or name.startswith(f"{a}.") for a in above)
        )
    assert {path: names for path, names in upward.items() if names} == {}


def test_the_import_reader_sees_every_spelling():
    source = (
        "import pyramid_lab.report.tables\n"
        "from pyramid_lab import report\n"
        "from ..report import collect\n"
        "def lazy():\n    from pyramid_lab.report.significance import compare\n"
    )
    assert imported(source, "pyramid_lab.training") >= {
        "pyramid_lab.report.tables",
        "pyramid_lab.report",
        "pyramid_lab.report.collect",
        "pyramid_lab.report.significance",
    }
