"""A write-ahead journal in front of a slow durable store.

Every write is appended to a local journal file (one ``os.write``: in the page cache, so a
``kill -9`` of this process loses nothing) and applied to an in-memory overlay, then returned:
a durable step costs microseconds instead of a warehouse statement. A background thread moves
batches to the backing store (columnar inserts) and drops what it moved from the overlay. Reads
merge the overlay over the backing store. A journal left by a crashed process is replayed into
the backing store when the next one opens it (every record is idempotent there).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from omium.sdk.serde import digest
from omium.sdk.store import (
    CheckpointRecord,
    CheckpointStore,
    CommandRecord,
    EventRecord,
    HandoffRecord,
    LocalStore,
    MemoryStore,
    RunRecord,
    StateVersion,
    StepRecord,
    layered,
)

logger = logging.getLogger(__name__)

RECORD_TYPES: dict[str, type] = {
    "step": StepRecord,
    "checkpoint": CheckpointRecord,
    "run": RunRecord,
    "handoff": HandoffRecord,
    "state": StateVersion,
}
Record = tuple[str, Any]


class BatchStore(Protocol):
    """A backing store that can take journal records in bulk (idempotently)."""

    def apply_batch(self, records: list[Record]) -> None:
        """Write ``(kind, record)`` pairs: kind ``blob`` (``(hash, bytes)``) or a RECORD_TYPES key."""


def _encode(kind: str, record: Any) -> str:
    if kind == "blob":
        payload: Any = [record[0], base64.b64encode(record[1]).decode()]
    else:
        payload = record.__dict__
    return json.dumps([kind, payload], separators=(",", ":")) + "\n"


def _decode(line: str) -> Record:
    kind, payload = json.loads(line)
    if kind == "blob":
        return kind, (payload[0], base64.b64decode(payload[1]))
    return kind, RECORD_TYPES[kind](**payload)


class JournaledStore(LocalStore):
    """A :class:`CheckpointStore` that journals locally and writes ``backing`` in the background."""

    def __init__(
        self, backing: Any, directory: Path, *, flush_interval: float = 0.2, fsync: bool = False
    ) -> None:
        self._backing: CheckpointStore = backing
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self._interval = flush_interval
        self._lock = threading.RLock()
        self._overlay = MemoryStore()
        self._pending: list[Record] = []
        self._flush_lock = threading.Lock()
        self._retired: list[Path] = []
        self._recover()
        self._path = self._new_journal()
        self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="omium-journal-flush", daemon=True)
        self._thread.start()

    @property
    def backing(self) -> CheckpointStore:
        """The store records are moved to."""
        return self._backing

    # --- journal plumbing
    def _new_journal(self) -> Path:
        return self._dir / f"journal-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"

    def _recover(self) -> None:
        for path in sorted(self._dir.glob("journal-*.jsonl")):
            records = []
            for line in path.read_text().splitlines():
                try:
                    records.append(_decode(line))
                except (ValueError, KeyError, TypeError):
                    logger.warning("skipping a torn journal line in %s", path)  # the write that crashed
            if records:
                self._backing.apply_batch(records)  # type: ignore[attr-defined]
            logger.info("replayed %d journal records from %s", len(records), path)
            path.unlink()

    def _log(self, kind: str, record: Any) -> None:
        os.write(self._fd, _encode(kind, record).encode())
        if self._fsync:
            os.fsync(self._fd)
        self._pending.append((kind, record))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # keep journaling; the next flush retries
                logger.exception("moving journal records to the backing store failed")

    def flush(self) -> None:
        """Move everything journaled so far to the backing store."""
        with self._flush_lock:
            with self._lock:
                if not self._pending:
                    return
                batch, self._pending = self._pending, []
                os.close(self._fd)
                self._retired.append(self._path)
                self._path = self._new_journal()
                self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                self._backing.apply_batch(batch)  # type: ignore[attr-defined]
            except BaseException:
                with self._lock:  # not moved: keep them (and their journal files) for the next try
                    self._pending = batch + self._pending
                raise
            for path in self._retired:
                path.unlink(missing_ok=True)
            self._retired.clear()
            with self._lock:
                self._evict(batch)

    def _evict(self, batch: list[Record]) -> None:
        overlay = self._overlay
        for kind, record in batch:
            if kind == "blob":
                overlay._blobs.pop(record[0], None)
            elif kind == "step":
                key = (record.run_id, record.position)
                if overlay._steps.get(key) is record:
                    del overlay._steps[key]
            elif kind == "checkpoint":
                key2 = (record.run_id, record.seq)
                if overlay._checkpoints.get(key2) is record:
                    del overlay._checkpoints[key2]
            elif kind == "run":
                run_id = record.run_id
                if overlay._runs.get(run_id) is record:
                    del overlay._runs[run_id]
            elif kind == "handoff":
                key3 = (record.run_id, record.channel, record.seq)
                if overlay._handoffs.get(key3) is record:
                    del overlay._handoffs[key3]
            elif kind == "state":
                key4 = (record.namespace, record.key)
                if overlay._state.get(key4) is record:
                    del overlay._state[key4]

    def close(self) -> None:
        """Flush, stop the background thread, remove the (empty) journal, close the backing store."""
        self._stop.set()
        self._wake.set()
        self._thread.join(30)
        self.flush()
        os.close(self._fd)
        self._path.unlink(missing_ok=True)
        self._backing.close()

    def _put_run(self, run: RunRecord) -> None:
        self._log("run", run)
        self._overlay._runs[run.run_id] = run

    def _put_handoff(self, message: HandoffRecord) -> None:
        self._log("handoff", message)
        self._overlay._handoffs[(message.run_id, message.channel, message.seq)] = message

    def _put_state(self, written: StateVersion) -> None:
        self._log("state", written)
        self._overlay._state[(written.namespace, written.key)] = written

    # --- blobs
    def put_blob(self, data: bytes) -> str:
        key = digest(data)
        with self._lock:
            if key not in self._overlay._blobs:
                self._log("blob", (key, bytes(data)))
                self._overlay._blobs[key] = bytes(data)
        return key

    def get_blob(self, digest: str) -> bytes:
        found = self._overlay._blobs.get(digest)
        return found if found is not None else self._backing.get_blob(digest)

    def get_blobs(self, digests: Sequence[str]) -> dict[str, bytes]:
        found = {d: self._overlay._blobs[d] for d in digests if d in self._overlay._blobs}
        rest = [d for d in digests if d not in found]
        return found | (self._backing.get_blobs(rest) if rest else {})

    # --- runs
    def get_run(self, run_id: str) -> RunRecord:
        found = self._overlay._runs.get(run_id)
        return found if found is not None else self._backing.get_run(run_id)

    def list_runs(self, status: str | None = None, limit: int = 100) -> list[RunRecord]:
        mine = dict(self._overlay._runs)
        runs = {r.run_id: r for r in self._backing.list_runs(None, limit + len(mine))} | mine
        chosen = [r for r in runs.values() if status is None or r.status == status]
        chosen.sort(key=lambda r: (r.started_at, r.run_id), reverse=True)
        return chosen[:limit]

    # --- steps and checkpoints
    def record_step(self, step: StepRecord) -> None:
        with self._lock:
            self._log("step", step)
            self._overlay._steps[(step.run_id, step.position)] = step

    def steps(self, run_id: str) -> list[StepRecord]:
        mine = self._overlay.steps(run_id)
        return layered(self._backing.steps(run_id), mine, lambda s: s.position)

    def add_checkpoint(self, checkpoint: CheckpointRecord) -> None:
        with self._lock:
            self._log("checkpoint", checkpoint)
            self._overlay._checkpoints[(checkpoint.run_id, checkpoint.seq)] = checkpoint

    def checkpoints(self, run_id: str) -> list[CheckpointRecord]:
        mine = self._overlay.checkpoints(run_id)
        return layered(self._backing.checkpoints(run_id), mine, lambda c: c.seq)

    # --- hand-offs
    def handoffs(self, run_id: str, channel: str) -> list[HandoffRecord]:
        mine = self._overlay.handoffs(run_id, channel)
        return layered(self._backing.handoffs(run_id, channel), mine, lambda m: m.seq)

    def read_state(self, namespace: str, key: str) -> StateVersion | None:
        found = self._overlay._state.get((namespace, key))
        return found if found is not None else self._backing.read_state(namespace, key)

    # --- audit events and commands: rare and not on the hot path, written straight through
    def record_event(self, event: EventRecord) -> None:
        self._backing.record_event(event)

    def events(self, run_id: str = "", limit: int = 10_000) -> list[EventRecord]:
        return self._backing.events(run_id, limit)

    def _put_command(self, command: CommandRecord) -> None:
        raise NotImplementedError  # every command method is the backing store's

    def enqueue_command(self, command: CommandRecord) -> CommandRecord:
        return self._backing.enqueue_command(command)

    def commands(self, run_id: str = "", status: str = "") -> list[CommandRecord]:
        return self._backing.commands(run_id, status)

    def claim_command(
        self, worker: str, lease_seconds: float, kinds: list[str] | None = None
    ) -> CommandRecord | None:
        return self._backing.claim_command(worker, lease_seconds, kinds)

    def renew_command(self, command_id: str, worker: str, lease_seconds: float) -> CommandRecord:
        return self._backing.renew_command(command_id, worker, lease_seconds)

    def finish_command(self, command_id: str, worker: str, status: str, result: str = "") -> CommandRecord:
        return self._backing.finish_command(command_id, worker, status, result)


__all__ = ["BatchStore", "JournaledStore"]
