"""Alembic migrations of the control plane (applied in code by :func:`omium.sdk.sql.engine.migrate`)."""
