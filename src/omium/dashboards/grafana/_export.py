"""Grafana provisioning for the plugin and the dashboards, and writing them out as files.

``omium export grafana DIR`` calls :func:`export`; ``deploy/grafana`` is its output, committed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from ._dashboards import dashboards
from ._plugin import DATASOURCE_NAME, DATASOURCE_UID, PLUGIN_ID, Json

# Where ``omium export grafana DIR`` puts things, as Grafana's provisioning expects them.
DASHBOARDS = "dashboards"
PROVISIONING = "provisioning"


@dataclass(frozen=True)
class DatasourceOptions:
    """The ClickHouse connection the provisioned data source uses.

    The password is left to Grafana's environment (``$CLICKHOUSE_PASSWORD``): provisioning files
    expand environment variables, so no secret is written to disk.
    """

    host: str = "clickhouse"
    port: int = 9000
    protocol: str = "native"
    username: str = "omium"
    database: str = "omium"


def datasource_provisioning(options: DatasourceOptions = DatasourceOptions()) -> Json:
    """Grafana's data source provisioning for the plugin, in OTel mode over ``otel_traces``."""
    if options.protocol not in ("native", "http"):
        raise ValueError(f"protocol must be native or http, got {options.protocol!r}")
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": DATASOURCE_NAME,
                "uid": DATASOURCE_UID,
                "type": PLUGIN_ID,
                "isDefault": True,
                "jsonData": {
                    "host": options.host,
                    "port": options.port,
                    "protocol": options.protocol,
                    "username": options.username,
                    "defaultDatabase": options.database,
                    # Applied by the plugin to every query it sends: FINAL on each table that has
                    # it, so spans or records re-sent inside another request (one row per copy
                    # until their parts merge) read once in the plugin's own trace and logs
                    # queries, which do not say FINAL themselves.
                    "customSettings": [{"setting": "final", "value": "1"}],
                    "traces": {
                        "defaultDatabase": options.database,
                        "defaultTable": "otel_traces",
                        "otelEnabled": True,
                        "durationUnit": "nanoseconds",
                        "traceTimestampTableSuffix": "_trace_id_ts",
                    },
                },
                "secureJsonData": {"password": "${CLICKHOUSE_PASSWORD}"},
            }
        ],
    }


def dashboard_provisioning(path: str = "/var/lib/grafana/dashboards") -> Json:
    """A file provider loading the dashboards from ``path`` into an "Omium" folder."""
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": "omium",
                "folder": "Omium",
                "type": "file",
                "disableDeletion": False,
                "options": {"path": path},
            }
        ],
    }


_HEADER = "# Written by `omium export grafana` from omium.dashboards.grafana: change it there.\n"


class _Dumper(yaml.SafeDumper):
    """Indents list items under their key, as hand-written provisioning files do."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def export(
    directory: Path,
    *,
    datasource: DatasourceOptions = DatasourceOptions(),
    dashboards_path: str = "/var/lib/grafana/dashboards",
) -> list[Path]:
    """Write the dashboards and provisioning files under ``directory``.

    Layout (as ``deploy/grafana``): ``dashboards/<uid>.json``,
    ``provisioning/datasources/clickhouse.yaml`` and ``provisioning/dashboards/omium.yaml``.
    Other files in ``directory`` are left alone.

    Args:
        directory: Where to write; created if missing.
        datasource: The ClickHouse connection of the provisioned data source.
        dashboards_path: Where Grafana will find the dashboards (the provider's path).

    Returns:
        The files written.

    Raises:
        NotADirectoryError: ``directory`` (or a folder to create in it) is a file.
    """
    files: dict[Path, str] = {}
    for dashboard in dashboards():
        files[Path(DASHBOARDS) / f"{dashboard['uid']}.json"] = json.dumps(dashboard, indent=2) + "\n"
    for name, content in (
        ("datasources/clickhouse.yaml", datasource_provisioning(datasource)),
        ("dashboards/omium.yaml", dashboard_provisioning(dashboards_path)),
    ):
        files[Path(PROVISIONING) / name] = _HEADER + yaml.dump(content, Dumper=_Dumper, sort_keys=False)
    written = []
    for relative, text in files.items():
        path = directory / relative
        for parent in reversed(path.parents):
            if parent.exists() and not parent.is_dir():
                raise NotADirectoryError(f"{parent} is a file, not a directory")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


__all__ = [
    "DASHBOARDS",
    "PROVISIONING",
    "DatasourceOptions",
    "dashboard_provisioning",
    "datasource_provisioning",
    "export",
]
