"""Apply the ordered migrations of :mod:`omium.warehouse.schema`, recording each version.

``otel_traces`` may exist before Omium's first migration: created by the OpenTelemetry Collector
contrib ClickHouse exporter (``create_schema``, on by default) of a user who already runs it. Its
DDL (exporter/clickhouseexporter internal/sqltemplates/traces_table.sql) makes a plain
``MergeTree`` ordered by ``(ServiceName, SpanName, toDateTime(Timestamp), Timestamp)`` without
Omium's ``RunId`` column, and every ``CREATE TABLE IF NOT EXISTS`` of Omium's then passes without
changing it. :func:`adopt_existing_traces` runs first on every migrate and decides:

* a ``ReplacingMergeTree`` (Omium's own, or the exporter's with ``table_engine`` set so): Omium's
  missing column and index are added with ``ALTER`` (re-sent spans then collapse by the exporter's
  key, which holds the start in nanoseconds: only distinct spans of one service and name starting
  in the same nanosecond would collapse as well);
* a plain ``MergeTree`` with no rows yet (the collector started first and created it): replaced by
  Omium's table, which the collector writes into as well (the same 22 columns);
* a plain ``MergeTree`` holding rows: refused with a :class:`MigrationError` saying how to move
  the rows. Omium's reads use ``FINAL``, which a plain MergeTree refuses (``ILLEGAL_FINAL``), and
  without a key by span re-sent spans would count twice; rewriting the user's table (its engine
  and order key cannot be altered: only copied, possibly for hours) is not for a migration that
  runs on every open to decide alone.
"""

from __future__ import annotations

import logging
import time

from omium.errors import MigrationError, WarehouseError
from omium.semconv import OTEL_TRACES_COLUMNS
from omium.warehouse import trace_summaries
from omium.warehouse.connection import Warehouse
from omium.warehouse.schema import (
    MIGRATIONS,
    MIGRATIONS_TABLE,
    OTEL_TRACES,
    OTEL_TRACES_TRACE_ID_TS,
    OTEL_TRACES_TRACE_ID_TS_MV,
)

logger = logging.getLogger(__name__)

LATEST_VERSION = len(MIGRATIONS)


def current_version(warehouse: Warehouse) -> int:
    """The highest migration version recorded in ``warehouse`` (0 for a fresh database)."""
    exists = warehouse.scalar(
        "SELECT count() FROM system.tables WHERE database = {db:String} AND name = 'omium_migrations'",
        {"db": warehouse.database},
    )
    if not exists:
        return 0
    return int(warehouse.scalar("SELECT max(version) FROM omium_migrations") or 0)


_TRACES_TABLE = """
SELECT engine, sorting_key, total_rows FROM system.tables
WHERE database = {db:String} AND name = 'otel_traces'
"""
_TRACES_COLUMNS = """
SELECT name FROM system.columns WHERE database = {db:String} AND table = 'otel_traces'
"""
# Whether otel_traces has Omium's run-id index, from its DDL: system.tables is a catalog table the
# SQL door also serves (system.data_skipping_indices is not).
_HAS_RUN_ID_INDEX = """
SELECT positionCaseInsensitive(create_table_query, 'INDEX idx_run_id ') > 0 AS found
FROM system.tables WHERE database = {db:String} AND name = 'otel_traces'
"""
# Omium's additions to the exporter's columns (schema.OTEL_TRACES), as ALTERs.
_ADD_RUN_ID = (
    "ALTER TABLE otel_traces ADD COLUMN IF NOT EXISTS RunId String "
    "MATERIALIZED SpanAttributes['omium.run_id'] CODEC(ZSTD(1))"
)
_ADD_RUN_ID_INDEX = (
    "ALTER TABLE otel_traces ADD INDEX IF NOT EXISTS idx_run_id RunId TYPE bloom_filter(0.001) GRANULARITY 1"
)

_NAMES = ", ".join(f"`{c}`" for c in OTEL_TRACES_COLUMNS)
# Built from constants only (the old table's name is a bound identifier).
_COPY_ROWS = (
    f"INSERT INTO otel_traces ({_NAMES}) SELECT {_NAMES} FROM {{old:Identifier}} "  # noqa: S608
    "SETTINGS max_partitions_per_insert_block = 0"
)
_MOVE_ROWS = (
    "RENAME TABLE otel_traces TO otel_traces_contrib; start Omium once (it creates its otel_traces); "
    + _COPY_ROWS.replace("{old:Identifier}", "otel_traces_contrib")
    + "; DROP TABLE otel_traces_contrib"
)


def adopt_existing_traces(warehouse: Warehouse) -> str:
    """Make an ``otel_traces`` created by another writer fit Omium (see the module docstring).

    Returns:
        What was done: ``"absent"``, ``"kept"``, ``"altered"`` or ``"replaced"``.

    Raises:
        MigrationError: the table is a plain MergeTree holding rows; the message says how to move them.
    """
    db = {"db": warehouse.database}
    rows = warehouse.query_rows(_TRACES_TABLE, db)
    if not rows:
        return "absent"
    engine, sorting_key, total_rows = rows[0]["engine"], rows[0]["sorting_key"], rows[0]["total_rows"]
    if "ReplacingMergeTree" in engine:
        columns = {r["name"] for r in warehouse.query_rows(_TRACES_COLUMNS, db)}
        indexed = bool(warehouse.scalar(_HAS_RUN_ID_INDEX, db))
        if "RunId" in columns and indexed:
            return "kept"
        for statement in (_ADD_RUN_ID, _ADD_RUN_ID_INDEX):
            warehouse.command(statement)
        logger.info("added Omium's RunId column and index to the existing otel_traces (%s)", engine)
        return "altered"
    if int(total_rows or 0) > 0:
        raise MigrationError(
            f"otel_traces in database {warehouse.database!r} exists as a {engine} ordered by "
            f"({sorting_key}) holding {total_rows} rows, created by another writer (the OpenTelemetry "
            "Collector's ClickHouse exporter creates it so). Omium needs a ReplacingMergeTree keyed by "
            "span: retried spans must count once, and its queries read with FINAL, which a plain "
            f"MergeTree refuses. To move the rows, with the collector stopped: {_MOVE_ROWS}; then "
            "start the collector again: it writes into Omium's table (the same columns). Or give "
            "Omium a database of its own (OMIUM_DATABASE)."
        )
    _replace_empty_traces(warehouse)
    return "replaced"


def _replace_empty_traces(warehouse: Warehouse) -> None:
    """Swap an empty plain-MergeTree ``otel_traces`` for Omium's.

    Renamed rather than dropped: rows a running collector writes between the check and the rename
    land in the old table and are copied over before it goes.
    """
    old = f"otel_traces_replaced_{time.time_ns()}"
    warehouse.command("RENAME TABLE otel_traces TO {old:Identifier}", {"old": old})
    # The exporter's view of the same name reads the renamed table: Omium's reads its new one.
    warehouse.command("DROP VIEW IF EXISTS otel_traces_trace_id_ts_mv")
    for statement in (OTEL_TRACES, OTEL_TRACES_TRACE_ID_TS, OTEL_TRACES_TRACE_ID_TS_MV):
        warehouse.command(statement)
    warehouse.command(_COPY_ROWS, {"old": old})
    warehouse.command("DROP TABLE {old:Identifier}", {"old": old})
    logger.info("replaced the empty MergeTree otel_traces (created by another writer) with Omium's")


def migrate(warehouse: Warehouse) -> int:
    """Bring ``warehouse`` up to :data:`LATEST_VERSION`; returns the number of migrations applied.

    Idempotent: every statement is ``IF NOT EXISTS`` and each version is recorded after all its
    statements succeeded, so an interrupted migration is simply run again.
    """
    try:
        adopt_existing_traces(warehouse)
    except MigrationError:
        raise
    except WarehouseError as exc:
        raise MigrationError(f"adapting the existing otel_traces failed: {exc}") from exc
    version = current_version(warehouse)
    if version > LATEST_VERSION:
        raise MigrationError(
            f"database {warehouse.database!r} is at schema version {version}, newer than this Omium "
            f"({LATEST_VERSION}); upgrade omium"
        )
    applied = 0
    if version < LATEST_VERSION:
        warehouse.command(MIGRATIONS_TABLE)
    for index in range(version, LATEST_VERSION):
        for statement in MIGRATIONS[index]:
            try:
                warehouse.command(statement)
            except WarehouseError as exc:
                raise MigrationError(f"migration {index + 1} failed: {exc}") from exc
        warehouse.command("INSERT INTO omium_migrations (version) VALUES ({v:UInt32})", {"v": index + 1})
        logger.info("applied migration %d to database %s", index + 1, warehouse.database)
        applied += 1
    try:
        _feed_trace_id_lookup(warehouse)
    except WarehouseError as exc:
        raise MigrationError(f"re-attaching the trace-id lookup view failed: {exc}") from exc
    return applied


_TRACES_VIEWS = """
SELECT dependencies_table FROM system.tables WHERE database = {db:String} AND name = 'otel_traces'
"""


def _feed_trace_id_lookup(warehouse: Warehouse) -> None:
    """Make the views on ``otel_traces`` (the trace-id lookup, the trace summaries) read the current one.

    A materialized view follows its source table through a RENAME: after an exporter's table is
    renamed away (as :func:`adopt_existing_traces` tells users to), the view of that name still
    feeds the lookup table from the old one, and Omium's ``CREATE ... IF NOT EXISTS`` skips its own.
    """
    rows = warehouse.query_rows(_TRACES_VIEWS, {"db": warehouse.database})
    if not rows:
        return
    for view, create in (
        ("otel_traces_trace_id_ts_mv", OTEL_TRACES_TRACE_ID_TS_MV),
        ("omium_trace_summaries_mv", trace_summaries.VIEW),
    ):
        if view in rows[0]["dependencies_table"]:
            continue
        warehouse.command("DROP VIEW IF EXISTS {view:Identifier}", {"view": view})
        warehouse.command(create)
        logger.info("%s now reads otel_traces of database %s", view, warehouse.database)


__all__ = ["LATEST_VERSION", "adopt_existing_traces", "current_version", "migrate"]
