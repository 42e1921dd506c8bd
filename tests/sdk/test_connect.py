"""How a process reaches the control plane: its database directly when it is the server's, the
server's API when it is not, the embedded deployment when no server answers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from omium.collector.server import RunningServer, serving
from omium.config import Settings
from omium.sdk.remote_store import RemoteStore
from omium.sdk.sql import SqlStore
from omium.sdk.sql.connect import connect_control, server_deployment
from omium.sdk.sql.engine import control_url
from omium.sdk.sql.outbox import Outbox
from omium.sdk.store import CheckpointStore, RunRecord
from omium.warehouse import ClickHouseWarehouse
from omium.warehouse.store import EmbeddedStore
from tests.conftest import free_port, schema_url


@pytest.fixture
def opened() -> Iterator[list[CheckpointStore]]:
    """Stores a test opened, closed at its end."""
    stores: list[CheckpointStore] = []
    yield stores
    for store in stores:
        store.close()


def _connect(settings: Settings, opened: list[CheckpointStore], **kwargs: bool) -> CheckpointStore:
    store = connect_control(settings, **kwargs)
    opened.append(store)
    return store


def test_with_no_server_a_process_keeps_the_embedded_deployment(
    settings: Settings, warehouse: ClickHouseWarehouse, opened: list[CheckpointStore]
) -> None:
    alone = settings.with_(server_url=f"http://127.0.0.1:{free_port()}")  # nobody listens there
    store = _connect(alone, opened)
    assert type(store) is EmbeddedStore and store.warehouse is not None and store.server_url == ""
    store.create_run(RunRecord("alone", "wf"))
    store.close()
    # Its own shipper copied the run into the embedded warehouse (the session's chdb, this
    # test's database).
    assert warehouse.scalar("SELECT status FROM omium_runs FINAL WHERE run_id = 'alone'") == "running"
    # A process that must never hold chdb (the console) gets the control database alone.
    console = _connect(alone, opened, warehouse=False)
    assert type(console) is SqlStore and console.get_run("alone").workflow == "wf"


def test_beside_the_server_a_process_writes_to_its_database_directly(
    settings: Settings, server: RunningServer, opened: list[CheckpointStore]
) -> None:
    beside = settings.with_(server_url=server.url)
    store = _connect(beside, opened)
    assert type(store) is SqlStore and store.server_url == server.url
    assert Outbox(store).deployment() == server_deployment(beside) != ""
    store.create_run(RunRecord("direct", "wf"))
    assert server.state.store.get_run("direct").workflow == "wf"  # the server's own database


def test_a_process_whose_database_is_another_one_uses_the_servers_api(
    settings: Settings, server: RunningServer, tmp_path: Path, opened: list[CheckpointStore]
) -> None:
    other = tmp_path / "other.db"
    SqlStore(f"sqlite:///{other}").close()  # a control database, but not the server's
    missing = tmp_path / "not-here" / "control.db"
    for url in (f"sqlite:///{other}", f"sqlite:///{missing}", None):
        # None: the default file in a home of its own, which has none.
        client = settings.with_(server_url=server.url, control_url=url, home=tmp_path / "home")
        store = _connect(client, opened)
        assert type(store) is RemoteStore, url
        store.create_run(RunRecord(f"remote-{len(opened)}", "wf"))
    # Through the API, into the server's database; nothing was written beside it, and a database
    # that did not exist was not created to find out.
    assert {r.run_id for r in server.state.store.list_runs()} == {"remote-1", "remote-2", "remote-3"}
    unchanged = SqlStore(f"sqlite:///{other}")
    opened.append(unchanged)
    assert unchanged.list_runs() == []
    assert not missing.parent.exists()
    assert not (tmp_path / "home" / "control.db").exists()


@pytest.fixture
def other_postgres(postgres_server: str) -> Iterator[str]:
    """Another control database on the same PostgreSQL server (a schema of its own)."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(control_url(postgres_server), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = schema_url(postgres_server, schema)
        SqlStore(url).close()
        yield url
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


def test_on_postgresql_the_same_database_is_reached_directly_and_another_is_not(
    settings: Settings,
    warehouse: ClickHouseWarehouse,
    postgres_url: str,
    other_postgres: str,
    opened: list[CheckpointStore],
) -> None:
    on_postgres = settings.with_(control_url=postgres_url)
    with serving(on_postgres, warehouse.clone()) as running:
        beside = on_postgres.with_(server_url=running.url)
        direct = _connect(beside, opened)
        assert type(direct) is SqlStore and direct.engine.dialect.name == "postgresql"
        direct.create_run(RunRecord("pg-direct", "wf"))
        assert running.state.store.get_run("pg-direct").status == "running"
        # Another control database on the server's PostgreSQL, and a PostgreSQL nobody listens for.
        refused = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
        for url in (other_postgres, refused):
            assert type(_connect(beside.with_(control_url=url), opened)) is RemoteStore, url
