"""A table sweep's ``table`` block as its runs recorded it: the table's name, its baseline row, and
per row the study's number, the study's name for it and the reading it runs.

The block is written once, in the table's experiment file (conf/experiment/table1_models.yaml
documents it), and every job of the sweep records it in its metrics.json: the report reads a
table's study numbers and baseline row from its runs, so a new table needs no code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyramid_lab.report.inputs import RecordError


@dataclass(frozen=True)
class RowFacts:
    """What the table block says about one row. ``study``: the study's test accuracy (%), None
    where the study has no such row; ``label``: the study's name for it; ``reading``: what it runs."""

    study: float | None = None
    label: str | None = None
    reading: str | None = None


@dataclass(frozen=True)
class TableBlock:
    """A table's ``table`` block.

    Attributes:
        name: the table's name (the runs' ``table``).
        title: what the table varies, None when not given.
        baseline: the row every other row is compared with, None when not given.
        rows: facts per row, in the block's order (rows it does not name have none).
    """

    name: str
    title: str | None = None
    baseline: str | None = None
    rows: Mapping[str, RowFacts] = field(default_factory=dict)

    def study(self, row: str | None) -> float | None:
        """The study's test accuracy (%) for ``row``, None where the study has none."""
        facts = self.rows.get(row or "")
        return None if facts is None else facts.study

    def study_difference(self, row: str | None) -> float | None:
        """The study's own difference (points) of ``row`` from the baseline row, or None."""
        value, base = self.study(row), self.study(self.baseline)
        return None if value is None or base is None else value - base


def read_block(value: Any) -> tuple[str | None, TableBlock | None]:
    """A record's ``table`` field as (the table's name, its block).

    A name alone (a record of a run from before the blocks, or ``table=<name>`` given by hand)
    has no block: its rows get no study numbers.

    Raises:
        RecordError: a block whose name, baseline or rows do not have the documented types.
    """
    if value is None or value == "":
        return None, None
    if not isinstance(value, Mapping):
        return str(value), None
    name = value.get("name")
    if not isinstance(name, str) or not name:
        raise RecordError("'table' is a block without a 'name' (expected the table's name, a string)")
    rows = value.get("rows") or {}
    if not isinstance(rows, Mapping):
        raise RecordError(f"'table.rows' of {name} must map each row to its facts")
    return name, TableBlock(
        name=name,
        title=_text(value, "title", f"the table block of {name}"),
        baseline=_text(value, "baseline", f"the table block of {name}"),
        rows={str(row): _row_facts(name, str(row), facts) for row, facts in rows.items()},
    )


def common_block(name: str, blocks: Sequence[TableBlock | None]) -> tuple[TableBlock | None, str | None]:
    """The block a table's runs recorded (the one most of them recorded) and a note when they
    recorded different ones (the experiment file changed between runs)."""
    recorded = [block for block in blocks if block is not None]
    if not recorded:
        return None, None
    distinct: list[TableBlock] = []
    for block in recorded:
        if block not in distinct:
            distinct.append(block)
    chosen = max(distinct, key=recorded.count)
    if len(distinct) == 1:
        return chosen, None
    return chosen, (
        f"{name}: its runs recorded {len(distinct)} different table blocks (the experiment file "
        f"changed between runs): the study's numbers and baseline are those of {recorded.count(chosen)} "
        f"of {len(recorded)} runs"
    )


def _row_facts(table: str, row: str, facts: Any) -> RowFacts:
    if facts is None:
        return RowFacts()
    if not isinstance(facts, Mapping):
        raise RecordError(f"'table.rows.{row}' of {table} must be a mapping (study, label, reading)")
    study = facts.get("study")
    if study is not None and (
        isinstance(study, bool)
        or not isinstance(study, (int, float))
        or not math.isfinite(study)
        or not 0 <= study <= 100
    ):
        raise RecordError(f"'table.rows.{row}.study' of {table} must be a percentage in [0, 100] or null")
    where = f"'table.rows.{row}' of {table}"
    return RowFacts(
        study=None if study is None else float(study),
        label=_text(facts, "label", where),
        reading=_text(facts, "reading", where),
    )


def _text(node: Mapping[str, Any], key: str, where: str) -> str | None:
    value = node.get(key)
    if value is None:
        return None
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise RecordError(f"{where}: '{key}' must be text")
    return str(value)
