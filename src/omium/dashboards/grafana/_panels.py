"""Panels and their targets, field overrides and links, and the dashboard that holds them.

The boilerplate every dashboard shares: each panel kind's options, the dashboard's links, annotations
and data source variable, so that a dashboard module only states its panels' titles, places and SQL.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

from ._plugin import DATASOURCE_REF, QUERY_TYPES, Format, Json
from ._variables import DATASOURCE_VARIABLE

SCHEMA_VERSION = 39

# A panel's place on the dashboard's 24-column grid: x, y, width, height.
Grid = tuple[int, int, int, int]


def target(sql: str, fmt: Format = Format.TABLE, ref_id: str = "A") -> Json:
    """A raw-SQL query of the plugin returning ``fmt``."""
    return {
        "datasource": DATASOURCE_REF,
        "editorType": "sql",
        "format": int(fmt),
        "queryType": QUERY_TYPES[fmt],
        "rawSql": textwrap.dedent(sql).strip(),
        "refId": ref_id,
    }


def field(name: str, **properties: Any) -> Json:
    """A field override; ``custom__x`` stands for the property ``custom.x``."""
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": key.replace("__", "."), "value": value} for key, value in properties.items()],
    }


def link(title: str, url: str) -> list[Json]:
    """A field's data link, opening ``url`` in the same tab."""
    return [{"title": title, "url": url, "targetBlank": False}]


def panel(
    kind: str,
    title: str,
    grid: Grid,
    targets: Sequence[Json],
    description: str,
    *,
    unit: str = "",
    overrides: Sequence[Json] = (),
    options: Json | None = None,
    custom: Json | None = None,
) -> Json:
    """A panel of type ``kind`` reading through the dashboard's data source variable."""
    x, y, w, h = grid
    defaults: Json = {"unit": unit} if unit else {}
    if custom:
        defaults["custom"] = custom
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE_REF,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": list(targets),
        "fieldConfig": {"defaults": defaults, "overrides": list(overrides)},
        "options": options or {},
    }


def stat(title: str, grid: Grid, sql: str, description: str, **kw: Any) -> Json:
    """A stat panel showing every column of ``sql``'s last row, with its name."""
    options = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "value",
        "graphMode": "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "textMode": "value_and_name",
    }
    return panel("stat", title, grid, [target(sql)], description, options=options, **kw)


def timeseries(title: str, grid: Grid, sql: str, description: str, **kw: Any) -> Json:
    """A line chart of ``sql`` read as a time series, with a legend table of means and maxima."""
    options = {
        "legend": {
            "displayMode": "table",
            "placement": "right",
            "calcs": ["mean", "max"],
            "showLegend": True,
        },
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    custom = {
        "drawStyle": "line",
        "lineWidth": 1,
        "fillOpacity": 10,
        "showPoints": "never",
        "spanNulls": False,
    }
    return panel(
        "timeseries",
        title,
        grid,
        [target(sql, Format.TIME_SERIES)],
        description,
        options=options,
        custom=custom,
        **kw,
    )


def table(title: str, grid: Grid, sql: str, description: str, **kw: Any) -> Json:
    """A table of ``sql``'s rows."""
    options = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False, "reducer": ["sum"]}}
    return panel("table", title, grid, [target(sql)], description, options=options, **kw)


def barchart(title: str, grid: Grid, sql: str, description: str, x_field: str, **kw: Any) -> Json:
    """A bar chart of ``sql``'s rows, one group of bars per value of ``x_field``."""
    options = {
        "xField": x_field,
        "orientation": "auto",
        "showValue": "auto",
        "stacking": "none",
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "multi", "sort": "none"},
    }
    return panel("barchart", title, grid, [target(sql)], description, options=options, **kw)


def dashboard(
    uid: str,
    title: str,
    description: str,
    panels: Sequence[Json],
    *,
    variables: Sequence[Json] = (),
    time_from: str = "now-6h",
    tags: Sequence[str] = (),
) -> Json:
    """A dashboard of ``panels``, numbered in order; its variables: the data source, then ``variables``."""
    numbered = [{"id": index, **entry} for index, entry in enumerate(panels, start=1)]
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["omium", *tags],
        "editable": True,
        "graphTooltip": 1,
        "id": None,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "1m",
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "timezone": "",
        "fiscalYearStartMonth": 0,
        "weekStart": "",
        "links": [
            {
                "type": "dashboards",
                "title": "Omium",
                "tags": ["omium"],
                "asDropdown": True,
                "includeVars": False,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
            }
        ],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "templating": {"list": [DATASOURCE_VARIABLE, *variables]},
        "panels": numbered,
    }


__all__ = [
    "SCHEMA_VERSION",
    "Grid",
    "barchart",
    "dashboard",
    "field",
    "link",
    "panel",
    "stat",
    "table",
    "target",
    "timeseries",
]
