"""Omium's Dagster code location: ``dagster dev -m omium.pipelines.definitions``.

The warehouse resource follows the ``OMIUM_*`` environment (see
:class:`~omium.pipelines.defs.resources.WarehouseResource`); ``omium up`` starts Dagster beside
the server, so the pipelines reach an embedded warehouse through the server's SQL API.
"""

from __future__ import annotations

import dagster as dg

from omium.pipelines.defs.assets import ALL_ASSETS
from omium.pipelines.defs.automation import JOBS, SCHEDULES, SENSORS
from omium.pipelines.defs.resources import WarehouseResource


def build(warehouse: WarehouseResource | None = None) -> dg.Definitions:
    """The definitions, with ``warehouse`` (tests pass one on their own database)."""
    return dg.Definitions(
        assets=ALL_ASSETS,
        jobs=JOBS,
        schedules=SCHEDULES,
        sensors=SENSORS,
        resources={"warehouse": warehouse or WarehouseResource()},
    )


defs = build()

__all__ = ["build", "defs"]
