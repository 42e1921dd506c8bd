"""The control store on SQLite and PostgreSQL: the conformance suite, several processes on one
database, and the schema's migrations."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from omium.sdk.sql import SqlStore
from omium.sdk.store import CheckpointStore
from tests.sdk.store_conformance import StoreConformance


class TestSqliteStore(StoreConformance):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[CheckpointStore]:
        sql = SqlStore(f"sqlite:///{tmp_path}/control.db")
        yield sql
        sql.close()


class TestPostgresStore(StoreConformance):
    @pytest.fixture
    def store(self, postgres_url: str) -> Iterator[CheckpointStore]:
        sql = SqlStore(postgres_url)
        yield sql
        sql.close()
