"""A LangGraph thread as its Omium records say it is now: live checkpoints and their writes.

The records of a thread are append-only, so deleting is writing a *tombstone*: a checkpoint
record without state (``state_hash == ""``) whose metadata says what it deletes —
``{"delete": "thread"}`` (every record numbered before it) or ``{"delete": [[ns, id], ...]}``
(those checkpoints and their writes, as numbered before it). A thread deleted and then used
again shows only what came after. Applying a record is idempotent and the outcome does not
depend on the order records are applied in, so a view can be kept up to date by the writes of
several threads of this process.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from omium.sdk.store import CheckpointRecord, CheckpointStore, RunRecord, StepRecord

WORKFLOW = "langgraph"  # the RunRecord.workflow of a LangGraph thread
RUN_PREFIX = "langgraph:"  # run_id = RUN_PREFIX + thread_id
WRITES_KIND = "langgraph.writes"  # the StepRecord.kind of a task's writes
DELETE_THREAD = "thread"

Key = tuple[str, str]  # (checkpoint_ns, checkpoint_id)


def run_id_of(thread_id: object) -> str:
    """The Omium run that holds a LangGraph thread."""
    return f"{RUN_PREFIX}{thread_id}"


def thread_run(thread_id: object) -> RunRecord:
    """The run record a LangGraph thread is kept under (made on its first write)."""
    return RunRecord(
        run_id_of(thread_id),
        WORKFLOW,
        status="completed",
        attributes={"adapter": "langgraph", "thread_id": str(thread_id)},
    )


def node_path(checkpoint_ns: str) -> str:
    """A namespace without its task ids (``"outer:3f2a|inner:9c1d"`` -> ``"outer|inner"``)."""
    return "|".join(part.partition(":")[0] for part in checkpoint_ns.split("|")) if checkpoint_ns else ""


def write_key(checkpoint_ns: str, checkpoint_id: str, task_id: str) -> str:
    """The ``idempotency_key`` of a write record: which checkpoint, which task."""
    return json.dumps([checkpoint_ns, checkpoint_id, task_id], separators=(",", ":"))


def is_tombstone(record: CheckpointRecord) -> bool:
    """Whether a checkpoint record deletes rather than records."""
    return record.state_hash == ""


@dataclass
class Thread:
    """The live records of one thread."""

    run_id: str
    checkpoints: dict[Key, CheckpointRecord] = field(default_factory=dict)
    _writes: dict[Key, dict[int, tuple[str, StepRecord]]] = field(default_factory=dict)  # by position
    _barrier: int = 0  # records numbered below it were deleted with the thread
    _deleted_at: dict[Key, int] = field(default_factory=dict)
    last_number: int = 0  # the greatest seq or position of any record, live or not

    def add_checkpoint(self, record: CheckpointRecord) -> None:
        """Apply a checkpoint record (or a tombstone)."""
        self.last_number = max(self.last_number, record.seq)
        if is_tombstone(record):
            self._delete(record.seq, json.loads(record.metadata).get("delete"))
            return
        key = (record.name, record.checkpoint_id)
        if record.seq < max(self._barrier, self._deleted_at.get(key, 0)):
            return
        found = self.checkpoints.get(key)
        if found is None or found.seq < record.seq:
            self.checkpoints[key] = record

    def _delete(self, seq: int, deleted: object) -> None:
        keys: list[Key]
        if deleted == DELETE_THREAD:
            self._barrier = max(self._barrier, seq)
            keys = list(self.checkpoints)
        elif isinstance(deleted, list):
            keys = [(ns, cid) for ns, cid in deleted]
            for key in keys:
                self._deleted_at[key] = max(self._deleted_at.get(key, 0), seq)
        else:
            return  # not a deletion this version knows
        for key in keys:
            found = self.checkpoints.get(key)
            if found is not None and found.seq < seq:
                del self.checkpoints[key]

    def add_step(self, step: StepRecord) -> None:
        """Apply a write record."""
        self.last_number = max(self.last_number, step.position)
        if step.kind != WRITES_KIND:
            return
        ns, cid, task_id = json.loads(step.idempotency_key)
        self._writes.setdefault((ns, cid), {})[step.position] = (task_id, step)

    def writes(self, key: Key) -> list[tuple[str, StepRecord]]:
        """The live writes of a live checkpoint, ``(task_id, record)`` in the order written."""
        if key not in self.checkpoints:
            return []
        after = max(self._barrier, self._deleted_at.get(key, 0))
        found = self._writes.get(key, {})
        return [found[p] for p in sorted(found) if p > after]

    def latest(self, checkpoint_ns: str) -> CheckpointRecord | None:
        """The namespace's newest checkpoint (checkpoint ids grow with time)."""
        ids = [cid for ns, cid in self.checkpoints if ns == checkpoint_ns]
        return self.checkpoints[(checkpoint_ns, max(ids))] if ids else None

    def namespaces(self) -> set[str]:
        """The namespaces with a live checkpoint."""
        return {ns for ns, _ in self.checkpoints}

    def copy(self) -> Thread:
        """A snapshot that later writes do not change."""
        return Thread(
            self.run_id,
            dict(self.checkpoints),
            {k: dict(v) for k, v in self._writes.items()},
            self._barrier,
            dict(self._deleted_at),
            self.last_number,
        )

    def apply(self, records: list[CheckpointRecord], steps: list[StepRecord]) -> Thread:
        """Apply records read from the store."""
        for record in records:
            self.add_checkpoint(record)
        for step in steps:
            self.add_step(step)
        return self


def load(store: CheckpointStore, run_id: str) -> tuple[list[CheckpointRecord], list[StepRecord]]:
    """A thread's records in the store."""
    return store.checkpoints(run_id), store.steps(run_id)
