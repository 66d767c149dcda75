"""pyramid_lab: the ShakeDrop PyramidNet study and its ablations (PyTorch Lightning + Hydra).

Run it with ``pyramid-lab [overrides]`` or ``python -m pyramid_lab [overrides]`` (docs/install.md).
"""

import importlib.util
from importlib.metadata import PackageNotFoundError, version

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
