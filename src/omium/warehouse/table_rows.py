"""Rows for one table as one list per column, split into inserts that fit ClickHouse's limits.

Shared by :mod:`omium.warehouse.log_rows` and :mod:`omium.warehouse.metric_rows` (spans have
:class:`omium.warehouse.otlp_rows.SpanColumns`, shaped the same way).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omium.warehouse.otlp_rows import DAY_NS


@dataclass
class TableRows:
    """Rows bound for ``table``: ``columns[i]`` holds the values of ``names[i]``.

    ``time_index`` is the column (nanoseconds since the epoch) the table is partitioned by day on.
    """

    table: str
    names: tuple[str, ...]
    time_index: int = 0
    columns: list[list[Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.columns:
            self.columns = [[] for _ in self.names]

    def __len__(self) -> int:
        return len(self.columns[0])

    def extend(self, other: TableRows) -> None:
        """Append ``other``'s rows (several requests grouped into one insert)."""
        for mine, theirs in zip(self.columns, other.columns, strict=True):
            mine.extend(theirs)

    def select(self, keep: list[int]) -> TableRows:
        """A copy holding only the rows at positions ``keep``."""
        return TableRows(
            self.table, self.names, self.time_index, [[col[i] for i in keep] for col in self.columns]
        )

    def split_by_day(self, max_days: int) -> list[TableRows]:
        """The rows in groups whose times lie within ``max_days`` consecutive UTC days.

        ClickHouse refuses an insert touching more than ``max_partitions_per_insert_block``
        partitions (days, here): nearly always this is ``[self]``, found in two passes in C.
        """
        times = self.columns[self.time_index]
        if not times or max(times) // DAY_NS - min(times) // DAY_NS < max_days:
            return [self]
        first_of: dict[int, int] = {}
        group_start = -max_days
        for day in sorted({t // DAY_NS for t in times}):
            if day - group_start >= max_days:
                group_start = day
            first_of[day] = group_start
        groups: dict[int, list[int]] = {}
        for index, t in enumerate(times):
            groups.setdefault(first_of[t // DAY_NS], []).append(index)
        return [self.select(rows) for rows in groups.values()]


__all__ = ["TableRows"]
