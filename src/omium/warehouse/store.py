"""The embedded deployment in one process: the control store on SQLite in ``$OMIUM_HOME`` (or
``OMIUM_CONTROL_URL``), the chdb warehouse beside it, and the shipper between them.

A process with no Omium server to talk to (a script, a notebook, ``omium demo``) keeps its runs in
the control database and writes its spans into the embedded warehouse; its shipper copies the
control facts there within a fraction of a second, and ships what is left at exit. A home written
by Omium 0.x is carried over on first open (:mod:`omium.warehouse.carry_over`).

Also here: reading the analytical copies back (the pipelines read recorded calls from the
warehouse, never from the control database).
"""

from __future__ import annotations

import atexit
import logging
from typing import Any

from omium.sdk.sql.store import SqlStore
from omium.sdk.store import StepRecord
from omium.warehouse.connection import Warehouse

logger = logging.getLogger(__name__)

SELECT_STEPS = """
SELECT run_id, position, attempt, kind, name, agent, status, input_hash, output_hash, error, idempotency_key,
       toUnixTimestamp64Micro(started_at) AS started_at, toUnixTimestamp64Micro(ended_at) AS ended_at,
       call_id, generation, fence
FROM omium_steps FINAL
WHERE run_id = {run_id:String}
ORDER BY position, ended_at DESC, attempt DESC
LIMIT 1 BY position
"""


def recorded_steps(warehouse: Warehouse, run_id: str) -> list[StepRecord]:
    """Run ``run_id``'s recorded calls as the warehouse's analytical copy has them (the latest
    attempt of each position)."""
    return [StepRecord(**row) for row in warehouse.query_rows(SELECT_STEPS, {"run_id": run_id})]


class EmbeddedStore(SqlStore):
    """A control store whose facts this process also ships into its embedded warehouse.

    Args:
        url: the control database.
        warehouse: the warehouse spans and the analytical copies go to (``None``: another
            process holds the embedded warehouse; facts wait in the outbox for its shipper).
        fsync: as :class:`SqlStore`.
        owns_warehouse: close the warehouse with the store (a caller that lends one says False).
    """

    def __init__(
        self, url: str, warehouse: Warehouse | None, *, fsync: bool = False, owns_warehouse: bool = True
    ) -> None:
        super().__init__(url, fsync=fsync)
        self.warehouse = warehouse
        self._owns_warehouse = owns_warehouse
        self.shipper: Any = None
        if warehouse is not None:
            from omium.sdk.lease import new_holder
            from omium.sdk.sql.outbox import Outbox
            from omium.warehouse.shipper import Shipper

            self.shipper = Shipper(Outbox(self), warehouse, new_holder()).start()

    def ship(self) -> int:
        """Ship every fact committed so far into the warehouse now (the shipper does it within a
        fraction of a second anyway); the number shipped. For code that reads the warehouse right
        after writing, such as a notebook or a test."""
        return self.shipper.drain() if self.shipper is not None else 0

    def close(self) -> None:
        """Ship what is queued, then close the warehouse (if owned) and the control database."""
        if self.warehouse is not None:
            from omium.sdk import tracing

            tracing.flush()  # spans buffered for this warehouse go in before it closes
        if self.shipper is not None:
            self.shipper.stop()
            self.shipper = None
        if self.warehouse is not None and self._owns_warehouse:
            self.warehouse.close()
        self.warehouse = None
        super().close()


def embedded_store(settings: Any = None) -> SqlStore:
    """The store of a process with no server: the control database, and the embedded warehouse
    (spans, analytical copies) when this process can open it."""
    from omium.config import Settings, ensure_home
    from omium.errors import WarehouseError
    from omium.warehouse.carry_over import carry_over
    from omium.warehouse.connection import connect

    settings = settings or Settings.from_env()
    ensure_home(settings.home)  # runs, prompts and outputs live here: this user's only
    warehouse: Warehouse | None = None
    shared = not settings.control_database.startswith("sqlite")
    try:
        if not shared:
            warehouse = connect(settings, mode="embedded")
        elif not settings.embedded:
            # A deployment's control database: its facts go to the deployment's ClickHouse (by
            # whichever process holds the shipper lease), never into a private chdb of this one.
            warehouse = connect(settings, mode="clickhouse")
    except WarehouseError as exc:  # held by another process (chdb opens a directory once)
        logger.warning(
            "the warehouse is not available to this process (%s): runs are kept in the control "
            "database, their analytics wait for the process holding it",
            exc,
        )
    store = EmbeddedStore(settings.control_database, warehouse, fsync=settings.fsync)
    try:
        carry_over(store, warehouse, settings.home / "journal")
    except Exception:
        store.close()
        raise
    atexit.register(store.close)  # ship what is queued at a normal exit (a crash leaves it queued)
    return store


__all__ = ["EmbeddedStore", "embedded_store", "recorded_steps"]
