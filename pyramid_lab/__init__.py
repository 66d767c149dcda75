"""pyramid_lab: the ShakeDrop PyramidNet study and its ablations (PyTorch Lightning + Hydra).

Run it with ``pyramid-lab [overrides]`` or ``python -m pyramid_lab [overrides]`` (docs/install.md).
"""

import importlib
import importlib.util
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    # From the installed package's metadata (pyproject.toml), the one place the version is written.
    __version__ = version("pyramid_lab")
except PackageNotFoundError:  # imported from a source folder that was never pip-installed
    __version__ = "0+unknown"


def config_dir() -> str:
    """The folder of the configs, the package ``pyramid_lab.conf``: the checkout's conf/ in an
    editable install, site-packages/pyramid_lab/conf from a wheel (pyproject.toml maps the one into
    the other). The app and the tests both read it here, so they cannot disagree."""
    spec = importlib.util.find_spec("pyramid_lab.conf")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the configs (package pyramid_lab.conf) are not installed: pip install the package "
            '(in a checkout: pip install -e ".[dev]", again after a pull that changed pyproject.toml)'
        )
    return spec.submodule_search_locations[0]


def command_name(module: str) -> str:
    """How the user started a command, for its usage line: the console script's name
    (``pyramid-lab-report``), else ``python -m <module>``."""
    import os
    import sys

    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return name if name.startswith("pyramid-lab") else f"python -m {module}"


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) that imports each public name of ``package`` from the
    module ``exports`` maps it to on first use: the commands' ``--help`` stays fast (no torch,
    matplotlib or statsmodels before it is needed)."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)

    return __getattr__
