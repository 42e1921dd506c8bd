"""The shipper: committed control facts into the warehouse's analytical copies (``omium_*``).

It reads a batch from the control store's outbox (:mod:`omium.sdk.sql.outbox`), reads each fact
back as it is now, inserts them per table in one INSERT each, then deletes the batch. The
``omium_*`` tables are ReplacingMergeTrees keyed by the facts' own keys (and versioned where a
fact changes), so a batch shipped twice, after a crash between the insert and the delete, reads
as one. One shipper runs per deployment (the outbox's ``shipper`` lease); the others stand by and
take over when it stops or dies.

A ``reviewed`` audit event also lands in ``omium_reviews``, the table the labelling pipeline
reads reviewers' decisions from. A try of a recorded call that a later try overwrote in ``steps``
is queued as the row it was (``step_try``, control migration 0004) and lands in ``omium_steps``
beside the later tries, so the warehouse keeps every try.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from omium.sdk.sql.outbox import Outbox, Queued
from omium.warehouse.connection import Warehouse

logger = logging.getLogger(__name__)

# Seconds between looks at the outbox.
INTERVAL_SECONDS = 0.2
# While facts keep arriving (runs recording in this process or others), the shipper lets them
# gather for up to this long before it ships: one bigger batch instead of an INSERT per look, and
# its reads, inserts and write transaction stay off the recorders' path while they are busy. A fact
# waits at most about INTERVAL + PATIENCE + one batch (the goal is 2 s at p99).
PATIENCE_SECONDS = 0.6
BATCH = 5000
LEASE_SECONDS = 10.0


def _attributes(text: str) -> dict[str, str]:
    return {str(k): str(v) for k, v in json.loads(text or "{}").items()}


def _run(row: dict[str, Any]) -> dict[str, Any]:
    return dict(row, attributes=_attributes(row["attributes"]))


def _handoff(row: dict[str, Any]) -> dict[str, Any]:
    return dict(row, depends_on={str(k): int(v) for k, v in json.loads(row["depends_on"] or "{}").items()})


def _event(row: dict[str, Any]) -> dict[str, Any]:
    return dict(row, attributes=_attributes(row["attributes"]))


def _review(event: dict[str, Any]) -> dict[str, Any] | None:
    if event["kind"] != "reviewed":
        return None
    attributes = _attributes(event["attributes"])
    return {
        "review_id": event["event_id"],
        "run_id": event["run_id"],
        "decision": attributes.get("decision", ""),
        "reviewer": event["actor"],
        "edits": attributes.get("edits", "{}"),
        "reason": event["reason"],
        "ts": event["ts"],
    }


# The outbox kind of an overwritten try of a recorded call: the row itself, as JSON in its key.
STEP_TRY = "step_try"


# Control table -> (warehouse table, how a control row becomes a warehouse row).
TARGETS: dict[str, tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "runs": ("omium_runs", _run),
    "steps": ("omium_steps", dict),
    "checkpoints": ("omium_checkpoints", dict),
    "handoffs": ("omium_handoffs", _handoff),
    "shared_state": ("omium_shared_state", dict),
    "events": ("omium_events", _event),
    "commands": ("omium_commands", dict),
}


class Shipper:
    """Ships one control store's outbox into one warehouse, on a thread of its own.

    Args:
        outbox: the control store's outbox.
        warehouse: where the analytical copies live.
        holder: this shipper's name in the lease (``host:pid:...``, see
            :func:`omium.sdk.lease.new_holder`).
    """

    def __init__(
        self,
        outbox: Outbox,
        warehouse: Warehouse,
        holder: str,
        *,
        interval: float = INTERVAL_SECONDS,
        patience: float = PATIENCE_SECONDS,
        batch: int = BATCH,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self.outbox = outbox
        self.warehouse = warehouse
        self.holder = holder
        self.interval = interval
        self.patience = patience
        self.batch = batch
        self.lease_seconds = lease_seconds
        self.shipped = 0
        self.batches = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # The oldest fact waiting, the newest one, and when this shipper first saw that oldest one
        # (its own clock: a database server's clock may differ from this host's).
        self._seen: tuple[int, int, float] = (0, 0, 0.0)

    def ship_once(self, queued: list[Queued] | None = None) -> int:
        """Ship one batch (``queued``, else the oldest waiting) if this shipper holds the lease;
        the number of facts shipped."""
        if not self.outbox.hold(self.holder, self.lease_seconds):
            return 0
        queued = self.outbox.pending(self.batch) if queued is None else queued
        if not queued:
            return 0
        self._insert(queued)
        self.outbox.done([q.seq for q in queued])
        self.shipped += len(queued)
        self.batches += 1
        return len(queued)

    def _insert(self, queued: list[Queued]) -> None:
        keys: dict[str, list[tuple[str, ...]]] = defaultdict(list)
        tries: list[dict[str, Any]] = []
        for fact in queued:
            if fact.kind in TARGETS:
                keys[fact.kind].append(fact.key)
            elif fact.kind == STEP_TRY:  # gone from steps: the row was queued itself
                tries.append(json.loads(fact.key[0]))
        self._write("omium_steps", tries)
        for kind, wanted in keys.items():
            table, convert = TARGETS[kind]
            facts = self.outbox.facts(kind, wanted)  # read once: the reviews come from the same rows
            self._write(table, [convert(row) for row in facts])
            if kind == "events":
                self._write("omium_reviews", [r for r in map(_review, facts) if r])

    def _write(self, table: str, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        # Every column of a control table has its column in the warehouse table (migrations keep
        # them in step: tests/warehouse/test_shipper.py ships every kind).
        names = list(rows[0])
        self.warehouse.insert(table, [[row[n] for row in rows] for n in names], names)

    def drain(self) -> int:
        """Ship until the outbox is empty (or another shipper holds the lease); facts shipped."""
        total = 0
        while shipped := self.ship_once():
            total += shipped
        return total

    def start(self) -> Shipper:
        """Ship in the background until :meth:`stop`."""
        self._thread = threading.Thread(target=self._loop, name="omium-shipper", daemon=True)
        self._thread.start()
        return self

    def _due(self, queued: list[Queued]) -> bool:
        """Whether to ship ``queued`` now: a full batch, nothing new since the last look (writers
        are quiet), or its oldest fact has waited ``patience`` since this shipper first saw it."""
        oldest, newest, now = queued[0].seq, queued[-1].seq, time.monotonic()
        seen_oldest, seen_newest, seen_at = self._seen
        if oldest != seen_oldest:
            self._seen = (oldest, newest, now)
        else:
            self._seen = (oldest, newest, seen_at)
        return len(queued) >= self.batch or (
            oldest == seen_oldest and (newest == seen_newest or now - seen_at >= self.patience)
        )

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                queued = self.outbox.pending(self.batch)  # a read: no write lock taken
                if queued and self._due(queued) and self.ship_once(queued) >= self.batch:
                    continue  # more waiting: no pause
            except Exception:  # the warehouse or the database is down: the facts wait, retried
                logger.exception("shipping control facts to the warehouse failed; retrying")
            self._stop.wait(self.interval)

    def stop(self, *, drain: bool = True) -> None:
        """Stop shipping: ship what is queued first (``drain``), then give the lease up."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        try:
            if drain:
                self.drain()
        except Exception:
            logger.exception("shipping the last control facts failed; they wait for the next shipper")
        finally:
            self.outbox.let_go(self.holder)


__all__ = ["STEP_TRY", "TARGETS", "Shipper"]
