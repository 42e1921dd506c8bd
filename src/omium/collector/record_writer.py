"""The writer of the logs and metrics signals: the span writer's machinery, other tables.

:class:`RecordWriter` is a :class:`~omium.collector.writer.SpanWriter` (so the same bounded
queue counted in records and in bytes, the same :class:`~omium.collector.writer.Reservation`
taken while a body is read, the same group commit that acknowledges a request only after its
insert returned, the same isolation of one bad request from its batch, and the same grouping of
requests whose days fit one insert) whose batches are decoded in Python by a signal's own
``rows`` function into the contrib exporter's tables. Each signal has a writer, and so a
budget, of its own: a flood of logs cannot refuse spans.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omium.collector.writer import _PARTITION_LIMIT_ERROR, SpanWriter
from omium.errors import WarehouseError
from omium.warehouse.connection import Warehouse
from omium.warehouse.table_rows import TableRows

logger = logging.getLogger(__name__)

# A request's protobuf body -> its rows, one TableRows per table it writes to.
RowsOf = Callable[[bytes], Sequence[TableRows]]


class RecordWriter(SpanWriter):
    """Group commit of log records or metric data points, with backpressure.

    Args:
        warehouse: Where the tables live (the server's own connection).
        spool_dir: Unused by this writer's Python path; kept for the span writer's contract.
        rows: Decodes one request's body into rows (:func:`omium.warehouse.log_rows.log_rows`
            over a parsed request, for instance).
        signal: What is counted, for log lines ("log records", "data points").
        **budget: The span writer's budgets and threads (``max_pending_spans`` counts records).
    """

    def __init__(
        self, warehouse: Warehouse, spool_dir: Path, rows: RowsOf, *, signal: str, **budget: Any
    ) -> None:
        budget.setdefault("writers", 1)
        super().__init__(warehouse, spool_dir, native_ingest=False, **budget)
        self._rows = rows
        self.signal = signal

    def _write(self, batch: list[Any], warehouse: Warehouse, *, light: bool = False) -> None:
        # One insert per table for the whole group; a request writes to a table only when it
        # holds records of that type.
        tables: dict[str, TableRows] = {}
        for request in batch:
            for rows in self._rows(request.body):
                grouped = tables.get(rows.table)
                if grouped is None:
                    tables[rows.table] = rows
                else:
                    grouped.extend(rows)
        for rows in tables.values():
            parts = rows.split_by_day(self._max_days)
            if len(parts) > 1:
                self.stats.split_inserts += 1
            for part in parts:
                self._insert_rows(part, warehouse)
        self.stats.python_batches += 1

    def _insert_rows(self, rows: TableRows, warehouse: Warehouse) -> None:
        try:
            warehouse.insert(rows.table, rows.columns, rows.names)
        except WarehouseError as exc:
            if _PARTITION_LIMIT_ERROR not in str(exc):
                raise
            logger.warning("the warehouse refused an insert of several days; inserting day by day")
            for day in rows.split_by_day(1):
                warehouse.insert(day.table, day.columns, day.names)


__all__ = ["RecordWriter", "RowsOf"]
