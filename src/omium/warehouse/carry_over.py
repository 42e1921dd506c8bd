"""Carrying a ``$OMIUM_HOME`` written by Omium 0.x over to the control database.

Before the control plane moved to a transactional database, runs, recorded calls, checkpoints,
values, hand-offs, shared state, events, commands and leases lived in the warehouse's ``omium_*``
tables, with the newest writes possibly still in journal files under ``$OMIUM_HOME/journal``
(left there by a process that crashed). Opening such a home copies all of it into the control
database once, in one transaction, so no one loses history; then the journal directory is
renamed ``journal.carried-over`` (kept, not deleted). The warehouse keeps its rows: they are the
analytical copies the control facts would have been shipped into anyway.

A fact present in both places keeps its newest version (runs, hand-offs and commands carry one);
a fact the control database already has is left as it is, so carrying over twice changes nothing.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import DefaultClause, Integer, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite

from omium.sdk.sql import tables
from omium.sdk.sql.outbox import KINDS
from omium.sdk.sql.store import SqlStore
from omium.sdk.store import now_us
from omium.warehouse.connection import Warehouse

logger = logging.getLogger(__name__)

MARK = "carried_over"
# Journal records of 0.x: kind -> the control table it goes to.
_JOURNAL_TABLES = {
    "run": "runs",
    "step": "steps",
    "checkpoint": "checkpoints",
    "handoff": "handoffs",
    "state": "shared_state",
    "lease": "run_leases",
}
_JOURNAL_NAME = re.compile(r"journal-(\d{12})-\d+\.jsonl")
# Control table -> (warehouse table, SELECT of its rows as the control table's columns).
_WAREHOUSE = {
    "runs": (
        "omium_runs",
        """SELECT run_id, workflow, status, version, parent_run_id, forked_from, error, attributes,
                  toUnixTimestamp64Micro(started_at) AS started_at,
                  toUnixTimestamp64Micro(updated_at) AS updated_at
           FROM omium_runs FINAL""",
    ),
    "steps": (
        "omium_steps",
        """SELECT run_id, position, attempt, kind, name, agent, status, input_hash, output_hash, error,
                  idempotency_key, toUnixTimestamp64Micro(started_at) AS started_at,
                  toUnixTimestamp64Micro(ended_at) AS ended_at, call_id, generation, fence
           FROM omium_steps FINAL
           ORDER BY run_id, position, ended_at DESC, attempt DESC
           LIMIT 1 BY run_id, position""",
    ),
    "checkpoints": (
        "omium_checkpoints",
        """SELECT run_id, seq, checkpoint_id, name, agent, step_index, state_hash, parent_checkpoint_id,
                  metadata, toUnixTimestamp64Micro(created_at) AS created_at, call_id, generation, fence
           FROM omium_checkpoints FINAL""",
    ),
    "blobs": (
        "omium_state_blobs",
        """SELECT toString(hash) AS hash, any(base64Encode(data)) AS data, any(size) AS size
           FROM omium_state_blobs GROUP BY hash""",
    ),
    "handoffs": (
        "omium_handoffs",
        """SELECT run_id, channel, seq, version, sender, receiver, schema_name, payload_hash, status,
                  reason, send_key, receive_key, toUnixTimestamp64Micro(created_at) AS created_at,
                  depends_on, trace_id, span_id, fence
           FROM omium_handoffs FINAL""",
    ),
    "shared_state": (
        "omium_shared_state",
        """SELECT namespace, key, version, value_hash, writer, run_id,
                  toUnixTimestamp64Micro(written_at) AS written_at
           FROM omium_shared_state FINAL""",
    ),
    "events": (
        "omium_events",
        """SELECT event_id, run_id, kind, actor, reason, before, after, attributes,
                  toUnixTimestamp64Micro(ts) AS ts
           FROM omium_events FINAL""",
    ),
    "commands": (
        "omium_commands",
        """SELECT command_id, run_id, kind, payload, status, version, worker, lease_until, attempts,
                  result, toUnixTimestamp64Micro(created_at) AS created_at,
                  toUnixTimestamp64Micro(updated_at) AS updated_at
           FROM omium_commands FINAL""",
    ),
    "run_leases": (
        "omium_run_leases",
        """SELECT run_id, holder, fence, lease_until, toUnixTimestamp64Micro(acquired_at) AS acquired_at,
                  version
           FROM omium_run_leases FINAL""",
    ),
}
_MAPS = {"attributes", "depends_on"}  # warehouse maps, JSON text in the control database


def _control_row(table: str, row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for name in _MAPS & out.keys():
        value = out[name]
        if not isinstance(value, str):
            out[name] = json.dumps(dict(value) if value is not None else {})
    if table == "blobs" and isinstance(out.get("data"), str):
        out["data"] = out["data"].encode("latin-1")
    return out


def _warehouse_rows(warehouse: Warehouse) -> dict[str, list[dict[str, Any]]]:
    present = {
        r["name"]
        for r in warehouse.query_rows("SELECT name FROM system.tables WHERE database = currentDatabase()")
    }
    found: dict[str, list[dict[str, Any]]] = {}
    for table, (source, query) in _WAREHOUSE.items():
        if source in present:
            rows = warehouse.query_rows(query)
            if table == "blobs":
                rows = [dict(r, data=base64.b64decode(r["data"])) for r in rows]
            found[table] = [_control_row(table, r) for r in rows]
    return found


def _journal_order(path: Path) -> tuple[int, int, str]:
    match = _JOURNAL_NAME.fullmatch(path.name)
    return (1, int(match.group(1)), path.name) if match else (0, path.stat().st_mtime_ns, path.name)


def journal_rows(directory: Path) -> dict[str, list[dict[str, Any]]]:
    """The records of 0.x journal files in ``directory``, oldest file first, by control table."""
    found: dict[str, list[dict[str, Any]]] = {}
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob("*.jsonl"), key=_journal_order):
        if path.name == "quarantine.jsonl":
            continue
        for line in path.read_text(errors="replace").splitlines():
            try:
                kind, payload = json.loads(line)
            except ValueError:  # a line cut short by the crash: it was never acknowledged
                continue
            if kind == "blob":
                digest, data = payload
                row = {"hash": digest, "data": base64.b64decode(data), "size": 0}
                row["size"] = len(row["data"])
                found.setdefault("blobs", []).append(row)
            elif kind in _JOURNAL_TABLES:
                table = _JOURNAL_TABLES[kind]
                found.setdefault(table, []).append(_control_row(table, payload))
    return found


def _newest(table: Table, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per primary key: the highest version where the table has one, else the last seen."""
    keys = [c.name for c in table.primary_key.columns]
    versioned = "version" in table.c and "version" not in keys
    chosen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = tuple(row[k] for k in keys)
        held = chosen.get(key)
        if held is None or not versioned or row.get("version", 0) >= held.get("version", 0):
            chosen[key] = row
    columns = {c.name for c in table.c}
    # Rows from the warehouse and from a journal can know different columns (a column added by a
    # later migration): one INSERT needs the same keys in every row, so a missing column gets the
    # value its server default would have given it.
    defaults = {
        c.name: int(c.server_default.arg) if isinstance(c.type, Integer) else c.server_default.arg
        for c in table.c
        if isinstance(c.server_default, DefaultClause) and isinstance(c.server_default.arg, str)
    }
    return [defaults | {k: v for k, v in row.items() if k in columns} for row in chosen.values()]


def _queue(journaled: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Outbox rows (as the triggers write them) for the facts of the journal, one per key."""
    keys = {
        (table, tuple(str(row[k]) for k in KINDS[table]))
        for table, rows in journaled.items()
        if table in KINDS
        for row in rows
    }
    now = now_us()
    return [
        {"kind": table, **dict(zip(("k1", "k2", "k3"), (*key, "", ""), strict=False)), "queued_at": now}
        for table, key in sorted(keys)
    ]


def carry_over(store: SqlStore, warehouse: Warehouse | None, journal: Path | None) -> int:
    """Copy a 0.x home's control facts into ``store`` once; the number of rows copied.

    Nothing happens if the control database already carried a home over, or if there is nothing
    to carry (then it is marked, so later opens cost one query).
    """
    engine = store.engine
    meta = tables.meta
    with engine.connect().execution_options(omium_sqlite_begin="") as connection:
        if connection.execute(select(meta.c.value).where(meta.c.name == MARK)).first() is not None:
            return 0
    gathered: dict[str, list[dict[str, Any]]] = {}
    if warehouse is not None:
        gathered = _warehouse_rows(warehouse)
    journaled = journal_rows(journal) if journal is not None else {}
    for table, rows in journaled.items():
        gathered.setdefault(table, []).extend(rows)
    insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    copied = 0
    with engine.begin() as connection:  # one transaction: all of it, once (BEGIN IMMEDIATE on SQLite)
        if connection.execute(select(meta.c.value).where(meta.c.name == MARK)).first() is not None:
            return 0  # another process carried it over while we read
        before = connection.execute(select(func.coalesce(func.max(tables.outbox.c.seq), 0))).scalar() or 0
        for name, rows in gathered.items():
            target = tables.metadata.tables[name]
            chosen = _newest(target, rows)
            for start in range(0, len(chosen), 500):
                chunk = chosen[start : start + 500]
                # Counted across the rows of the statement (PostgreSQL's driver says -1 otherwise).
                result = connection.execute(
                    insert(target).on_conflict_do_nothing(),
                    chunk,
                    execution_options={"preserve_rowcount": True},
                )
                copied += max(result.rowcount, 0)
        if engine.dialect.name == "sqlite":
            # The warehouse has these facts already: do not ship them back. Exact on SQLite, whose
            # write lock this transaction holds; on PostgreSQL another transaction's facts could
            # fall in the range, so they are shipped again there (which changes nothing). What
            # only the journal had never reached the warehouse: it is queued again.
            connection.execute(tables.outbox.delete().where(tables.outbox.c.seq > before))
            queued = _queue(journaled)
            if queued:
                connection.execute(insert(tables.outbox), queued)
        connection.execute(
            insert(meta)
            .values(name=MARK, value=json.dumps({"rows": copied}), version=1)
            .on_conflict_do_nothing()
        )
    if journal is not None and journal.is_dir() and any(journal.iterdir()):
        kept = journal.with_name("journal.carried-over")
        n = 1
        while kept.exists():  # carried over before (a home copied back in, say): keep both
            n += 1
            kept = journal.with_name(f"journal.carried-over-{n}")
        journal.rename(kept)
    if copied:
        logger.info("carried %d rows of an earlier Omium home over to the control database", copied)
    return copied


__all__ = ["MARK", "carry_over", "journal_rows"]
