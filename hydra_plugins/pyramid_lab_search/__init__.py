"""pyramid_lab's Optuna sweeper for Hydra (``hydra/sweeper=optuna_search``; docs/search.md).

Hydra discovers sweepers by importing every module under the ``hydra_plugins`` namespace package;
this one stays cheap to import (Optuna and torch load only when a search starts).
"""
