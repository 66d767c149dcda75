"""The shipped tables' ``table`` blocks, read from their experiment files (conf/experiment/table*.yaml)
as a table sweep's runs record them: for tests that write run records by hand, and for the checks
of the blocks and of docs/study.md (tests/test_tables.py)."""

from __future__ import annotations

from typing import Any

import yaml

from tests.helpers import CONFIG_DIR

TABLES = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("table*.yaml"))


def experiment(table: str) -> dict[str, Any]:
    """The experiment file of ``table``, parsed (no Hydra: the blocks hold no interpolations)."""
    return yaml.safe_load((CONFIG_DIR / "experiment" / f"{table}.yaml").read_text())


def table_block(table: str) -> dict[str, Any]:
    """The ``table`` block of a shipped table: what its runs record as ``table``."""
    return experiment(table)["table"]


def recorded_table(table: str | None) -> dict[str, Any] | str | None:
    """What a run of ``table`` records as ``table``: the block of a shipped table, else the name."""
    return table_block(table) if table in TABLES else table


def study_numbers(table: str) -> dict[str, float]:
    """The study's test accuracy (%) per row of ``table``, for the rows where it has one."""
    rows = table_block(table).get("rows") or {}
    return {row: facts["study"] for row, facts in rows.items() if facts.get("study") is not None}


def sweep_rows(table: str) -> tuple[str, list[str]]:
    """(the swept group, its values): the table's rows, as the sweeper runs them."""
    ((group, values),) = experiment(table)["hydra"]["sweeper"]["params"].items()
    return group, str(values).split(",")
