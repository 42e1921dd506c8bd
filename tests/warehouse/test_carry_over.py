"""Carrying a home written by Omium 0.x (the warehouse's ``omium_*`` tables and journal files left
by a crashed process) over to the control database: every fact once, at its newest version, and
runs that carry on where they stopped."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import omium
from omium.config import Settings
from omium.errors import FencedOut
from omium.sdk import serde
from omium.sdk.lease import new_holder
from omium.sdk.recording import begin_call
from omium.sdk.sql import SqlStore
from omium.sdk.sql.outbox import Outbox
from omium.sdk.sql.tables import metadata
from omium.sdk.store import (
    CheckpointRecord,
    CommandRecord,
    EventRecord,
    HandoffRecord,
    MemoryStore,
    RunLease,
    RunRecord,
    StateVersion,
    StepRecord,
    now_us,
)
from omium.warehouse import ClickHouseWarehouse
from omium.warehouse.carry_over import MARK, carry_over
from omium.warehouse.shipper import Shipper
from omium.warehouse.store import EmbeddedStore, embedded_store

# --- how Omium 0.x wrote its facts (its WarehouseStore's statements, verbatim)

INSERT_RUN = """
INSERT INTO omium_runs (run_id, workflow, status, version, parent_run_id, forked_from, started_at,
                        updated_at, error, attributes)
VALUES ({run_id:String}, {workflow:String}, {status:String}, {version:UInt64}, {parent_run_id:String},
        {forked_from:String}, fromUnixTimestamp64Micro({started_at:Int64}, 'UTC'),
        fromUnixTimestamp64Micro({updated_at:Int64}, 'UTC'), {error:String},
        mapFromArrays({attr_keys:Array(String)}, {attr_values:Array(String)}))
"""
INSERT_STEP = """
INSERT INTO omium_steps (run_id, position, attempt, kind, name, agent, status, input_hash, output_hash,
                         error, idempotency_key, started_at, ended_at, call_id, generation, fence)
VALUES ({run_id:String}, {position:UInt32}, {attempt:UInt16}, {kind:String}, {name:String}, {agent:String},
        {status:String}, {input_hash:String}, {output_hash:String}, {error:String}, {idempotency_key:String},
        fromUnixTimestamp64Micro({started_at:Int64}, 'UTC'),
        fromUnixTimestamp64Micro({ended_at:Int64}, 'UTC'), {call_id:String}, {generation:UInt32},
        {fence:UInt64})
"""
INSERT_CHECKPOINT = """
INSERT INTO omium_checkpoints (run_id, seq, checkpoint_id, name, agent, step_index, state_hash,
                               parent_checkpoint_id, metadata, created_at, call_id, generation, fence)
VALUES ({run_id:String}, {seq:UInt32}, {checkpoint_id:String}, {name:String}, {agent:String},
        {step_index:UInt32}, {state_hash:String}, {parent_checkpoint_id:String}, {metadata:String},
        fromUnixTimestamp64Micro({created_at:Int64}, 'UTC'), {call_id:String}, {generation:UInt32},
        {fence:UInt64})
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
INSERT_COMMAND = """
INSERT INTO omium_commands (command_id, run_id, kind, payload, status, version, worker, lease_until, attempts,
                            result, created_at, updated_at)
VALUES ({command_id:String}, {run_id:String}, {kind:String}, {payload:String}, {status:String},
        {version:UInt64}, {worker:String}, {lease_until:Int64}, {attempts:UInt32}, {result:String},
        fromUnixTimestamp64Micro({created_at:Int64}, 'UTC'),
        fromUnixTimestamp64Micro({updated_at:Int64}, 'UTC'))
"""
LEASE_COLUMNS = ["run_id", "holder", "fence", "lease_until", "acquired_at", "version"]


class OldHome:
    """Writes facts the way Omium 0.x did: rows in the warehouse, and journal records."""

    def __init__(self, warehouse: ClickHouseWarehouse, journal: Path) -> None:
        self.warehouse = warehouse
        self.journal = journal
        journal.mkdir(parents=True, exist_ok=True)

    def run(self, run: RunRecord) -> None:
        params: dict[str, Any] = {k: v for k, v in run.__dict__.items() if k != "attributes"}
        params["attr_keys"], params["attr_values"] = list(run.attributes), list(run.attributes.values())
        self.warehouse.command(INSERT_RUN, params)

    def step(self, step: StepRecord) -> None:
        self.warehouse.command(INSERT_STEP, dict(step.__dict__))

    def checkpoint(self, checkpoint: CheckpointRecord) -> None:
        self.warehouse.command(INSERT_CHECKPOINT, dict(checkpoint.__dict__))

    def blob(self, data: bytes) -> str:
        key = serde.digest(data)
        self.warehouse.insert("omium_state_blobs", [[key], [data], [len(data)]], ["hash", "data", "size"])
        return key

    def handoff(self, message: HandoffRecord) -> None:
        params: dict[str, Any] = dict(message.__dict__)
        depends_on = params.pop("depends_on")
        params["dep_keys"], params["dep_versions"] = list(depends_on), list(depends_on.values())
        self.warehouse.command(INSERT_HANDOFF, params)

    def state(self, written: StateVersion) -> None:
        self.warehouse.command(INSERT_STATE, dict(written.__dict__))

    def event(self, event: EventRecord) -> None:
        params: dict[str, Any] = {k: v for k, v in event.__dict__.items() if k != "attributes"}
        params["attr_keys"], params["attr_values"] = list(event.attributes), list(event.attributes.values())
        self.warehouse.command(INSERT_EVENT, params)

    def command(self, command: CommandRecord) -> None:
        self.warehouse.command(INSERT_COMMAND, dict(command.__dict__))

    def lease(self, lease: RunLease) -> None:
        self.warehouse.insert("omium_run_leases", [[getattr(lease, n)] for n in LEASE_COLUMNS], LEASE_COLUMNS)

    def journal_file(self, sequence: int, pid: int, records: list[tuple[str, Any]], torn: str = "") -> None:
        """A journal file as 0.x wrote it: one ``[kind, payload]`` line per record, and possibly a
        last line cut short by the crash."""
        lines = []
        for kind, record in records:
            if kind == "blob":
                payload: Any = [serde.digest(record), base64.b64encode(record).decode()]
            else:
                payload = record.__dict__
            lines.append(json.dumps([kind, payload], separators=(",", ":")) + "\n")
        path = self.journal / f"journal-{sequence:012d}-{pid}.jsonl"
        path.write_text("".join(lines) + torn)


# --- a run of 0.x that crashed after two calls, its last writes still in its journal

RAN: list[str] = []
CRASH = {"on": True}


def _double(name: str, value: int) -> int:
    call = begin_call("tool", name, inputs={"value": value})
    if call.replayed:
        return int(call.result)
    with call.running():
        RAN.append(name)
        result = value * 2
    call.complete(result)
    return result


@omium.workflow(name="carried_flow")
def carried_flow(n: int) -> int:
    a = _double("a", n)
    b = _double("b", a)
    if CRASH["on"]:
        raise RuntimeError("the process died here")
    return _double("c", b)


def crashed_run() -> MemoryStore:
    """Run ``carried_flow`` until it crashes after its two first calls (the 0.x store's contract
    is the same; MemoryStore is its reference)."""
    memory = MemoryStore()
    RAN.clear()
    CRASH["on"] = True
    with pytest.raises(RuntimeError):
        omium.run(carried_flow, 1, run_id="old-run", store=memory)
    assert RAN == ["a", "b"]
    return memory


BINARY = b"\x00\xff\x80 not utf-8 \xfe"


def build_old_home(warehouse: ClickHouseWarehouse, journal: Path) -> dict[str, Any]:
    """A 0.x home with facts of every kind; what the control store must hold after carrying it."""
    home = OldHome(warehouse, journal)
    memory = crashed_run()
    run = memory.get_run("old-run")
    step0, step1 = memory.steps("old-run")
    lease = memory.lease("old-run")
    assert lease is not None and run.status == "failed"
    # The warehouse had the run's first version, its first call and the values it used; the rest
    # was in the journal when the process died.
    running = RunRecord(**dict(run.__dict__, status="running", version=1, error=""))
    home.run(running)
    home.step(step0)
    for digest in (run.attributes["input_hash"], step0.input_hash, step0.output_hash):
        home.blob(memory.get_blob(digest))
    home.lease(RunLease(**dict(lease.__dict__, lease_until=now_us() + 60_000_000, version=1)))
    journaled = [
        ("blob", memory.get_blob(step1.input_hash)),
        ("blob", memory.get_blob(step1.output_hash)),
        ("step", step1),
        ("run", run),
        ("lease", lease),
    ]
    torn = '["run",{"run_id":"old-run","workflow":"carried_flow","status":"compl'

    # Facts of every other kind, several versions each, as the append-only tables kept them.
    t = now_us() - 3_600_000_000
    attributes = {"team": "payments", "policy": '{"max_retries": 2}'}
    for version, status in ((1, "running"), (2, "paused"), (3, "queued")):
        home.run(
            RunRecord(
                "attrs", "wf", status, version, started_at=t, updated_at=t + version, attributes=attributes
            )
        )
    home.run(RunRecord("child", "wf", "completed", 2, parent_run_id="attrs", started_at=t, updated_at=t + 5))
    first = StepRecord(
        "attrs", 0, "llm", "plan", "failed", attempt=1, error="timeout", started_at=t, ended_at=t + 1
    )
    second = StepRecord(
        "attrs", 0, "llm", "plan", "completed", attempt=2, output_hash="p", started_at=t + 2, ended_at=t + 3
    )
    home.step(first)
    home.step(second)
    states = [home.blob(BINARY), home.blob(b"state one")]
    checkpoints = [
        CheckpointRecord(
            "attrs", seq, f"cp{seq}", seq, digest, agent="planner", created_at=t + seq, call_id=str(seq)
        )
        for seq, digest in enumerate(states)
    ]
    for checkpoint in checkpoints:
        home.checkpoint(checkpoint)
    sent = HandoffRecord(
        "attrs", "mail", 0, "planner", "writer", "h0", depends_on={"ns/k": 2, "ns/j": 1}, created_at=t
    )
    acked = HandoffRecord(**dict(sent.__dict__, status="acked", version=2, receive_key="attrs:4"))
    home.handoff(sent)
    home.handoff(acked)
    shared = [
        StateVersion("ns", "k", v, f"value-{v}", writer="planner", run_id="attrs", written_at=t + v)
        for v in (1, 2)
    ]
    for written in shared:
        home.state(written)
    events = [
        EventRecord("e1", "attrs", "paused", reason="review", attributes={"incident": "i1"}, ts=t + 1),
        EventRecord("e2", "attrs", "reviewed", actor="alice", attributes={"decision": "approve"}, ts=t + 2),
    ]
    for event in events:
        home.event(event)
    queued = CommandRecord("c1", "attrs", "resume", created_at=t, updated_at=t)
    claimed = CommandRecord(
        **dict(queued.__dict__, status="claimed", version=2, worker="w", attempts=1, lease_until=t)
    )
    done = CommandRecord(**dict(claimed.__dict__, status="done", version=3, result="ok", updated_at=t + 9))
    waiting = CommandRecord("c2", "attrs", "resume", created_at=t + 10, updated_at=t + 10)
    for command in (queued, claimed, done, waiting):
        home.command(command)
    leases = [RunLease("attrs", "old-host:42:x", 3, t + 10 * v, acquired_at=t, version=v) for v in (4, 5)]
    for expired in leases:  # run out long ago
        home.lease(expired)

    # Three journal files, replayed by sequence (not by pid, nor by age: the last one is made to
    # look oldest): the first and the last have the two attempts of a retried call.
    retried = StepRecord(
        "attrs", 5, "tool", "send", "completed", attempt=2, started_at=t + 30, ended_at=t + 31
    )
    home.journal_file(0, 99999, [("step", StepRecord(**dict(retried.__dict__, status="failed", attempt=1)))])
    home.journal_file(1, 4242, journaled, torn=torn)
    shared.append(StateVersion("ns", "k", 3, "value-3", run_id="attrs", written_at=t + 40))
    home.journal_file(2, 7, [("step", retried), ("state", shared[-1])])
    os.utime(journal / "journal-000000000002-7.jsonl", ns=(1, 1))
    (journal / "quarantine.jsonl").write_text('["step",{"run_id":"refused"}]\n')
    values = [
        run.attributes["input_hash"],
        step0.input_hash,
        step0.output_hash,
        step1.input_hash,
        step1.output_hash,
    ]
    return {
        "runs": {
            "old-run": run,
            "attrs": RunRecord(
                "attrs", "wf", "queued", 3, started_at=t, updated_at=t + 3, attributes=attributes
            ),
            "child": RunRecord(
                "child", "wf", "completed", 2, parent_run_id="attrs", started_at=t, updated_at=t + 5
            ),
        },
        "steps": {"old-run": [step0, step1], "attrs": [second, retried]},
        "checkpoints": checkpoints,
        "blobs": [memory.get_blob(d) for d in values] + [BINARY, b"state one"],
        "handoff": acked,
        "state": shared,
        "events": events,
        "commands": [done, waiting],
        "lease": lease,
        "attrs lease": leases[-1],
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    """A fresh control store of each dialect."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'control.db'}"
    else:
        url = str(request.getfixturevalue("postgres_url"))
    sql = SqlStore(url)
    yield sql
    sql.close()


def control_tables(store: SqlStore) -> dict[str, list[dict[str, Any]]]:
    """Every row of every control table (the outbox and meta included)."""
    with store.engine.connect() as connection:
        return {
            name: sorted((dict(r._mapping) for r in connection.execute(select(table))), key=repr)
            for name, table in metadata.tables.items()
        }


def assert_carried(store: SqlStore, expected: dict[str, Any]) -> None:
    for run_id, run in expected["runs"].items():
        assert store.get_run(run_id) == run
    for run_id, steps in expected["steps"].items():
        assert store.steps(run_id) == steps
    assert store.checkpoints("attrs") == expected["checkpoints"]
    blobs = expected["blobs"]
    assert list(store.get_blobs([serde.digest(b) for b in blobs]).values()) == blobs
    assert store.handoffs("attrs", "mail") == [expected["handoff"]]
    assert store.handoffs("attrs", "mail")[0].depends_on == {"ns/k": 2, "ns/j": 1}
    assert store.read_state("ns", "k") == expected["state"][-1]
    assert store.events("attrs") == expected["events"]
    assert store.commands("attrs") == expected["commands"]
    assert store.lease("old-run") == expected["lease"]
    assert store.lease("attrs") == expected["attrs lease"]


def test_a_0x_home_is_carried_over_once(
    store: SqlStore, warehouse: ClickHouseWarehouse, tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    expected = build_old_home(warehouse, journal)
    copied = carry_over(store, warehouse, journal)
    assert copied == 3 + 4 + 2 + 7 + 1 + 3 + 2 + 2 + 2  # runs, steps, checkpoints, blobs, ...
    assert_carried(store, expected)
    assert not journal.exists()
    kept = tmp_path / "journal.carried-over"
    assert sorted(p.name for p in kept.iterdir()) == [
        "journal-000000000000-99999.jsonl",
        "journal-000000000001-4242.jsonl",
        "journal-000000000002-7.jsonl",
        "quarantine.jsonl",
    ]
    # Again (a restart, another process): nothing copied, nothing changed.
    before = control_tables(store)
    assert carry_over(store, warehouse, journal) == 0
    assert carry_over(store, warehouse, kept) == 0
    assert control_tables(store) == before


def test_carried_over_runs_carry_on(store: SqlStore, warehouse: ClickHouseWarehouse, tmp_path: Path) -> None:
    """The crashed run resumes where its journal left it; leases, shared state and commands go on
    from the versions carried over."""
    build_old_home(warehouse, tmp_path / "journal")
    carry_over(store, warehouse, tmp_path / "journal")
    CRASH["on"] = False
    RAN.clear()
    assert omium.run(carried_flow, 1, run_id="old-run", store=store) == 8
    assert RAN == ["c"]  # a and b, one recorded in the warehouse and one in the journal, not again
    assert [s.name for s in store.steps("old-run")] == ["a", "b", "c"]
    assert store.get_run("old-run").status == "completed"
    assert store.lease("old-run").fence == 2  # type: ignore[union-attr]
    taken = store.acquire_lease("attrs", new_holder(), 30)  # its old lease had run out
    assert taken.fence == 4
    with pytest.raises(FencedOut):
        store.record_step(StepRecord("attrs", 9, "tool", "late", "completed", fence=3))
    assert store.write_state("ns", "k", 3, "value-4", run_id="attrs").version == 4
    claimed = store.claim_command("worker", 30)
    assert claimed is not None and claimed.command_id == "c2" and claimed.attempts == 1


def test_the_warehouse_copy_gets_the_journals_facts(
    store: SqlStore, warehouse: ClickHouseWarehouse, tmp_path: Path
) -> None:
    """What only the journal had (the run's last version, its last call) reaches the warehouse's
    analytical copy too, as any committed fact does."""
    build_old_home(warehouse, tmp_path / "journal")
    carry_over(store, warehouse, tmp_path / "journal")
    Shipper(Outbox(store), warehouse, new_holder()).drain()
    runs = warehouse.query_rows("SELECT run_id, status, version FROM omium_runs FINAL ORDER BY run_id")
    assert runs == [
        {"run_id": "attrs", "status": "queued", "version": 3},
        {"run_id": "child", "status": "completed", "version": 2},
        {"run_id": "old-run", "status": "failed", "version": 2},
    ]
    steps = warehouse.query_rows(
        "SELECT run_id, position, attempt, status FROM omium_steps FINAL ORDER BY run_id, position, attempt"
    )
    assert steps == [
        {"run_id": "attrs", "position": 0, "attempt": 1, "status": "failed"},
        {"run_id": "attrs", "position": 0, "attempt": 2, "status": "completed"},
        {"run_id": "attrs", "position": 5, "attempt": 2, "status": "completed"},
        {"run_id": "old-run", "position": 0, "attempt": 1, "status": "completed"},
        {"run_id": "old-run", "position": 1, "attempt": 1, "status": "completed"},
    ]
    assert warehouse.scalar("SELECT max(version) FROM omium_shared_state FINAL") == 3


def test_embedded_store_carries_an_old_home_over_on_first_open(
    settings: Settings, warehouse: ClickHouseWarehouse, tmp_path: Path
) -> None:
    """What a 0.x user gets on upgrading: the first ``embedded_store`` opening their home (its
    control database in the home) carries it over and ships what the journal had."""
    home = tmp_path / "home"
    # The same chdb engine and database as ``warehouse`` (one chdb data directory per process).
    upgraded = settings.with_(
        home=home, control_url=None, clickhouse_url=f"chdb://{settings.warehouse_path.resolve()}"
    )
    expected = build_old_home(warehouse, home / "journal")
    store = embedded_store(upgraded)
    try:
        assert isinstance(store, EmbeddedStore) and store.warehouse is not None
        assert_carried(store, expected)
        assert (home / "control.db").exists() and not (home / "journal").exists()
        assert (home / "journal.carried-over" / "journal-000000000001-4242.jsonl").exists()
        CRASH["on"] = False
        RAN.clear()
        assert omium.run(carried_flow, 1, run_id="old-run", store=store) == 8
        assert RAN == ["c"]
    finally:
        store.close()
    again = embedded_store(upgraded)  # a second open: carried over already
    try:
        finished = again.get_run("old-run")
        assert finished.status == "completed"
        with again.engine.connect() as connection:
            mark = connection.execute(
                select(metadata.tables["meta"].c.value).where(metadata.tables["meta"].c.name == MARK)
            ).scalar_one()
        assert json.loads(mark) == {"rows": 26}
    finally:
        again.close()
    runs = warehouse.query_rows(
        "SELECT run_id, status, version FROM omium_runs FINAL WHERE run_id = 'old-run'"
    )
    assert runs == [{"run_id": "old-run", "status": "completed", "version": finished.version}]
    steps = warehouse.scalar("SELECT count() FROM omium_steps FINAL WHERE run_id = 'old-run'")
    assert steps == 3
