"""Alembic's environment: migrate the connection :func:`omium.sdk.sql.engine.migrate` hands over.

There is no alembic.ini: the caller builds the Config in code, opens a transaction (holding the
database's migration lock) and passes its connection in ``config.attributes["connection"]``; the
migrations run inside that transaction, which the caller commits.
"""

from __future__ import annotations

from alembic import context

from omium.sdk.sql.engine import VERSION_TABLE

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("the control plane's migrations run through omium.sdk.sql.engine.migrate()")

context.configure(connection=connection, version_table=VERSION_TABLE, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
