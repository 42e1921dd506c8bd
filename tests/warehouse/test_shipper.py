"""The shipper: every committed control fact reaches the warehouse's ``omium_*`` copies exactly
once (re-shipped batches included), within 2 s, from one shipper per deployment at a time.

The kill -9 and lease tests run shippers as child processes of this module
(``python -m tests.warehouse.test_shipper ROLE ...``). chdb opens one data directory per process
and this process holds the session's: a child ships into a directory of its own, and what it
shipped is read by another child, once no shipper is left alive.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from omium.config import Settings
from omium.recovery.review import pause_for_review, review
from omium.recovery.supervisor import Failure
from omium.sdk.lease import new_holder
from omium.sdk.sql import SqlStore
from omium.sdk.sql.outbox import KINDS, Outbox
from omium.sdk.sql.tables import metadata
from omium.sdk.store import (
    CheckpointRecord,
    CommandRecord,
    EventRecord,
    HandoffRecord,
    RunRecord,
    StepRecord,
)
from omium.warehouse import ClickHouseWarehouse, connect
from omium.warehouse.connection import Warehouse
from omium.warehouse.shipper import TARGETS, Shipper

ROOT = Path(__file__).resolve().parents[2]
_MAPS = {"attributes", "depends_on"}  # JSON text in the control database, maps in the warehouse


@pytest.fixture(params=["sqlite", "postgresql"])
def control_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh control database of each dialect."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'control.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(control_url: str) -> Iterator[SqlStore]:
    sql = SqlStore(control_url)
    yield sql
    sql.close()


# --- what is written, and what the warehouse must hold afterwards


def write_facts(store: SqlStore, tag: str, i: int) -> None:
    """Write one round of facts of every shipped kind; several rows are written more than once."""
    run_id = f"{tag}-{i}"
    store.create_run(RunRecord(run_id, "wf", attributes={"round": str(i), "tag": tag}))
    store.record_step(StepRecord(run_id, 0, "tool", "fetch", "running"))
    store.record_step(StepRecord(run_id, 0, "tool", "fetch", "completed", attempt=2, output_hash="o"))
    store.record_step(StepRecord(run_id, 1, "llm", "answer", "completed", call_id="1.0"))
    store.add_checkpoint(CheckpointRecord(run_id, 0, "after-fetch", 0, f"state-{i}"))
    store.append_handoff(HandoffRecord(run_id, "mail", 0, "a", "b", "p", depends_on={"ns/k": i + 1}))
    store.set_handoff_status(run_id, "mail", 0, "acked")
    state = store.read_state("ns", tag)
    store.write_state("ns", tag, state.version if state else 0, f"value-{i}", writer="w", run_id=run_id)
    store.record_event(EventRecord(f"{run_id}-detected", run_id, "detected", attributes={"trigger": "t"}))
    store.enqueue_command(CommandRecord(f"{run_id}-resume", run_id, "resume"))
    claimed = store.claim_command("worker", 60)
    if claimed is not None:
        store.finish_command(claimed.command_id, "worker", "done", result="ok")
    store.update_run(run_id, 1, status="completed", attributes={"done": "yes"})


def control_facts(url: str) -> dict[str, dict[str, Any]]:
    """Every row of every shipped control table, by kind and key (``json.dumps`` of the key)."""
    store = SqlStore(url)
    try:
        found: dict[str, dict[str, Any]] = {}
        with store.engine.connect() as connection:
            for kind, key in KINDS.items():
                rows = [dict(r._mapping) for r in connection.execute(select(metadata.tables[kind]))]
                for row in rows:
                    for name in _MAPS & row.keys():
                        row[name] = json.loads(row[name] or "{}")
                found[kind] = {json.dumps([row[k] for k in key]): row for row in rows}
        return found
    finally:
        store.close()


def warehouse_report(warehouse: Warehouse) -> dict[str, Any]:
    """The warehouse's copies, merged (OPTIMIZE ... FINAL): per kind, the rows as the control
    table spells them, how many there are with and without FINAL, and how many distinct keys."""
    report: dict[str, Any] = {}
    for kind, (table, _) in [*TARGETS.items(), ("reviews", ("omium_reviews", None))]:
        warehouse.command("OPTIMIZE TABLE {t:Identifier} FINAL", {"t": table})
        wanted = set(metadata.tables[kind].c.keys()) if kind in metadata.tables else None
        columns = warehouse.query_rows(
            "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = {t:String}",
            {"t": table},
        )
        sorting = warehouse.scalar(
            "SELECT sorting_key FROM system.tables WHERE database = currentDatabase() AND name = {t:String}",
            {"t": table},
        )
        names = [
            f"toUnixTimestamp64Micro({c['name']}) AS {c['name']}" if "DateTime64" in c["type"] else c["name"]
            for c in columns
            if wanted is None or c["name"] in wanted
        ]
        # Column names and the sorting key are the warehouse's own (system tables), not values.
        rows = warehouse.query_rows(f"SELECT {', '.join(names)} FROM {{t:Identifier}} FINAL", {"t": table})
        for row in rows:
            for name in _MAPS & row.keys():
                row[name] = dict(row[name])
        report[kind] = {
            "rows": rows,
            "final": warehouse.scalar("SELECT count() FROM {t:Identifier} FINAL", {"t": table}),
            "count": warehouse.scalar("SELECT count() FROM {t:Identifier}", {"t": table}),
            "keys": warehouse.scalar(
                f"SELECT uniqExact(tuple({sorting})) FROM {{t:Identifier}}", {"t": table}
            ),
        }
    return report


def assert_shipped_once(control: dict[str, dict[str, Any]], report: dict[str, Any]) -> None:
    """Each committed fact is in the warehouse as committed, once; nothing else is."""
    for kind, key in KINDS.items():
        copies = report[kind]
        # Exactly once: merged, the table has one row per key, with or without FINAL.
        assert copies["count"] == copies["final"] == copies["keys"] == len(copies["rows"]), kind
        shipped: dict[str, Any] = {json.dumps([row[k] for k in key]): row for row in copies["rows"]}
        if kind == "steps":
            # The warehouse keeps each attempt of a recorded call (the control row keeps the
            # latest): earlier attempts may be there too, once each, never a later one.
            latest: dict[str, Any] = {}
            for row in copies["rows"]:
                name = json.dumps([row[k] for k in key])
                if name not in latest or row["attempt"] > latest[name]["attempt"]:
                    latest[name] = row
            for name, row in latest.items():
                assert name in control[kind] and row["attempt"] == control[kind][name]["attempt"]
            shipped = latest
        assert sorted(shipped) == sorted(control[kind]), f"{kind}: keys differ"
        for name, row in control[kind].items():
            assert {k: shipped[name][k] for k in row} == row, f"{kind} {name}"
    reviewed = {e["event_id"]: e for e in control["events"].values() if e["kind"] == "reviewed"}
    reviews = report["reviews"]
    assert reviews["count"] == reviews["final"] == len(reviewed)
    assert sorted(r["review_id"] for r in reviews["rows"]) == sorted(reviewed)


class DiesBeforeForgetting(Outbox):
    """An outbox whose first ``done`` fails, as if the shipper died between the warehouse insert
    and the delete: the batch is shipped again."""

    def __init__(self, store: SqlStore) -> None:
        super().__init__(store)
        self.failed = False

    def done(self, seqs: Any) -> None:
        if not self.failed:
            self.failed = True
            raise ConnectionError("died before deleting the shipped batch")
        super().done(seqs)


def test_every_committed_fact_is_in_the_warehouse_once(
    store: SqlStore, control_url: str, warehouse: ClickHouseWarehouse
) -> None:
    outbox = DiesBeforeForgetting(store)
    shipper = Shipper(outbox, warehouse, new_holder(), batch=7)  # keys spread over many batches
    for i in range(5):
        write_facts(store, "a", i)
    assert outbox.backlog() > 5 * 7
    with pytest.raises(ConnectionError):
        shipper.ship_once()  # shipped, not forgotten
    assert shipper.drain() > 0
    for i in range(5, 10):  # and rows shipped before change after
        write_facts(store, "a", i)
        store.update_run(f"a-{i - 5}", 2, status="failed", error="late")
        shipper.ship_once()
    store.record_step(StepRecord("a-0", 1, "llm", "answer", "failed", attempt=3, error="again"))
    shipper.drain()
    assert outbox.backlog() == 0
    report = warehouse_report(warehouse)
    control = control_facts(control_url)
    assert len(control["runs"]) == 10 and len(control["commands"]) == 10
    assert_shipped_once(control, report)
    # a-0's call 1 was shipped at attempt 1, then retried: the warehouse keeps both attempts.
    attempts = Counter((r["run_id"], r["position"]) for r in report["steps"]["rows"])
    assert attempts[("a-0", 1)] == 2


def test_a_reviewed_event_lands_in_omium_reviews(store: SqlStore, warehouse: ClickHouseWarehouse) -> None:
    store.create_run(RunRecord("rv", "wf"))
    failure = Failure("review_gate", "ApprovalRequired", "check the refund", 2, evidence={"gate": "rv:2"})
    pause_for_review(store, "rv", failure)
    review("rv", "reject", reviewer="alice", reason="wrong account", store=store)
    outbox = DiesBeforeForgetting(store)
    shipper = Shipper(outbox, warehouse, new_holder())
    with pytest.raises(ConnectionError):
        shipper.ship_once()
    shipper.drain()
    (event,) = [e for e in store.events("rv") if e.kind == "reviewed"]
    rows = warehouse.query_rows(
        "SELECT review_id, run_id, decision, reviewer, reason, toUnixTimestamp64Micro(ts) AS ts "
        "FROM omium_reviews FINAL"
    )
    # The pause is an event too, but not a review; the review shipped twice is one row.
    assert rows == [
        {
            "review_id": event.event_id,
            "run_id": "rv",
            "decision": "reject",
            "reviewer": "alice",
            "reason": "wrong account",
            "ts": event.ts,
        }
    ]
    assert warehouse.scalar("SELECT count() FROM omium_events FINAL WHERE run_id = 'rv'") == 2


# --- two shippers on one control database


def test_one_shipper_ships_at_a_time_and_the_other_takes_over_when_it_stops(
    store: SqlStore, control_url: str, warehouse: ClickHouseWarehouse
) -> None:
    a = Shipper(Outbox(store), warehouse, new_holder(), interval=0.02, lease_seconds=60)
    b = Shipper(Outbox(store), warehouse.clone(), new_holder(), interval=0.02, lease_seconds=60)
    a.start()
    b.start()
    try:
        for i in range(20):
            write_facts(store, "two", i)
            time.sleep(0.02)
        wait_until(lambda: Outbox(store).backlog() == 0)
        shipping, standing_by = (a, b) if a.shipped else (b, a)
        assert shipping.shipped > 0 and standing_by.shipped == 0
        before = shipping.shipped
        started = time.monotonic()
        shipping.stop()  # lets the lease go: the other starts at once, not in 60 s
        write_facts(store, "two", 20)
        wait_until(lambda: Outbox(store).backlog() == 0, timeout=5)
        assert time.monotonic() - started < 5
        assert standing_by.shipped > 0 and shipping.shipped == before
    finally:
        a.stop(drain=False)
        b.stop(drain=False)
        b.warehouse.close()
    assert_shipped_once(control_facts(control_url), warehouse_report(warehouse))


def wait_until(condition: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.integration
def test_a_dead_shippers_lease_is_taken_over_at_once(
    store: SqlStore, control_url: str, warehouse: ClickHouseWarehouse, tmp_path: Path
) -> None:
    """A shipper process holding a 60 s lease is killed: another ships at once, not in 60 s."""
    here = Shipper(Outbox(store), warehouse, new_holder(), lease_seconds=60)
    write_facts(store, "dead", 0)
    child = shipper_process(control_url, tmp_path / "child-home", lease_seconds=60)
    try:
        write_facts(store, "dead", 1)
        assert here.ship_once() == 0
        assert not Outbox(store).hold(new_holder(), 60)  # the child holds it
    finally:
        child.kill9()
    write_facts(store, "dead", 2)
    assert here.drain() > 0
    assert Outbox(store).backlog() == 0
    shipped = warehouse.query_rows("SELECT run_id FROM omium_runs FINAL ORDER BY run_id")
    assert [r["run_id"] for r in shipped] == ["dead-1", "dead-2"]  # dead-0 went to the child's warehouse


# --- kill -9


class Child:
    """``python -m tests.warehouse.test_shipper ROLE ARGS...``, its stderr in ``log``."""

    def __init__(self, log: Path, *args: str) -> None:
        self.log = log
        with open(log, "a") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.warehouse.test_shipper", *args],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )

    def line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def wait(self, timeout: float) -> None:
        assert self.proc.wait(timeout) == 0, self.log.read_text()[-3000:]
        self.close()

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(30)  # reaped: its pid no longer exists, so a lease it held is free at once
        self.close()

    def close(self) -> None:
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def shipper_process(url: str, home: Path, *, lease_seconds: float = 10, wait: bool = True) -> Child:
    """A shipper in a process of its own, shipping into the chdb warehouse under ``home`` until
    killed; with ``wait``, returned once it has shipped (or found nothing to ship)."""
    home.mkdir(parents=True, exist_ok=True)
    process = Child(home.parent / f"{home.name}.log", "ship", url, str(home), str(lease_seconds))
    if wait:
        assert process.line() == "shipping", process.log.read_text()[-3000:]
    return process


KILLS = 5


@pytest.mark.integration
@pytest.mark.slow
def test_every_fact_is_shipped_once_across_shippers_killed_at_random(
    control_url: str, tmp_path: Path
) -> None:
    """One process commits facts all along; shippers (each a process) are killed with kill -9 at
    random points, while opening the warehouse or in the middle of a batch, and restarted."""
    SqlStore(control_url).close()  # migrated before the writer starts
    home = tmp_path / "shipped-home"
    stop = tmp_path / "stop"
    writer = Child(tmp_path / "writer.log", "write", control_url, str(stop))
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    try:
        for trial in range(KILLS):
            # Even trials: killed while shipping; odd ones: anywhere from opening chdb on.
            shipper = shipper_process(control_url, home, wait=trial % 2 == 0)
            time.sleep(rng.uniform(0, 0.6) if trial % 2 == 0 else rng.uniform(0.3, 1.6))
            shipper.kill9()
        time.sleep(0.5)  # facts no shipper saw
        stop.touch()
        writer.wait(60)
    finally:
        if writer.proc.poll() is None:
            writer.kill9()
    out = tmp_path / "report.json"
    Child(tmp_path / "verify.log", "verify", control_url, str(home), str(out)).wait(120)
    report = json.loads(out.read_text())
    control = control_facts(control_url)
    # The killed shippers had shipped facts (the last drain was not all of it), and the last
    # drain left nothing queued.
    assert 0 < report["runs_before_drain"] < len(control["runs"]), f"seed {seed}"
    assert report["waiting_after_drain"] == 0, f"seed {seed}"
    assert_shipped_once(control, report["warehouse"])


# --- latency


def test_a_committed_fact_is_in_the_warehouse_within_2_s(
    store: SqlStore, warehouse: ClickHouseWarehouse
) -> None:
    """200 facts committed 20 ms apart with the shipper running as configured by default."""
    shipper = Shipper(Outbox(store), warehouse.clone(), new_holder()).start()
    seen: dict[str, float] = {}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            rows = warehouse.query_rows("SELECT run_id FROM omium_runs WHERE startsWith(run_id, 'lat-')")
            now = time.monotonic()
            for row in rows:
                seen.setdefault(row["run_id"], now)
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    committed: dict[str, float] = {}
    try:
        for i in range(200):
            run_id = f"lat-{i}"
            committed[run_id] = time.monotonic()  # before the commit: the latency measured is an upper bound
            store.create_run(RunRecord(run_id, "wf"))
            time.sleep(0.02)
        wait_until(lambda: len(seen) == len(committed), timeout=10)
    finally:
        done.set()
        watcher.join(10)
        shipper.stop()
        shipper.warehouse.close()
    latencies = sorted(seen[r] - committed[r] for r in committed)
    p50 = statistics.median(latencies)
    p99 = latencies[int(0.99 * len(latencies)) - 1]
    print(f"shipping latency ({store.engine.dialect.name}): p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")
    assert p99 <= 2.0


def test_facts_gather_while_writers_are_busy_and_ship_at_once_when_they_are_quiet(
    store: SqlStore, warehouse: ClickHouseWarehouse
) -> None:
    """A steady stream (a fact every 10 ms for 2 s) ships in a few batches, not one per look; the
    last facts of a burst are shipped about one look after the writers stop, not after patience."""
    shipper = Shipper(Outbox(store), warehouse.clone(), new_holder(), interval=0.1, patience=0.6).start()
    try:
        started = time.monotonic()
        i = 0
        while time.monotonic() - started < 2.0:
            store.create_run(RunRecord(f"stream-{i}", "wf"))
            i += 1
            time.sleep(0.01)
        streamed = time.monotonic() - started
        batches = shipper.batches
        # Looks every 0.1 s would be about 20 batches; patience lets 0.7 s of facts gather.
        assert 1 <= batches <= streamed / 0.6 + 1, (batches, streamed)
        wait_until(lambda: shipper.shipped >= i, timeout=5)
        stopped = time.monotonic()
        store.create_run(RunRecord("quiet-1", "wf"))
        wait_until(lambda: shipper.shipped >= i + 1, timeout=5)
        assert time.monotonic() - stopped < 0.45  # two looks (the second sees nothing new), not patience
    finally:
        shipper.stop()
        shipper.warehouse.close()
    assert warehouse.scalar("SELECT count() FROM omium_runs FINAL WHERE startsWith(run_id, 'stream-')") == i


# --- the child processes


def _ship(url: str, home: str, lease_seconds: str) -> None:
    warehouse = connect(Settings(home=Path(home), database="shipped"), mode="embedded")
    store = SqlStore(url)
    # Small batches, shipped back to back: a kill lands inside a batch more often than not.
    shipper = Shipper(
        Outbox(store), warehouse, new_holder(), interval=0.01, batch=40, lease_seconds=float(lease_seconds)
    )
    wait_until(lambda: shipper.outbox.hold(shipper.holder, shipper.lease_seconds), timeout=60)
    shipper.start()
    wait_until(lambda: shipper.shipped > 0 or Outbox(store).backlog() == 0, timeout=60)
    print("shipping", flush=True)
    threading.Event().wait()


def _write(url: str, stop: str) -> None:
    store = SqlStore(url)
    i = 0
    while not Path(stop).exists():
        write_facts(store, "k", i)
        i += 1
        time.sleep(0.03)
    store.close()


def _verify(url: str, home: str, out: str) -> None:
    warehouse = connect(Settings(home=Path(home), database="shipped"), mode="embedded")
    store = SqlStore(url)
    outbox = Outbox(store)
    before = warehouse.scalar("SELECT count() FROM omium_runs FINAL")
    Shipper(outbox, warehouse, new_holder()).drain()
    report = {
        "runs_before_drain": before,
        "waiting_after_drain": outbox.backlog(),
        "warehouse": warehouse_report(warehouse),
    }
    Path(out).write_text(json.dumps(report))
    store.close()
    warehouse.close()


ROLES: dict[str, Callable[..., None]] = {"ship": _ship, "write": _write, "verify": _verify}

if __name__ == "__main__":
    role, *arguments = sys.argv[1:]
    ROLES[role](*arguments)
