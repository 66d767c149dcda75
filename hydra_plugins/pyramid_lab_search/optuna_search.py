"""The Hydra Sweeper adapter; the search itself is :class:`pyramid_lab.search.sweep.Search`.

hydra-optuna-sweeper 1.3.0 (the published plugin) requires optuna<3, counts ``n_trials`` per
invocation (a rerun repeats the whole budget), leaves a killed trial RUNNING, takes the objective
from the job's return value, and by default (``max_failure_rate: 0``) stops the search at the first
failed trial; this adapter keeps its configuration keys and its search-space syntax.
"""

from __future__ import annotations

import os
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class OptunaSearchSweeper(Sweeper):
    """``hydra.sweeper.*``: see conf/hydra/sweeper/optuna_search.yaml for each key."""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def sweep(self, arguments: list[str]) -> Any:
        from pyramid_lab.errors import ConfigError, exit_with_error
        from pyramid_lab.search.sweep import Search, SearchSettings

        assert self.config is not None and self.hydra_context is not None and self.launcher is not None
        try:
            search = Search(SearchSettings(**self.settings), self.config, self.hydra_context, self.launcher)
            return search.run(arguments)
        except ConfigError as error:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            exit_with_error(error, 2)  # one line, as for a run's bad input
