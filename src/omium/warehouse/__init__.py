"""Omium's warehouse: ClickHouse (embedded chdb or a server), its schema and named queries."""

from omium.warehouse.connection import ClickHouseWarehouse, Warehouse, connect
from omium.warehouse.migrations import LATEST_VERSION, migrate

__all__ = ["LATEST_VERSION", "ClickHouseWarehouse", "Warehouse", "connect", "migrate"]
