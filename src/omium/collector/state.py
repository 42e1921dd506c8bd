"""What the server's endpoints share: settings, the warehouse, the writers of the three OTLP
signals, the control store and its shipper."""

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
    log_writer: SpanWriter
    metric_writer: SpanWriter
    shipper: Shipper | None = None
    access: AccessControl | None = None
