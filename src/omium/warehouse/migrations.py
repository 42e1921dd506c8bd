"""Apply the ordered migrations of :mod:`omium.warehouse.schema`, recording each version."""

from __future__ import annotations

import logging

from omium.errors import MigrationError, WarehouseError
from omium.warehouse.connection import Warehouse
from omium.warehouse.schema import MIGRATIONS, MIGRATIONS_TABLE

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


def migrate(warehouse: Warehouse) -> int:
    """Bring ``warehouse`` up to :data:`LATEST_VERSION`; returns the number of migrations applied.

    Idempotent: every statement is ``IF NOT EXISTS`` and each version is recorded after all its
    statements succeeded, so an interrupted migration is simply run again.
    """
    version = current_version(warehouse)
    if version > LATEST_VERSION:
        raise MigrationError(
            f"database {warehouse.database!r} is at schema version {version}, newer than this Omium "
            f"({LATEST_VERSION}); upgrade omium"
        )
    if version == LATEST_VERSION:
        return 0
    warehouse.command(MIGRATIONS_TABLE)
    applied = 0
    for index in range(version, LATEST_VERSION):
        for statement in MIGRATIONS[index]:
            try:
                warehouse.command(statement)
            except WarehouseError as exc:
                raise MigrationError(f"migration {index + 1} failed: {exc}") from exc
        warehouse.command("INSERT INTO omium_migrations (version) VALUES ({v:UInt32})", {"v": index + 1})
        logger.info("applied migration %d to database %s", index + 1, warehouse.database)
        applied += 1
    return applied


__all__ = ["LATEST_VERSION", "current_version", "migrate"]
