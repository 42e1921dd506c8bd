"""The ``grafana-clickhouse-datasource`` plugin as the dashboards address it.

Its id, the data source Omium provisions for it, the reference every panel reads through, and the
plugin's result formats.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

# Grafana's dashboard, panel and provisioning documents, as the plain dicts they are serialised from.
Json = dict[str, Any]

PLUGIN_ID = "grafana-clickhouse-datasource"
DATASOURCE_UID = "omium-clickhouse"
DATASOURCE_NAME = "Omium ClickHouse"
# Every panel and query variable reads through the dashboard's ``datasource`` variable.
DATASOURCE_REF: Json = {"type": PLUGIN_ID, "uid": "${datasource}"}


class Format(IntEnum):
    """The plugin's result formats (a target's ``format``)."""

    TIME_SERIES = 0
    TABLE = 1
    LOGS = 2
    TRACE = 3


# A target's ``queryType`` for each format, as the plugin's query editor writes it.
QUERY_TYPES = {
    Format.TIME_SERIES: "timeseries",
    Format.TABLE: "table",
    Format.LOGS: "logs",
    Format.TRACE: "traces",
}

__all__ = [
    "DATASOURCE_NAME",
    "DATASOURCE_REF",
    "DATASOURCE_UID",
    "PLUGIN_ID",
    "QUERY_TYPES",
    "Format",
    "Json",
]
