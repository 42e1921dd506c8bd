"""The checkpoint store on the warehouse (in-process chdb or a ClickHouse server).

ClickHouse is not transactional, so a state change is a new row with a higher version, read back
with FINAL; compare-and-set on a run's status is serialised by a lock in this process, which is
the one process that writes this warehouse (in embedded mode chdb allows no other). Other
processes go through the Omium server, which serialises the same way.

For the same reason this process holds the authoritative run leases in memory: a run's lease is
read from ``omium_run_leases`` on its first use, then every change is decided here and appended
there. The fence check of a fenced step is a dict lookup, not a query.
"""

from __future__ import annotations

import atexit
import base64
import threading
from collections.abc import Sequence
from typing import Any

from omium.errors import NotFoundError
from omium.sdk.serde import digest
from omium.sdk.store import (
    CheckpointRecord,
    CheckpointStore,
    CommandRecord,
    EventRecord,
    HandoffRecord,
    LocalStore,
    RunLease,
    RunRecord,
    StateVersion,
    StepRecord,
)
from omium.warehouse.connection import Warehouse

INSERT_RUN = """
INSERT INTO omium_runs (run_id, workflow, status, version, parent_run_id, forked_from, started_at,
                        updated_at, error, attributes)
VALUES ({run_id:String}, {workflow:String}, {status:String}, {version:UInt64}, {parent_run_id:String},
        {forked_from:String}, fromUnixTimestamp64Micro({started_at:Int64}, 'UTC'),
        fromUnixTimestamp64Micro({updated_at:Int64}, 'UTC'), {error:String},
        mapFromArrays({attr_keys:Array(String)}, {attr_values:Array(String)}))
"""

RUN_COLUMNS = """
run_id, workflow, status, version, parent_run_id, forked_from, error, attributes,
toUnixTimestamp64Micro(started_at) AS started_at, toUnixTimestamp64Micro(updated_at) AS updated_at
"""
SELECT_RUN = f"SELECT {RUN_COLUMNS} FROM omium_runs FINAL WHERE run_id = {{run_id:String}}"  # noqa: S608
LIST_RUNS = f"""
SELECT {RUN_COLUMNS} FROM omium_runs FINAL
WHERE {{status:String}} = '' OR status = {{status:String}}
ORDER BY started_at DESC, run_id DESC
LIMIT {{limit:UInt32}}
"""  # noqa: S608

BLOB_EXISTS = "SELECT count() FROM omium_state_blobs WHERE hash = {hash:String}"
SELECT_BLOB = "SELECT base64Encode(data) AS data FROM omium_state_blobs WHERE hash = {hash:String} LIMIT 1"
SELECT_BLOBS = (
    "SELECT toString(hash) AS hash, any(base64Encode(data)) AS data FROM omium_state_blobs "
    "WHERE hash IN {hashes:Array(String)} GROUP BY hash"
)

INSERT_STEP = """
INSERT INTO omium_steps (run_id, position, attempt, kind, name, agent, status, input_hash, output_hash,
                         error, idempotency_key, started_at, ended_at, call_id, generation, fence)
VALUES ({run_id:String}, {position:UInt32}, {attempt:UInt16}, {kind:String}, {name:String}, {agent:String},
        {status:String}, {input_hash:String}, {output_hash:String}, {error:String}, {idempotency_key:String},
        fromUnixTimestamp64Micro({started_at:Int64}, 'UTC'),
        fromUnixTimestamp64Micro({ended_at:Int64}, 'UTC'), {call_id:String}, {generation:UInt32},
        {fence:UInt64})
"""
SELECT_STEPS = """
SELECT run_id, position, attempt, kind, name, agent, status, input_hash, output_hash, error, idempotency_key,
       toUnixTimestamp64Micro(started_at) AS started_at, toUnixTimestamp64Micro(ended_at) AS ended_at,
       call_id, generation, fence
FROM omium_steps FINAL
WHERE run_id = {run_id:String}
ORDER BY position, ended_at DESC, attempt DESC
LIMIT 1 BY position
"""

INSERT_CHECKPOINT = """
INSERT INTO omium_checkpoints (run_id, seq, checkpoint_id, name, agent, step_index, state_hash,
                               parent_checkpoint_id, metadata, created_at, call_id, generation, fence)
VALUES ({run_id:String}, {seq:UInt32}, {checkpoint_id:String}, {name:String}, {agent:String},
        {step_index:UInt32}, {state_hash:String}, {parent_checkpoint_id:String}, {metadata:String},
        fromUnixTimestamp64Micro({created_at:Int64}, 'UTC'), {call_id:String}, {generation:UInt32},
        {fence:UInt64})
"""
SELECT_CHECKPOINTS = """
SELECT run_id, seq, checkpoint_id, name, agent, step_index, state_hash, parent_checkpoint_id, metadata,
       toUnixTimestamp64Micro(created_at) AS created_at, call_id, generation, fence
FROM omium_checkpoints FINAL
WHERE run_id = {run_id:String}
ORDER BY seq
"""


INSERT_HANDOFF = """
INSERT INTO omium_handoffs (run_id, channel, seq, version, sender, receiver, schema_name, payload_hash,
                            status, reason, send_key, receive_key, created_at, depends_on, trace_id, span_id,
                            fence)
VALUES ({run_id:String}, {channel:String}, {seq:UInt64}, {version:UInt64}, {sender:String}, {receiver:String},
        {schema_name:String}, {payload_hash:String}, {status:String}, {reason:String}, {send_key:String},
        {receive_key:String}, fromUnixTimestamp64Micro({created_at:Int64}, 'UTC'),
        mapFromArrays({dep_keys:Array(String)}, {dep_versions:Array(UInt64)}), {trace_id:String},
        {span_id:String}, {fence:UInt64})
"""
SELECT_HANDOFFS = """
SELECT run_id, channel, seq, version, sender, receiver, schema_name, payload_hash, status, reason, send_key,
       receive_key, toUnixTimestamp64Micro(created_at) AS created_at, mapKeys(depends_on) AS dep_keys,
       mapValues(depends_on) AS dep_versions, trace_id, span_id, fence
FROM omium_handoffs FINAL
WHERE run_id = {run_id:String} AND channel = {channel:String}
ORDER BY seq
"""


SELECT_STATE = """
SELECT namespace, key, version, value_hash, writer, run_id, toUnixTimestamp64Micro(written_at) AS written_at
FROM omium_shared_state
WHERE namespace = {namespace:String} AND key = {key:String}
ORDER BY version DESC
LIMIT 1
"""
INSERT_STATE = """
INSERT INTO omium_shared_state (namespace, key, version, value_hash, writer, run_id, written_at)
VALUES ({namespace:String}, {key:String}, {version:UInt64}, {value_hash:String}, {writer:String},
        {run_id:String}, fromUnixTimestamp64Micro({written_at:Int64}, 'UTC'))
"""


INSERT_EVENT = """
INSERT INTO omium_events (event_id, run_id, kind, actor, reason, before, after, attributes, ts)
VALUES ({event_id:String}, {run_id:String}, {kind:String}, {actor:String}, {reason:String}, {before:String},
        {after:String}, mapFromArrays({attr_keys:Array(String)}, {attr_values:Array(String)}),
        fromUnixTimestamp64Micro({ts:Int64}, 'UTC'))
"""
SELECT_EVENTS = """
SELECT event_id, run_id, kind, actor, reason, before, after, attributes, toUnixTimestamp64Micro(ts) AS ts
FROM omium_events FINAL
WHERE {run_id:String} = '' OR run_id = {run_id:String}
ORDER BY ts, event_id
LIMIT {limit:UInt32}
"""
INSERT_COMMAND = """
INSERT INTO omium_commands (command_id, run_id, kind, payload, status, version, worker, lease_until, attempts,
                            result, created_at, updated_at)
VALUES ({command_id:String}, {run_id:String}, {kind:String}, {payload:String}, {status:String},
        {version:UInt64}, {worker:String}, {lease_until:Int64}, {attempts:UInt32}, {result:String},
        fromUnixTimestamp64Micro({created_at:Int64}, 'UTC'),
        fromUnixTimestamp64Micro({updated_at:Int64}, 'UTC'))
"""
SELECT_COMMANDS = """
SELECT command_id, run_id, kind, payload, status, version, worker, lease_until, attempts, result,
       toUnixTimestamp64Micro(created_at) AS created_at, toUnixTimestamp64Micro(updated_at) AS updated_at
FROM omium_commands FINAL
WHERE ({run_id:String} = '' OR run_id = {run_id:String})
  AND ({status:String} = '' OR status = {status:String})
ORDER BY created_at, command_id
"""

LEASE_COLUMNS = ["run_id", "holder", "fence", "lease_until", "acquired_at", "version"]
SELECT_LEASE = """
SELECT run_id, holder, fence, lease_until, toUnixTimestamp64Micro(acquired_at) AS acquired_at, version
FROM omium_run_leases FINAL
WHERE run_id = {run_id:String}
"""


def _run(row: dict[str, Any]) -> RunRecord:
    row["attributes"] = dict(row["attributes"])
    return RunRecord(**row)


def _handoff(row: dict[str, Any]) -> HandoffRecord:
    row["depends_on"] = dict(zip(row.pop("dep_keys"), map(int, row.pop("dep_versions")), strict=True))
    return HandoffRecord(**row)


class WarehouseStore(LocalStore):
    """A :class:`CheckpointStore` on Omium's warehouse tables."""

    def __init__(self, warehouse: Warehouse, *, owns: bool = False) -> None:
        self._warehouse = warehouse
        self._owns = owns
        self._lock = threading.Lock()
        self._leases: dict[str, RunLease] = {}  # the authoritative lease of each run used so far

    def close(self) -> None:
        """Close the warehouse connection if this store opened it (``owns=True``)."""
        if self._owns:
            self._warehouse.close()

    @property
    def warehouse(self) -> Warehouse:
        """The warehouse this store writes to."""
        return self._warehouse

    def put_blob(self, data: bytes) -> str:
        key = digest(data)
        with self._lock:
            if not self._warehouse.scalar(BLOB_EXISTS, {"hash": key}):
                self._warehouse.insert(
                    "omium_state_blobs", [[key], [bytes(data)], [len(data)]], ["hash", "data", "size"]
                )
        return key

    def get_blob(self, digest: str) -> bytes:
        rows = self._warehouse.query_rows(SELECT_BLOB, {"hash": digest})
        if not rows:
            raise NotFoundError(f"no stored value {digest!r}")
        return base64.b64decode(rows[0]["data"])

    def get_blobs(self, digests: Sequence[str]) -> dict[str, bytes]:
        wanted = list(dict.fromkeys(digests))
        if not wanted:
            return {}
        rows = self._warehouse.query_rows(SELECT_BLOBS, {"hashes": wanted})
        found = {r["hash"]: base64.b64decode(r["data"]) for r in rows}
        missing = [d for d in wanted if d not in found]
        if missing:
            raise NotFoundError(f"no stored value {missing[0]!r} ({len(missing)} of {len(wanted)} unknown)")
        return found

    def _put_run(self, run: RunRecord) -> None:
        self._insert_run(run)

    def _put_handoff(self, message: HandoffRecord) -> None:
        params: dict[str, Any] = dict(message.__dict__)
        # Maps do not bind as parameters on every transport; two arrays do.
        depends_on = params.pop("depends_on")
        params["dep_keys"], params["dep_versions"] = list(depends_on), list(depends_on.values())
        self._warehouse.command(INSERT_HANDOFF, params)

    def _put_state(self, written: StateVersion) -> None:
        self._warehouse.command(INSERT_STATE, dict(written.__dict__))

    def _insert_run(self, run: RunRecord) -> None:
        params: dict[str, Any] = {
            k: getattr(run, k)
            for k in (
                "run_id",
                "workflow",
                "status",
                "version",
                "parent_run_id",
                "forked_from",
                "started_at",
                "updated_at",
                "error",
            )
        }
        # Maps do not bind as parameters on every transport; two arrays do.
        params["attr_keys"] = list(run.attributes)
        params["attr_values"] = list(run.attributes.values())
        self._warehouse.command(INSERT_RUN, params)

    def get_run(self, run_id: str) -> RunRecord:
        rows = self._warehouse.query_rows(SELECT_RUN, {"run_id": run_id})
        if not rows:
            raise NotFoundError(f"no run {run_id!r}")
        return _run(rows[0])

    def list_runs(self, status: str | None = None, limit: int = 100) -> list[RunRecord]:
        rows = self._warehouse.query_rows(LIST_RUNS, {"status": status or "", "limit": limit})
        return [_run(row) for row in rows]

    def _put_step(self, step: StepRecord) -> None:
        self._warehouse.command(INSERT_STEP, dict(step.__dict__))

    def steps(self, run_id: str) -> list[StepRecord]:
        return [StepRecord(**row) for row in self._warehouse.query_rows(SELECT_STEPS, {"run_id": run_id})]

    def _put_checkpoint(self, checkpoint: CheckpointRecord) -> None:
        self._warehouse.command(INSERT_CHECKPOINT, dict(checkpoint.__dict__))

    def _get_lease(self, run_id: str) -> RunLease | None:
        found = self._leases.get(run_id)
        if found is None:
            rows = self._warehouse.query_rows(SELECT_LEASE, {"run_id": run_id})
            if rows:  # a run never leased is not remembered: a bad id costs no memory
                found = self._leases[run_id] = RunLease(**rows[0])
        return found

    def _put_lease(self, lease: RunLease) -> None:
        self._insert_leases([lease])
        self._leases[lease.run_id] = lease

    def _insert_leases(self, leases: list[RunLease]) -> None:
        self._warehouse.insert(
            "omium_run_leases", [[getattr(x, n) for x in leases] for n in LEASE_COLUMNS], LEASE_COLUMNS
        )

    def checkpoints(self, run_id: str) -> list[CheckpointRecord]:
        rows = self._warehouse.query_rows(SELECT_CHECKPOINTS, {"run_id": run_id})
        return [CheckpointRecord(**row) for row in rows]

    def handoffs(self, run_id: str, channel: str) -> list[HandoffRecord]:
        rows = self._warehouse.query_rows(SELECT_HANDOFFS, {"run_id": run_id, "channel": channel})
        return [_handoff(row) for row in rows]

    def apply_batch(self, records: list[tuple[str, Any]]) -> None:
        """Write journal records (idempotent: replaying a batch changes nothing)."""
        blobs = [r for kind, r in records if kind == "blob"]
        if blobs:
            self._warehouse.insert(
                "omium_state_blobs",
                [[h for h, _ in blobs], [d for _, d in blobs], [len(d) for _, d in blobs]],
                ["hash", "data", "size"],
            )
        steps = [r for kind, r in records if kind == "step"]
        if steps:
            names = list(StepRecord.__dataclass_fields__)
            self._warehouse.insert("omium_steps", [[getattr(s, n) for s in steps] for n in names], names)
        # Checkpoints come one per step from checkpointers such as LangGraph's: one insert a batch,
        # not one a record (a backlog of 600 took 6.5 s one by one, 0.09 s together).
        checkpoints = [r for kind, r in records if kind == "checkpoint"]
        if checkpoints:
            names = list(CheckpointRecord.__dataclass_fields__)
            self._warehouse.insert(
                "omium_checkpoints", [[getattr(c, n) for c in checkpoints] for n in names], names
            )
        for kind, record in records:
            if kind == "run":
                self._insert_run(record)
            elif kind == "handoff":
                self._put_handoff(record)
            elif kind == "state":
                self._warehouse.command(INSERT_STATE, dict(record.__dict__))
        leases: list[RunLease] = [r for kind, r in records if kind == "lease"]
        if leases:  # decided by the journal's store: kept, and known here if this run is
            with self._lock:
                self._insert_leases(leases)
                for lease in leases:
                    known = self._leases.get(lease.run_id)
                    if known is not None and lease.version >= known.version:
                        self._leases[lease.run_id] = lease

    def read_state(self, namespace: str, key: str) -> StateVersion | None:
        rows = self._warehouse.query_rows(SELECT_STATE, {"namespace": namespace, "key": key})
        return StateVersion(**rows[0]) if rows else None

    def record_event(self, event: EventRecord) -> None:
        params: dict[str, Any] = dict(event.__dict__)
        attributes = params.pop("attributes")
        params["attr_keys"], params["attr_values"] = list(attributes), list(attributes.values())
        self._warehouse.command(INSERT_EVENT, params)

    def events(self, run_id: str = "", limit: int = 10_000) -> list[EventRecord]:
        rows = self._warehouse.query_rows(SELECT_EVENTS, {"run_id": run_id, "limit": limit})
        for row in rows:
            row["attributes"] = dict(row["attributes"])
        return [EventRecord(**row) for row in rows]

    def _put_command(self, command: CommandRecord) -> None:
        self._warehouse.command(INSERT_COMMAND, dict(command.__dict__))

    def commands(self, run_id: str = "", status: str = "") -> list[CommandRecord]:
        rows = self._warehouse.query_rows(SELECT_COMMANDS, {"run_id": run_id, "status": status})
        return [CommandRecord(**row) for row in rows]


def embedded_store(settings: Any = None) -> CheckpointStore:
    """The default store of a process with no server: the embedded warehouse behind a journal."""
    from omium.config import Settings, ensure_home
    from omium.sdk.journal import JournaledStore
    from omium.warehouse.connection import connect

    settings = settings or Settings.from_env()
    ensure_home(settings.home)  # runs, prompts and outputs live here: this user's only
    backing = WarehouseStore(connect(settings, mode="embedded"), owns=True)
    store = JournaledStore(backing, settings.home / "journal", fsync=settings.fsync)
    # Move what is journaled into the warehouse at a normal exit (a crash leaves it for replay).
    atexit.register(store.flush)
    return store


__all__ = ["WarehouseStore", "embedded_store"]
