"""What the server's endpoints share: settings, the warehouse, the span writer, the control store
and its shipper."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from omium.collector.writer import SpanWriter
from omium.config import Settings
from omium.sdk.store import CheckpointStore
from omium.warehouse.connection import Warehouse

if TYPE_CHECKING:
    from omium.collector.access import AccessControl
    from omium.warehouse.shipper import Shipper


@dataclass
class ServerState:
    """The server's shared parts, built once by :func:`omium.collector.server.build_state`."""

    settings: Settings
    warehouse: Warehouse
    writer: SpanWriter
    store: CheckpointStore
    shipper: Shipper | None = None
    access: AccessControl | None = None
