"""The control plane on a transactional SQL database (SQLite file or PostgreSQL).

:class:`SqlStore` implements :class:`omium.sdk.store.CheckpointStore` with every compare-and-set
decided by the database (conditional writes, primary keys, row and advisory locks), so several
processes, servers and workers can share one control database. The schema is Alembic's
(``migrations/``), applied on open.
"""

from omium.sdk.sql.store import SqlStore, open_control_store

__all__ = ["SqlStore", "open_control_store"]
