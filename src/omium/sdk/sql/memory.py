"""A throwaway control database: the store of tests, examples and scratch copies.

:class:`MemoryStore` is the embedded default's code on a SQLite file of its own in a temporary
directory (removed when the store is closed or collected), so every compare-and-set a test or an
example exercises is decided by the database exactly as in production, never by a lock in this
process. A fresh store copies a template database migrated once per process (a copy costs well
under a millisecond; migrating costs tens).

:class:`ScratchStore` is a copy-on-write view of another store for trying a fix without
committing anything: reads fall through to the base store, writes stay in the scratch database
and are dropped with it.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import insert

from omium.errors import NotFoundError
from omium.sdk.sql.store import SqlStore
from omium.sdk.sql.tables import handoffs as handoff_table
from omium.sdk.sql.tables import shared_state
from omium.sdk.store import (
    CheckpointRecord,
    CheckpointStore,
    CommandRecord,
    EventRecord,
    HandoffRecord,
    RunRecord,
    StateVersion,
    StepRecord,
    layered,
)

_template_lock = threading.Lock()
_template: Path | None = None


def _migrated_template() -> Path:
    """A control database at the newest schema, made once per process."""
    global _template
    with _template_lock:
        if _template is None or not _template.exists():
            directory = Path(tempfile.mkdtemp(prefix="omium-template-"))
            path = directory / "control.db"
            SqlStore(path).close()  # migrated, then closed: the WAL is folded into the file
            atexit.register(shutil.rmtree, directory, True)
            _template = path
        return _template


class MemoryStore(SqlStore):
    """A control database of this object's own, removed when the object is collected (or at
    exit): for tests and examples."""

    def __init__(self) -> None:
        directory = tempfile.mkdtemp(prefix="omium-store-")
        path = Path(directory) / "control.db"
        shutil.copyfile(_migrated_template(), path)
        self._remove = weakref.finalize(self, shutil.rmtree, directory, True)
        super().__init__(path)

    # close() only closes connections (the store reopens them if used again, as a caller that
    # lent it to a command expects); the database goes when the store is collected, or at exit.


class ScratchStore(MemoryStore):
    """A copy-on-write view of ``base``: reads fall through, writes stay here and are dropped.

    What a write decides on (the latest version of a shared-state key, a hand-off's status) is
    copied here when read, so the scratch database's own compare-and-set sees it.
    """

    def __init__(self, base: CheckpointStore) -> None:
        super().__init__()
        self._base = base

    def get_blob(self, digest: str) -> bytes:
        return self.get_blobs([digest])[digest]

    def get_blobs(self, digests: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for digest in dict.fromkeys(digests):
            try:
                found.update(super().get_blobs([digest]))
            except NotFoundError:
                found.update(self._base.get_blobs([digest]))
        return found

    def get_run(self, run_id: str) -> RunRecord:
        try:
            return super().get_run(run_id)
        except NotFoundError:
            return self._base.get_run(run_id)

    def steps(self, run_id: str) -> list[StepRecord]:
        return layered(self._base.steps(run_id), super().steps(run_id), lambda s: s.position)

    def checkpoints(self, run_id: str) -> list[CheckpointRecord]:
        return layered(self._base.checkpoints(run_id), super().checkpoints(run_id), lambda c: c.seq)

    def handoffs(self, run_id: str, channel: str) -> list[HandoffRecord]:
        own = super().handoffs(run_id, channel)
        mine = {m.seq for m in own}
        copied = [m for m in self._base.handoffs(run_id, channel) if m.seq not in mine]
        if copied:  # here, so that a status change of one is this database's decision
            rows = [dict(m.__dict__, depends_on=json.dumps(m.depends_on)) for m in copied]
            with self._transaction() as connection:
                connection.execute(insert(handoff_table).prefix_with("OR IGNORE"), rows)
        return layered(copied, own, lambda m: m.seq)

    def read_state(self, namespace: str, key: str) -> StateVersion | None:
        own = super().read_state(namespace, key)
        base = self._base.read_state(namespace, key)
        if base is not None and (own is None or own.version < base.version):
            with self._transaction() as connection:
                connection.execute(insert(shared_state).prefix_with("OR IGNORE"), [dict(base.__dict__)])
            return base
        return own

    def write_state(
        self,
        namespace: str,
        key: str,
        expected_version: int,
        value_hash: str,
        *,
        writer: str = "",
        run_id: str = "",
        fence: int = 0,
    ) -> StateVersion:
        self.read_state(namespace, key)  # the base's latest version, copied here first
        return super().write_state(
            namespace, key, expected_version, value_hash, writer=writer, run_id=run_id, fence=fence
        )

    def set_handoff_status(
        self,
        run_id: str,
        channel: str,
        seq: int,
        status: str,
        reason: str = "",
        receive_key: str = "",
        *,
        fence: int = 0,
    ) -> HandoffRecord:
        self.handoffs(run_id, channel)  # the base's messages, copied here first
        return super().set_handoff_status(run_id, channel, seq, status, reason, receive_key, fence=fence)

    def events(self, run_id: str = "", limit: int = 10_000) -> list[EventRecord]:
        return []

    def commands(self, run_id: str = "", status: str = "") -> list[CommandRecord]:
        return []


__all__ = ["MemoryStore", "ScratchStore"]
