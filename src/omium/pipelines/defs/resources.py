"""The resource every asset reaches the warehouse through: a thin wrapper of ``omium.warehouse.connect()``."""

import dataclasses
from pathlib import Path
from typing import Any

import dagster as dg

from omium.config import Settings


class WarehouseResource(dg.ConfigurableResource):
    """Omium's warehouse for the pipelines, and where their trained models are kept.

    Defaults follow the ``OMIUM_*`` environment like every other Omium process: with an Omium
    server running (``omium up``) the pipelines go through its SQL API (writes with
    ``OMIUM_API_TOKEN``); with ``OMIUM_CLICKHOUSE_URL`` they talk to ClickHouse directly; alone,
    they open the embedded warehouse.
    """

    mode: str = "auto"
    database: str = ""
    home: str = ""
    models_dir: str = ""

    def settings(self) -> Settings:
        """``OMIUM_*`` settings, with this resource's home if it names one."""
        settings = Settings.from_env()
        return dataclasses.replace(settings, home=Path(self.home)) if self.home else settings

    def connect(self) -> Any:
        """A connection (the caller closes it)."""
        from omium.warehouse import connect

        return connect(self.settings(), mode=self.mode, database=self.database or None)  # type: ignore[arg-type]

    def model_directory(self) -> Path:
        """Where fitted models are stored (default ``$OMIUM_HOME/models``)."""
        return Path(self.models_dir) if self.models_dir else self.settings().home / "models"
