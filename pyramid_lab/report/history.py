"""A run's per-epoch history, held by column: what 10,000 runs' curves cost in memory.

A record's ``history`` is a list of per-epoch objects (``{"epoch": 3, "train/acc": 0.81, ...}``).
Parsed from JSON each is a dict of boxed floats, about 290 bytes per epoch; a report over 10,000
runs of 30 epochs held 86 MB of them. :class:`History` keeps one ``array`` per key instead (8 bytes
per value) and gives the same per-epoch dicts back when indexed or iterated.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, overload

_MISSING = object()


class History(Sequence[dict[str, Any]]):
    """Per-epoch dicts, stored by column; ``history[i]`` is epoch entry i as a new dict.

    Numbers keep their type (a column of ints is ``array("q")``, of floats ``array("d")``; NaN
    stays NaN); any other value, and a key that some epochs lack, keeps a plain tuple.
    """

    __slots__ = ("_columns", "_length")

    def __init__(self, entries: Sequence[Mapping[str, Any]] = ()) -> None:
        self._length = len(entries)
        keys = dict.fromkeys(key for entry in entries for key in entry)
        self._columns = {key: _column([entry.get(key, _MISSING) for entry in entries]) for key in keys}

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._length))]
        if not -self._length <= index < self._length:
            raise IndexError("history index out of range")
        index %= self._length
        entry = {key: column[index] for key, column in self._columns.items()}
        return {key: value for key, value in entry.items() if value is not _MISSING}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[i] for i in range(self._length))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]  # equal to lists of dicts, which are unhashable

    def __repr__(self) -> str:
        return f"History({list(self)!r})"


def _column(values: list[Any]) -> array | tuple[Any, ...]:
    # bool is an int to Python; keep it (and anything else) as it came.
    if all(type(v) is int for v in values):
        try:
            return array("q", values)
        except OverflowError:
            return tuple(values)
    if all(type(v) in (int, float) for v in values):
        try:
            return array("d", values)
        except OverflowError:
            return tuple(values)
    return tuple(values)
