"""The control database: its URL, an engine set up per dialect, and the schema brought to head.

Two dialects, one schema:

- **SQLite** (a file, the embedded default): WAL, so readers never wait for the writer; a busy
  timeout, so a process that finds the file locked waits its turn instead of failing; and every
  write transaction starts with ``BEGIN IMMEDIATE``, taking the file's write lock before it reads,
  so two processes never both decide on what they read (SQLite runs one writer at a time, which is
  what makes each compare-and-set of the store correct). The sqlite3 driver's own transaction
  handling is switched off for that (SQLAlchemy's documented recipe).
- **PostgreSQL** through psycopg 3 (psycopg2 if that is what is installed), READ COMMITTED; the
  store makes each decision a conditional write or takes the row locks it needs.

The schema is made by the Alembic migrations shipped in ``migrations/``, applied on open under a
lock of the database (the SQLite write lock, a PostgreSQL advisory lock), so that processes
opening a fresh database at once migrate it once.
"""

from __future__ import annotations

import importlib.util
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event, make_url, text
from sqlalchemy.exc import SQLAlchemyError

from omium.errors import ConfigError, MigrationError

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
# Alembic's version table, named for Omium so that a database shared with an application that
# runs Alembic itself keeps two histories apart.
VERSION_TABLE = "omium_alembic_version"
# The newest revision in migrations/versions (a test checks it is Alembic's head): a database at
# it is opened without loading Alembic at all.
HEAD = "0004"
# Key of the PostgreSQL advisory lock held while migrating ("omium" in ASCII).
MIGRATION_LOCK = 0x6F6D69756D
# How long a SQLite writer waits for another process's write lock before giving up.
BUSY_TIMEOUT_SECONDS = 30.0

# Execution option naming the statement a SQLite transaction starts with: BEGIN IMMEDIATE for a
# transaction that writes (the default), "" for a single statement in autocommit (the statement
# takes the write lock itself, before it reads).
SQLITE_BEGIN = "omium_sqlite_begin"


def control_url(url: str | Path) -> URL:
    """The SQLAlchemy URL of a control database.

    ``sqlite:///path`` (or a plain path) is a SQLite file; ``postgresql://...`` gets the
    PostgreSQL driver that is installed (psycopg 3, else psycopg2) unless it names one.
    """
    if isinstance(url, Path) or "://" not in url:
        return URL.create("sqlite", database=str(Path(url).expanduser()))
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername=f"postgresql+{_postgres_driver()}")
    backend = parsed.get_backend_name()
    if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise ConfigError(
            f"the control database {url!r} must be a file (sqlite:///path/control.db): an in-memory "
            "SQLite database is one per connection and would lose what another connection wrote"
        )
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(f"the control database must be sqlite:///... or postgresql://..., not {url!r}")
    return parsed


def _postgres_driver() -> str:
    for module, driver in (("psycopg", "psycopg"), ("psycopg2", "psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return driver
    raise ConfigError("a postgresql:// control database needs a driver: pip install 'omium[postgres]'")


def create_control_engine(url: str | Path, *, fsync: bool = False, autocommit: bool = False) -> Engine:
    """An engine on the control database, set up for its dialect (see the module docstring).

    ``fsync`` (SQLite): make each commit survive power loss, not only the death of the process
    (``synchronous=FULL`` instead of ``NORMAL``). PostgreSQL commits durably by its own settings.
    ``autocommit`` (PostgreSQL): every connection in autocommit for good, for single-statement
    writes in one round trip (switching a pooled connection in and out of it costs more than the
    statement's own overhead).
    """
    parsed = control_url(url)
    if parsed.get_backend_name() == "postgresql":
        if autocommit:
            return create_engine(
                parsed, pool_size=8, max_overflow=16, isolation_level="AUTOCOMMIT", pool_reset_on_return=None
            )
        return create_engine(parsed, pool_size=8, max_overflow=16)
    assert parsed.database is not None
    Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        parsed,
        connect_args={"timeout": BUSY_TIMEOUT_SECONDS},
        pool_size=8,
        max_overflow=16,
    )
    synchronous = "FULL" if fsync else "NORMAL"

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the store says when a transaction begins
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
            _write_ahead_log(cursor)
            cursor.execute(f"PRAGMA synchronous={synchronous}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        begin = connection.get_execution_options().get(SQLITE_BEGIN, "BEGIN IMMEDIATE")
        if begin:
            connection.exec_driver_sql(begin)

    return engine


def _write_ahead_log(cursor: Any) -> None:
    """Put the SQLite file in WAL mode (once per file: the mode is kept in it).

    Switching needs the file to itself, and SQLite answers "database is locked" at once rather
    than waiting (no busy handler for it) while another process is, say, migrating a database
    just created: wait for it here.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            if cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal":
                return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise sqlite3.OperationalError("could not switch the control database to WAL mode")
        time.sleep(0.01)


def current_revision(engine: Engine) -> str | None:
    """The schema revision recorded in the database (None for a fresh one)."""
    from sqlalchemy import inspect

    with engine.connect().execution_options(**{SQLITE_BEGIN: ""}) as connection:  # reads only
        if not inspect(connection).has_table(VERSION_TABLE):
            return None
        return connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()  # noqa: S608


def migrate(engine: Engine) -> bool:
    """Bring the control database's schema to :data:`HEAD`; True if anything was applied.

    A database at head costs one query. Otherwise the migrations run in one transaction that
    holds the database's migration lock, so processes opening a fresh database at once apply them
    once (the others find it at head when they get the lock).
    """
    if current_revision(engine) == HEAD:
        return False
    from alembic import command
    from alembic.config import Config
    from alembic.util import CommandError

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.connect() as connection, connection.begin():  # SQLite: BEGIN IMMEDIATE
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except (CommandError, SQLAlchemyError) as exc:
        raise MigrationError(f"the control database could not be migrated to {HEAD}: {exc}") from exc
    logger.info("control database at schema revision %s", HEAD)
    return True


__all__ = [
    "HEAD",
    "MIGRATIONS",
    "VERSION_TABLE",
    "control_url",
    "create_control_engine",
    "current_revision",
    "migrate",
]
