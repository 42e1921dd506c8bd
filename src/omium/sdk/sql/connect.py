"""How a process reaches the control plane, chosen once at ``omium.init()``.

1. An Omium server answers (``OMIUM_SERVER_URL``) and this process can open the control database
   it runs on (``OMIUM_CONTROL_URL``, or the SQLite file in a shared ``$OMIUM_HOME``): write to the
   database directly, no server hop (the server's ``/v1/deployment`` and the database's identity
   must match, so a stale local file is never mistaken for the server's database). Spans go to the
   server's OTLP endpoint.
2. A server answers, the database is out of reach: the server's control API (:class:`RemoteStore`).
3. No server: the embedded deployment in this process (:func:`omium.warehouse.store.embedded_store`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from omium.config import Settings

if TYPE_CHECKING:
    from omium.sdk.sql.store import SqlStore
    from omium.sdk.store import CheckpointStore

logger = logging.getLogger(__name__)


def server_deployment(settings: Settings) -> str:
    """The identity of the control database the server at ``settings.server_url`` runs on ("" if
    it does not say)."""
    import httpx

    headers = {"Authorization": f"Bearer {settings.api_token}"} if settings.api_token else {}
    try:
        response = httpx.get(f"{settings.server_url}/v1/deployment", headers=headers, timeout=2.0)
    except httpx.HTTPError:
        return ""
    if response.status_code != 200:
        return ""
    return str(response.json().get("deployment", ""))


def _local_file(url: str) -> Path | None:
    from omium.sdk.sql.engine import control_url

    parsed = control_url(url)
    return Path(parsed.database) if parsed.get_backend_name() == "sqlite" and parsed.database else None


def _identity(url: str) -> str:
    """The deployment identity recorded in the control database at ``url``, read without writing
    anything ("" if it cannot be reached or has none)."""
    from sqlalchemy import text

    from omium.sdk.sql.engine import SQLITE_BEGIN, create_control_engine

    try:
        engine = create_control_engine(url)
    except Exception:
        return ""
    try:
        with engine.connect().execution_options(**{SQLITE_BEGIN: ""}) as connection:
            found = connection.execute(text("SELECT value FROM meta WHERE name = 'deployment'")).scalar()
        return str(found or "")
    except Exception as exc:  # unreachable, or not a control database (no meta table)
        logger.info("control database %s not reachable from here (%s); using the server's API", url, exc)
        return ""
    finally:
        engine.dispose()


def direct_store(settings: Settings, deployment: str) -> SqlStore | None:
    """The control database ``deployment`` names, opened directly, if this process can reach it."""
    from omium.sdk.sql.outbox import Outbox
    from omium.sdk.sql.store import SqlStore

    url = settings.control_database
    local = _local_file(url)
    if not deployment or (local is not None and not local.exists()):
        return None  # never create a database just to find it is not the server's
    # Read the identity before opening the store, which would migrate (write to) any database it
    # can reach, even one that is not the server's.
    if _identity(url) != deployment:
        return None
    try:
        store = SqlStore(url, fsync=settings.fsync)
    except Exception as exc:  # refused, another version: the API still works
        logger.info("control database %s not usable from here (%s); using the server's API", url, exc)
        return None
    if Outbox(store).deployment() != deployment:
        store.close()
        return None
    store.server_url = settings.server_url
    return store


def connect_control(settings: Settings | None = None, *, warehouse: bool = True) -> CheckpointStore:
    """This process's control store (see the module docstring).

    Args:
        settings: default ``Settings.from_env()``.
        warehouse: with no server, also open the embedded warehouse and ship to it (a process
            that must never hold chdb, such as the console, says False).
    """
    from omium.warehouse.remote import server_answers

    settings = settings or Settings.from_env()
    if server_answers(settings.server_url):
        deployment = server_deployment(settings)
        direct = direct_store(settings, deployment)
        if direct is not None:
            return direct
        logger.info(
            "the server at %s runs on %s; this process uses its control API",
            settings.server_url,
            f"control database {deployment}" if deployment else "a control database it did not name",
        )
        from omium.sdk.remote_store import RemoteStore

        return RemoteStore(settings.server_url, token=settings.api_token)
    if not warehouse:
        from omium.config import ensure_home
        from omium.sdk.sql.store import SqlStore

        ensure_home(settings.home)
        return SqlStore(settings.control_database, fsync=settings.fsync)
    from omium.warehouse.store import embedded_store

    return embedded_store(settings)


__all__ = ["connect_control", "direct_store", "server_deployment"]
