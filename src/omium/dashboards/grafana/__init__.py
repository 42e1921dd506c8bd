"""Grafana dashboards for the ``grafana-clickhouse-datasource`` plugin, defined in Python.

Four dashboards read the warehouse in raw SQL with the plugin's macros (REFERENCE.md section 4):
agent health, the agent dependency graph (a ``nodeGraph``), a trace explorer (the trace view) and
failure risk. They are built here rather than kept as JSON so that they ship inside the package
(``omium export grafana DIR`` works from a wheel) and share their panel boilerplate;
``deploy/grafana`` is that export committed, and a test keeps the two equal.

Panel SQL holds no values: only the plugin's macros (``$__timeFilter(col)``, ``$__interval_s``...)
and dashboard variables (``$trace_id``), which Grafana and the plugin substitute at query time.
:func:`substitute_macros` does the same substitution, so tests run every panel against a warehouse.

The implementation is in private modules, one per concept: ``_plugin`` (the plugin's ids and
formats), ``_sql`` (shared SQL fragments), ``_panels`` and ``_variables`` (the boilerplate), one
module per dashboard (``_agent_health``, ``_agent_graph``, ``_trace_explorer``, ``_failure_risk``,
each with its SQL), ``_dashboards`` (all of them), ``_export`` (provisioning and files) and
``_macros`` (the substitution). Their names are private so that none shadows a function of the
same name here (``export``, ``panels``, ``agent_health``...).
"""

from __future__ import annotations

from ._agent_graph import agent_graph
from ._agent_health import agent_health
from ._dashboards import dashboards, panels
from ._export import (
    DASHBOARDS,
    PROVISIONING,
    DatasourceOptions,
    dashboard_provisioning,
    datasource_provisioning,
    export,
)
from ._failure_risk import failure_risk
from ._macros import substitute_macros
from ._plugin import DATASOURCE_REF, DATASOURCE_UID, PLUGIN_ID, Format
from ._trace_explorer import TRACE_EXPLORER_UID, trace_explorer

__all__ = [
    "DASHBOARDS",
    "DATASOURCE_REF",
    "DATASOURCE_UID",
    "PLUGIN_ID",
    "PROVISIONING",
    "TRACE_EXPLORER_UID",
    "DatasourceOptions",
    "Format",
    "agent_graph",
    "agent_health",
    "dashboard_provisioning",
    "dashboards",
    "datasource_provisioning",
    "export",
    "failure_risk",
    "panels",
    "substitute_macros",
    "trace_explorer",
]
