"""Every Omium dashboard, and the (panel, target) pairs of one."""

from __future__ import annotations

from collections.abc import Iterator

from ._agent_graph import agent_graph
from ._agent_health import agent_health
from ._failure_risk import failure_risk
from ._plugin import Json
from ._trace_explorer import trace_explorer


def dashboards() -> list[Json]:
    """Every Omium dashboard, as Grafana dashboard JSON."""
    return [agent_health(), agent_graph(), trace_explorer(), failure_risk()]


def panels(dashboard: Json) -> Iterator[tuple[Json, Json]]:
    """Every (panel, target) of ``dashboard``, rows' nested panels included."""
    for panel in dashboard.get("panels", []):
        for nested in [panel, *panel.get("panels", [])]:
            for target in nested.get("targets", []):
                yield nested, target


__all__ = ["dashboards", "panels"]
