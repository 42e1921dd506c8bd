"""A write-ahead journal in front of a slow durable store.

Every write is appended to a local journal file (one ``os.write`` loop: in the page cache, so a
``kill -9`` of this process loses nothing; fsynced too when asked) and applied to an in-memory
overlay, then returned: a durable step costs microseconds instead of a warehouse statement. A
background thread moves batches to the backing store (columnar inserts) and drops what it moved
from the overlay. Reads merge the overlay over the backing store. Journals left by a crashed
process are replayed, oldest first, into the backing store when the next one opens them (every
record is idempotent there).

Decisions are made here, synchronously, under the store's lock, before anything is journaled:
compare-and-set of runs and shared state, run leases and the fence check of every fenced write
(a :class:`~omium.errors.FencedOut` reaches the caller and nothing of the refused write is kept).
The run leases this store decided are kept in memory for good (one small record per leased run),
so a fenced step costs a dict lookup, not a read of the backing store.

A record the backing store refuses must not hold back the records behind it, nor stop the next
start: when a batch fails while the store still answers, the batch is split until the refused
records are alone, those go to ``quarantine.jsonl`` (with the error and the time) and the rest
is applied. When the store does not answer at all, nothing is quarantined: the batch waits and
the flush retries with backoff, writing to the same journal file meanwhile.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import threading
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
    RunLease,
    RunRecord,
    StateVersion,
    StepRecord,
    layered,
    now_us,
)

logger = logging.getLogger(__name__)

RECORD_TYPES: dict[str, type] = {
    "step": StepRecord,
    "checkpoint": CheckpointRecord,
    "run": RunRecord,
    "handoff": HandoffRecord,
    "state": StateVersion,
    "lease": RunLease,
}
Record = tuple[str, Any]

QUARANTINE = "quarantine.jsonl"
# journal-<sequence>-<pid>.jsonl: the zero-padded sequence orders files by creation.
_NAME = re.compile(r"journal-(\d{12})-\d+\.jsonl")
MAX_BACKOFF = 30.0  # seconds between flush attempts while the backing store fails
MAX_ERROR = 2000  # characters of an error kept beside a quarantined record


class BatchStore(Protocol):
    """A backing store that can take journal records in bulk (idempotently)."""

    def apply_batch(self, records: list[Record]) -> None:
        """Write ``(kind, record)`` pairs: kind ``blob`` (``(hash, bytes)``) or a RECORD_TYPES key."""


class Unreachable(Exception):  # an internal signal: never leaves this module
    """The backing store does not answer: keep the records and retry later."""


def _payload(kind: str, record: Any) -> Any:
    if kind == "blob":
        return [record[0], base64.b64encode(record[1]).decode()]
    return record.__dict__


def _encode(kind: str, record: Any) -> str:
    return json.dumps([kind, _payload(kind, record)], separators=(",", ":")) + "\n"


def _decode(line: str) -> Record:
    kind, payload = json.loads(line)
    if kind == "blob":
        return kind, (payload[0], base64.b64decode(payload[1]))
    return kind, RECORD_TYPES[kind](**payload)


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (a write may be short: a signal, a full pipe)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:  # pragma: no cover - os.write raises rather than return 0 for files
            raise OSError(f"journal write wrote {written} bytes")
        view = view[written:]


def _order(path: Path) -> tuple[int, int, str]:
    """Replay order: journals of this format by sequence; any older-format file before them, by age."""
    found = _NAME.fullmatch(path.name)
    if found:
        return (1, int(found.group(1)), path.name)
    try:
        return (0, path.stat().st_mtime_ns, path.name)
    except FileNotFoundError:
        return (0, 0, path.name)


def _sequence(path: Path) -> int:
    found = _NAME.fullmatch(path.name)
    return int(found.group(1)) if found else 0


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
        # The authoritative lease of every run this store has leased or checked a fence of
        # (loaded from the backing store on first use, never evicted: the fence check of each
        # step reads it).
        self._leases: dict[str, RunLease] = {}
        self._unleased: set[str] = set()  # runs created here and not leased yet
        self._pending: list[Record] = []
        self._flush_lock = threading.Lock()
        self._retired: list[Path] = []
        self._quarantine_path = self._dir / QUARANTINE
        self._quarantined, self._last_error, self._last_quarantined_at = self._read_quarantine()
        self._failures = 0
        left = sorted(self._dir.glob("journal-*.jsonl"), key=_order)
        self._seq = max((_sequence(p) for p in left), default=0)
        self._recover(left)
        self._written = 0  # records in the current journal file
        self._path, self._fd = self._open_journal()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="omium-journal-flush", daemon=True)
        self._thread.start()

    @property
    def backing(self) -> CheckpointStore:
        """The store records are moved to."""
        return self._backing

    def quarantine_stats(self) -> dict[str, Any]:
        """Counters for ``/v1/stats``: records set aside because the backing store refused them
        (``quarantine.jsonl`` in the journal directory), and the flush backlog."""
        with self._lock:
            return {
                "quarantined_records": self._quarantined,
                "last_quarantine_error": self._last_error,
                "last_quarantined_at": self._last_quarantined_at,
                "journal_pending_records": len(self._pending),
                "journal_failed_flushes": self._failures,
            }

    # --- journal files
    def _open_journal(self) -> tuple[Path, int]:
        self._seq += 1
        path = self._dir / f"journal-{self._seq:012d}-{os.getpid()}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._size = 0  # bytes of acknowledged records in it
        if self._fsync:  # the file's name must survive power loss too, not only its bytes
            self._sync_directory()
        return path, fd

    def _sync_directory(self) -> None:
        fd = os.open(self._dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _log(self, kind: str, record: Any) -> None:
        line = _encode(kind, record).encode()
        with self._lock:
            try:
                _write_all(self._fd, line)
                if self._fsync:
                    os.fsync(self._fd)
            except OSError:
                # Not acknowledged: cut what reached the file, or the next line would be glued to it.
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._size)
                raise
            self._size += len(line)
            self._written += 1
            self._pending.append((kind, record))

    # --- recovery
    def _recover(self, paths: list[Path]) -> None:
        """Replay journals a dead process left, oldest first. A line that does not decode, or a
        record the backing store refuses, is quarantined: the next start never depends on them.
        If the backing store does not answer, the records wait in the overlay for the flush."""
        for number, path in enumerate(paths):
            records = self._read_journal(path)
            dropped: list[Record] = []
            try:
                self._deliver(records, dropped)
            except Unreachable:
                logger.warning(
                    "the backing store does not answer: %d journals wait for the flush", len(paths)
                )
                refused = {id(r) for r in dropped}
                for rest in paths[number:]:
                    found = records if rest == path else self._read_journal(rest)
                    found = [r for r in found if id(r) not in refused]
                    for kind, record in found:
                        self._remember(kind, record)
                    self._pending.extend(found)
                    self._retired.append(rest)
                return
            logger.info("replayed %d journal records from %s", len(records), path)
            path.unlink(missing_ok=True)

    def _read_journal(self, path: Path) -> list[Record]:
        lines = path.read_bytes().split(b"\n")
        if lines[-1]:  # no newline after it: the write a crash interrupted, never acknowledged
            logger.warning("skipping a torn journal line at the end of %s", path)
        records = []
        for line in lines[:-1]:
            try:
                records.append(_decode(line.decode()))
            except (ValueError, KeyError, TypeError, IndexError, RecursionError) as exc:
                self._quarantine_line(path, line, exc)
        return records

    # --- moving records to the backing store
    def _run(self) -> None:
        delay = self._interval
        while not self._stop.is_set():
            self._wake.wait(delay)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # keep journaling; the next flush retries, later each time
                delay = min(max(delay * 2, 0.5), MAX_BACKOFF)
                logger.exception(
                    "moving journal records to the backing store failed; retrying in %.1fs", delay
                )
            else:
                delay = self._interval

    def flush(self) -> None:
        """Move everything journaled so far to the backing store, quarantining what it refuses.

        Raises:
            Exception: what the backing store raised if it does not answer at all; the records
                stay journaled for the next attempt.
        """
        with self._flush_lock:
            with self._lock:
                if not self._pending:
                    return
                batch, self._pending = self._pending, []
                if self._written:  # retire the file holding the batch's newest records
                    os.close(self._fd)
                    self._retired.append(self._path)
                    self._path, self._fd = self._open_journal()
                    self._written = 0
            dropped: list[Record] = []
            try:
                self._deliver(batch, dropped)
            except BaseException as exc:
                with self._lock:  # not moved: keep them (and their journal files) for the next try
                    self._failures += 1
                    refused = {id(r) for r in dropped}
                    self._pending = [r for r in batch if id(r) not in refused] + self._pending
                    self._evict(dropped)
                if isinstance(exc, Unreachable) and exc.__cause__ is not None:
                    raise exc.__cause__ from None
                raise
            for path in self._retired:
                path.unlink(missing_ok=True)
            self._retired.clear()
            with self._lock:
                self._failures = 0
                self._evict(batch)

    def _deliver(self, records: list[Record], dropped: list[Record] | None = None) -> None:
        """Apply ``records``; if the store refuses them while it answers, isolate the refused ones
        (halving the batch) and quarantine them (into ``dropped``). :class:`Unreachable` if the
        store does not answer."""
        if not records:
            return
        dropped = [] if dropped is None else dropped
        try:
            self._backing.apply_batch(records)  # type: ignore[attr-defined]
            return
        except Exception as exc:
            error = exc
        self._check_reachable(error)
        if len(records) == 1:
            try:  # once more, in case the first failure was the store's and not the record's
                self._backing.apply_batch(records)  # type: ignore[attr-defined]
                return
            except Exception as exc:
                self._check_reachable(exc)
                self._quarantine(records[0], exc)
                dropped.append(records[0])
                return
        logger.warning("a batch of %d journal records was refused (%s): isolating the refused ones",
                       len(records), error)  # fmt: skip
        half = len(records) // 2
        self._deliver(records[:half], dropped)  # in order: a later version stays the later write
        self._deliver(records[half:], dropped)

    def _check_reachable(self, error: Exception) -> None:
        """Raise :class:`Unreachable` (from ``error``) if the backing store does not answer a read."""
        try:
            self._backing.list_runs(None, 1)
        except Exception as probe:
            logger.debug("the backing store does not answer: %s", probe)
            raise Unreachable(str(error)) from error

    # --- quarantine
    def _read_quarantine(self) -> tuple[int, str, int]:
        try:
            lines = self._quarantine_path.read_bytes().splitlines()
        except FileNotFoundError:
            return 0, "", 0
        try:
            last = json.loads(lines[-1]) if lines else {}
            return len(lines), str(last.get("error", "")), int(last.get("quarantined_at", 0))
        except (ValueError, AttributeError, TypeError):
            return len(lines), "", 0

    def _quarantine(self, record: Record, error: BaseException) -> None:
        kind, value = record
        logger.error("the backing store refused a %s record; quarantined in %s: %s",
                     kind, self._quarantine_path, error)  # fmt: skip
        self._set_aside({"kind": kind, "record": _payload(kind, value)}, error)

    def _quarantine_line(self, path: Path, line: bytes, error: BaseException) -> None:
        logger.error(
            "a line of %s does not decode; quarantined in %s: %s", path, self._quarantine_path, error
        )
        text = line.decode("utf-8", "surrogateescape")  # kept as it was, escaped below if need be
        self._set_aside({"source": path.name, "line": text}, error)

    def _set_aside(self, entry: dict[str, Any], error: BaseException) -> None:
        message = f"{type(error).__name__}: {error}"[:MAX_ERROR]
        at = now_us()
        # ensure_ascii: any text (a lone surrogate, an undecodable byte) still makes one valid line.
        line = json.dumps({"quarantined_at": at, "error": message} | entry, ensure_ascii=True, default=repr)
        fd = os.open(self._quarantine_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            _write_all(fd, (line + "\n").encode())
            if self._fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        with self._lock:
            self._quarantined += 1
            self._last_error = message.encode("utf-8", "replace").decode("utf-8")
            self._last_quarantined_at = at

    # --- the overlay
    def _slot(self, kind: str, record: Any) -> tuple[dict[Any, Any], Any]:
        """The overlay table a record lives in, and its key there."""
        overlay = self._overlay
        slots: dict[str, tuple[dict[Any, Any], Any]] = {
            "blob": (overlay._blobs, lambda: record[0]),
            "step": (overlay._steps, lambda: (record.run_id, record.position)),
            "checkpoint": (overlay._checkpoints, lambda: (record.run_id, record.seq)),
            "run": (overlay._runs, lambda: record.run_id),
            "handoff": (overlay._handoffs, lambda: (record.run_id, record.channel, record.seq)),
            "state": (overlay._state, lambda: (record.namespace, record.key)),
            "lease": (self._leases, lambda: record.run_id),
        }
        table, key = slots[kind]
        return table, key()

    def _remember(self, kind: str, record: Any) -> None:
        table, key = self._slot(kind, record)
        try:
            table[key] = record[1] if kind == "blob" else record
        except TypeError:  # an unhashable key (a journal edited by hand): never readable anyway
            logger.warning("a journaled %s record has an unusable key; not kept in memory", kind)

    def _evict(self, batch: list[Record]) -> None:
        for kind, record in batch:
            if kind == "lease":  # kept for good: see self._leases
                continue
            table, key = self._slot(kind, record)
            try:
                if kind == "blob":
                    table.pop(key, None)
                elif table.get(key) is record:  # unless a newer version replaced it meanwhile
                    del table[key]
            except TypeError:  # an unhashable key: _remember never kept it
                pass

    def _keep(self, kind: str, record: Any) -> None:
        with self._lock:
            self._log(kind, record)
            self._remember(kind, record)

    def close(self) -> None:
        """Flush, stop the background thread, remove the (empty) journal, close the backing store.

        If the backing store does not answer, the journal stays for the next start to replay.
        """
        self._stop.set()
        self._wake.set()
        self._thread.join(30)
        try:
            self.flush()
        except Exception:
            logger.exception("the journal could not be flushed: %s keeps it for the next start", self._dir)
        with self._lock:
            os.close(self._fd)
            if not self._written:  # nothing in it: the records still pending are in retired files
                self._path.unlink(missing_ok=True)
        self._backing.close()

    def _put_run(self, run: RunRecord) -> None:
        self._keep("run", run)

    def _put_handoff(self, message: HandoffRecord) -> None:
        self._keep("handoff", message)

    def _put_state(self, written: StateVersion) -> None:
        self._keep("state", written)

    def _put_step(self, step: StepRecord) -> None:
        self._keep("step", step)

    def _put_checkpoint(self, checkpoint: CheckpointRecord) -> None:
        self._keep("checkpoint", checkpoint)

    # --- leases: decided here (LocalStore), journaled like any record
    def create_run(self, run: RunRecord) -> RunRecord:
        created = super().create_run(run)
        with self._lock:
            self._unleased.add(run.run_id)  # created here just now: the backing store has no lease
        return created

    def _get_lease(self, run_id: str) -> RunLease | None:
        found = self._leases.get(run_id)
        if found is None and run_id not in self._unleased:
            found = self._backing.lease(run_id)
            if found is not None:  # a run never leased is not remembered: a bad id costs no memory
                self._leases[run_id] = found
        return found

    def _put_lease(self, lease: RunLease) -> None:
        self._keep("lease", lease)
        self._unleased.discard(lease.run_id)

    # --- blobs
    def put_blob(self, data: bytes) -> str:
        key = digest(data)
        with self._lock:
            if key not in self._overlay._blobs:
                self._keep("blob", (key, bytes(data)))
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
        # Filtered by the backing store first, then limited: ``limit + len(mine)`` of its runs
        # with that status leave ``limit`` of them even if every run here changed status since.
        runs = {r.run_id: r for r in self._backing.list_runs(status, limit + len(mine))} | mine
        chosen = [r for r in runs.values() if status is None or r.status == status]
        chosen.sort(key=lambda r: (r.started_at, r.run_id), reverse=True)
        return chosen[:limit]

    # --- steps and checkpoints (written by LocalStore.record_step/add_checkpoint, fence checked)
    def steps(self, run_id: str) -> list[StepRecord]:
        mine = self._overlay.steps(run_id)
        return layered(self._backing.steps(run_id), mine, lambda s: s.position)

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


__all__ = ["QUARANTINE", "BatchStore", "JournaledStore"]
