"""The journal in front of the real embedded warehouse: a record the warehouse refuses is
quarantined and never blocks the records behind it; a failing warehouse is retried with backoff
and without a storm of journal files; a crashed process's journals replay oldest first and the
next start never fails on them."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from omium.errors import FencedOut, NotFoundError, RunBusy, WarehouseError
from omium.sdk import journal
from omium.sdk.journal import QUARANTINE, JournaledStore, _encode
from omium.sdk.remote_store import RemoteStore
from omium.sdk.store import CheckpointRecord, HandoffRecord, MemoryStore, RunLease, RunRecord, StepRecord
from omium.warehouse import ClickHouseWarehouse
from omium.warehouse.store import WarehouseStore
from tests.conftest import ServerProcess


class Switchable(WarehouseStore):
    """The real warehouse store, with a switch that makes it stop answering (a warehouse down)."""

    def __init__(self, warehouse: ClickHouseWarehouse) -> None:
        super().__init__(warehouse)
        self.down = False
        self.batches: list[list[tuple[str, Any]]] = []

    def _check(self) -> None:
        if self.down:
            raise WarehouseError("connection refused (the warehouse is down)")

    def apply_batch(self, records: list[tuple[str, Any]]) -> None:
        self.batches.append(list(records))
        self._check()
        super().apply_batch(records)

    def list_runs(self, status: str | None = None, limit: int = 100) -> list[RunRecord]:
        self._check()
        return super().list_runs(status, limit)


def journals(directory: Path) -> list[Path]:
    return sorted(directory.glob("journal-*.jsonl"))


def quarantined(directory: Path) -> list[dict[str, Any]]:
    path = directory / QUARANTINE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def landed_runs(warehouse: ClickHouseWarehouse) -> set[str]:
    return {r["run_id"] for r in warehouse.query_rows("SELECT run_id FROM omium_runs FINAL")}


def eventually(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_refused_record_is_quarantined_and_the_records_behind_it_land(
    warehouse: ClickHouseWarehouse, tmp_path: Path
) -> None:
    store = JournaledStore(WarehouseStore(warehouse), tmp_path / "j", flush_interval=60)
    store.create_run(RunRecord("good-1", "wf"))
    # Both are valid Python records that ClickHouse refuses: a UInt32 column cannot hold a
    # negative position, a UInt64 parameter cannot take version -1.
    store.record_step(StepRecord("good-1", -1, "tool", "t", "completed"))
    store.create_run(RunRecord("poison", "wf", version=-1))
    for position in range(20):
        store.record_step(StepRecord("good-1", position, "tool", "t", "completed"))
    store.add_checkpoint(CheckpointRecord("good-1", 1, "cp", 3, "ab" * 32))
    store.create_run(RunRecord("good-2", "wf"))
    store.flush()  # no exception: nothing left to retry

    assert landed_runs(warehouse) == {"good-1", "good-2"}
    plain = WarehouseStore(warehouse)
    assert [s.position for s in plain.steps("good-1")] == list(range(20))
    assert [c.name for c in plain.checkpoints("good-1")] == ["cp"]
    with pytest.raises(NotFoundError):
        store.get_run("poison")  # gone from memory too: what is readable is what is stored
    entries = quarantined(tmp_path / "j")
    assert sorted(e["kind"] for e in entries) == ["run", "step"]
    step = next(e for e in entries if e["kind"] == "step")
    assert step["record"]["position"] == -1 and "position" in step["error"] and step["quarantined_at"] > 0
    stats = store.quarantine_stats()
    assert stats["quarantined_records"] == 2 and stats["last_quarantine_error"]
    assert stats["journal_pending_records"] == 0 and stats["journal_failed_flushes"] == 0

    store.create_run(RunRecord("good-3", "wf"))  # the flush is not stuck
    store.close()
    assert "good-3" in landed_runs(warehouse)
    assert [p.name for p in (tmp_path / "j").iterdir()] == [QUARANTINE]
    # The count survives a restart (it is the file's).
    again = JournaledStore(WarehouseStore(warehouse), tmp_path / "j", flush_interval=60)
    assert again.quarantine_stats()["quarantined_records"] == 2
    again.close()


def test_a_dead_processs_journal_with_a_poison_record_still_opens(
    warehouse: ClickHouseWarehouse, tmp_path: Path
) -> None:
    directory = tmp_path / "j"
    directory.mkdir()
    # What an older server acknowledged for the issue's payload: a started_at that is not a number.
    poison = RunRecord("poison", "wf", started_at="not-a-number")  # type: ignore[arg-type]
    (directory / "journal-000000000007-4242.jsonl").write_bytes(
        (
            _encode("run", RunRecord("before", "wf"))
            + _encode("run", poison)
            + '["step", {"run_id": "before", "nonsense": 1}]\n'  # complete, but no StepRecord
            + _encode("step", StepRecord("before", 0, "step", "s", "completed"))
            + _encode("run", RunRecord("after", "wf"))
        ).encode()
        + b'["run", {"run_id": "\xff\xfe'  # a torn last write: never acknowledged, not quarantined
    )
    store = JournaledStore(WarehouseStore(warehouse), directory, flush_interval=60)
    try:
        assert landed_runs(warehouse) == {"before", "after"}
        assert [s.name for s in store.steps("before")] == ["s"]
        entries = quarantined(directory)
        assert [e.get("kind") for e in entries] == [None, "run"]  # decode failures come first
        assert entries[0]["source"] == "journal-000000000007-4242.jsonl" and "nonsense" in entries[0]["line"]
        assert entries[1]["record"]["started_at"] == "not-a-number"
        assert store.quarantine_stats()["quarantined_records"] == 2
        (left,) = journals(directory)  # only this process's own, numbered after the dead one's
        assert left.name.startswith("journal-000000000008-")
    finally:
        store.close()


def test_journals_replay_in_creation_order(warehouse: ClickHouseWarehouse, tmp_path: Path) -> None:
    directory = tmp_path / "j"
    directory.mkdir()
    names = {
        "journal-000000000010-1.jsonl": "third",
        "journal-000000000002-99.jsonl": "second",
        "journal-1000-old.jsonl": "first",  # an older release's name: older than any numbered one
    }
    for name, run_id in names.items():
        (directory / name).write_text(_encode("run", RunRecord(run_id, "wf")))
    backing = Switchable(warehouse)
    store = JournaledStore(backing, directory, flush_interval=60)
    try:
        assert [b[0][1].run_id for b in backing.batches] == ["first", "second", "third"]
        assert journals(directory)[0].name.startswith("journal-000000000011-")
    finally:
        store.close()


def test_a_warehouse_that_is_down_is_retried_with_backoff_and_no_file_storm(
    warehouse: ClickHouseWarehouse, tmp_path: Path
) -> None:
    backing = Switchable(warehouse)
    directory = tmp_path / "j"
    store = JournaledStore(backing, directory, flush_interval=0.01)
    backing.down = True
    store.create_run(RunRecord("waits", "wf"))
    time.sleep(2.0)
    # Backoff: a handful of attempts in 2 s, not one every 10 ms; no file per attempt.
    assert 1 <= len(backing.batches) <= 6
    assert len(journals(directory)) <= 2
    assert quarantined(directory) == []  # a warehouse that does not answer refuses nothing
    assert store.quarantine_stats()["journal_failed_flushes"] >= 1
    assert store.get_run("waits").workflow == "wf"  # still readable from the journal's overlay
    store.create_run(RunRecord("waits-too", "wf"))

    backing.down = False
    eventually(lambda: {"waits", "waits-too"} <= landed_runs(warehouse))
    eventually(lambda: len(journals(directory)) == 1)
    assert store.quarantine_stats()["journal_failed_flushes"] == 0
    store.close()
    assert list(directory.iterdir()) == []


def test_a_warehouse_down_at_start_leaves_the_journal_to_the_flush(
    warehouse: ClickHouseWarehouse, tmp_path: Path
) -> None:
    directory = tmp_path / "j"
    directory.mkdir()
    left = directory / "journal-000000000003-7.jsonl"
    left.write_text(_encode("run", RunRecord("left", "wf")))
    backing = Switchable(warehouse)
    backing.down = True
    store = JournaledStore(backing, directory, flush_interval=0.01)  # starts all the same
    try:
        assert store.get_run("left").workflow == "wf"
        assert left.exists() and quarantined(directory) == []
        backing.down = False
        eventually(lambda: "left" in landed_runs(warehouse))
        eventually(lambda: not left.exists())
    finally:
        store.close()


def test_short_writes_are_completed(
    warehouse: ClickHouseWarehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = JournaledStore(WarehouseStore(warehouse), tmp_path / "j", flush_interval=60)
    real_write = os.write
    mine = threading.get_ident()

    def short(fd: int, data: Any) -> int:  # at most 7 bytes a call, as a signal could leave it
        return real_write(fd, bytes(data[:7]) if threading.get_ident() == mine else data)

    monkeypatch.setattr(journal.os, "write", short)
    store.create_run(RunRecord("short", "wf", attributes={"k": "v" * 50}))
    store.record_step(StepRecord("short", 0, "tool", "t", "completed"))
    monkeypatch.undo()
    (path,) = journals(tmp_path / "j")
    lines = path.read_text().splitlines()
    assert [journal._decode(line)[0] for line in lines] == ["run", "step"]
    store.close()
    assert "short" in landed_runs(warehouse)


def test_a_failed_write_is_not_acknowledged_and_leaves_no_torn_line(
    warehouse: ClickHouseWarehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = JournaledStore(WarehouseStore(warehouse), tmp_path / "j", flush_interval=60)
    store.create_run(RunRecord("first", "wf"))
    real_write = os.write
    mine = threading.get_ident()

    def full_disk(fd: int, data: Any) -> int:
        if threading.get_ident() != mine:
            return real_write(fd, data)
        real_write(fd, bytes(data[:10]))  # part of it reached the file, then the disk filled
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(journal.os, "write", full_disk)
    with pytest.raises(OSError):
        store.create_run(RunRecord("refused", "wf"))
    monkeypatch.undo()
    store.create_run(RunRecord("second", "wf"))
    (path,) = journals(tmp_path / "j")
    assert [journal._decode(line)[1].run_id for line in path.read_text().splitlines()] == ["first", "second"]
    store.close()
    assert landed_runs(warehouse) == {"first", "second"}


def test_journal_lines_from_before_call_ids_and_fences_still_load(
    warehouse: ClickHouseWarehouse, tmp_path: Path
) -> None:
    """Lines an older release journaled have no call_id, generation or fence: they replay with the
    defaults (a call id of "" means the position's)."""
    directory = tmp_path / "j"
    directory.mkdir()
    step = {
        "run_id": "old", "position": 0, "kind": "tool", "name": "t", "status": "completed", "agent": "",
        "attempt": 1, "input_hash": "", "output_hash": "", "error": "", "idempotency_key": "old:0",
        "started_at": 1_700_000_000_000_000, "ended_at": 1_700_000_000_000_001,
    }  # fmt: skip
    checkpoint = {
        "run_id": "old", "seq": 0, "name": "cp", "step_index": 0, "state_hash": "h", "agent": "",
        "checkpoint_id": "old:0", "parent_checkpoint_id": "", "metadata": "{}",
        "created_at": 1_700_000_000_000_002,
    }  # fmt: skip
    handoff = {
        "run_id": "old", "channel": "a->b", "seq": 0, "sender": "a", "receiver": "b", "payload_hash": "p",
        "schema_name": "", "status": "sent", "reason": "", "version": 1, "send_key": "", "receive_key": "",
        "created_at": 1_700_000_000_000_003, "depends_on": {}, "trace_id": "", "span_id": "",
    }  # fmt: skip
    lines = [["run", RunRecord("old", "wf").__dict__], ["step", step], ["checkpoint", checkpoint],
             ["handoff", handoff]]  # fmt: skip
    (directory / "journal-000000000001-1.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    store = JournaledStore(WarehouseStore(warehouse), directory, flush_interval=60)
    try:
        assert quarantined(directory) == []
        (kept,) = store.steps("old")
        assert (kept.idempotency_key, kept.call_id, kept.generation, kept.fence) == ("old:0", "", 0, 0)
        (cp,) = store.checkpoints("old")
        assert (cp.name, cp.call_id, cp.generation, cp.fence) == ("cp", "", 0, 0)
        (message,) = store.handoffs("old", "a->b")
        assert (message.payload_hash, message.fence) == ("p", 0)
    finally:
        store.close()


def test_a_fenced_out_write_is_never_journaled(warehouse: ClickHouseWarehouse, tmp_path: Path) -> None:
    store = JournaledStore(WarehouseStore(warehouse), tmp_path / "j", flush_interval=60)
    try:
        store.create_run(RunRecord("f", "wf"))
        old = store.acquire_lease("f", "host-a:1", 0.05)
        time.sleep(0.1)
        store.acquire_lease("f", "host-b:2", 30)
        (path,) = journals(tmp_path / "j")
        before = path.read_text()
        with pytest.raises(FencedOut):
            store.record_step(StepRecord("f", 0, "tool", "t", "completed", fence=old.fence))
        with pytest.raises(FencedOut):
            store.append_handoff(HandoffRecord("f", "a->b", 0, "a", "b", "p", fence=old.fence))
        assert path.read_text() == before
        assert [journal._decode(line)[0] for line in before.splitlines()] == ["run", "lease", "lease"]
    finally:
        store.close()


def test_leases_survive_a_crash_and_fences_keep_growing(
    warehouse: ClickHouseWarehouse, tmp_path: Path
) -> None:
    directory = tmp_path / "j"
    directory.mkdir()
    now = time.time_ns() // 1000
    lease = RunLease("crashed", "host-a:1", fence=4, lease_until=now + 30_000_000, acquired_at=now, version=6)
    (directory / "journal-000000000001-1.jsonl").write_text(
        _encode("run", RunRecord("crashed", "wf"))
        + _encode("lease", lease)
        + _encode("step", StepRecord("crashed", 0, "tool", "t", "completed", call_id="0", fence=4))
    )
    store = JournaledStore(WarehouseStore(warehouse), directory, flush_interval=60)
    try:
        assert store.lease("crashed") == lease  # replayed into the warehouse, read back from there
        with pytest.raises(RunBusy) as busy:  # the dead holder's lease still runs
            store.acquire_lease("crashed", "host-b:2", 30)
        assert busy.value.holder == "host-a:1"
        store.record_step(StepRecord("crashed", 1, "tool", "t", "completed", fence=4))
        store.release_lease("crashed", "host-a:1", 4)
        taken = store.acquire_lease("crashed", "host-b:2", 30)
        assert (taken.fence, taken.version) == (5, 8)
    finally:
        store.close()
    plain = WarehouseStore(warehouse)  # a later process: the lease is the warehouse's
    assert plain.lease("crashed") == taken
    assert [(s.position, s.fence) for s in plain.steps("crashed")] == [(0, 4), (1, 4)]


def test_runs_are_filtered_by_status_before_the_limit(tmp_path: Path) -> None:
    """The backing store's runs of a status are found even when newer runs of other statuses fill
    the limit (it used to read the ``limit`` newest runs and filter those)."""

    class Backing(MemoryStore):
        def apply_batch(self, records: list[tuple[str, Any]]) -> None:
            for kind, record in records:
                assert kind == "run"
                self._put_run(record)

    backing = Backing()
    for n in range(3):
        backing.create_run(RunRecord(f"failed-{n}", "wf", status="failed", started_at=1_000 + n))
    for n in range(10):
        backing.create_run(RunRecord(f"newer-{n}", "wf", started_at=2_000 + n))
    store = JournaledStore(backing, tmp_path / "j", flush_interval=60)
    try:
        assert [r.run_id for r in store.list_runs(status="failed", limit=3)] == [
            "failed-2",
            "failed-1",
            "failed-0",
        ]
        # A status changed in the journal (not flushed yet) counts as changed, both ways.
        store.update_run("failed-2", 1, status="running")
        store.update_run("newer-0", 1, status="failed")
        assert [r.run_id for r in store.list_runs(status="failed", limit=3)] == [
            "newer-0",
            "failed-1",
            "failed-0",
        ]
        assert [r.run_id for r in store.list_runs(status="failed", limit=2)] == ["newer-0", "failed-1"]
    finally:
        store.close()
    assert backing.get_run("newer-0").status == "failed"


@pytest.mark.integration
def test_omium_serve_restarts_past_a_poison_record(server_process: ServerProcess) -> None:
    """The issue, against the real ``omium serve``: the bad payload is refused at the door; a
    poison record already journaled (by an older server that acknowledged it) is quarantined at
    the next start, the records behind it land, and later runs keep reaching the warehouse."""
    auth = {"authorization": "Bearer test-token"}

    def runs() -> set[str]:
        response = httpx.post(
            f"{server_process.url}/v1/sql",
            json={"query": "SELECT run_id FROM omium_runs FINAL"},
            headers=auth | {"accept": "application/json"},
            timeout=60,
        )
        response.raise_for_status()
        return {row[0] for row in response.json()["rows"]}

    server_process.start()
    bad = {"args": {"run": RunRecord("poison", "wf").__dict__ | {"started_at": "not-a-number"}}}
    refused = httpx.post(f"{server_process.url}/v1/store/create_run", json=bad, headers=auth, timeout=30)
    assert refused.status_code == 400 and "run.started_at" in refused.json()["error"]
    remote = RemoteStore(server_process.url, token="test-token")
    remote.create_run(RunRecord("before", "wf"))
    remote.close()
    server_process.kill9()

    directory = server_process.home / "journal"
    (directory / "journal-000000999999-1.jsonl").write_text(
        _encode("run", RunRecord("poison", "wf", started_at="not-a-number"))  # type: ignore[arg-type]
        + _encode("run", RunRecord("behind", "wf"))
    )
    server_process.start()
    assert {"before", "behind"} <= runs() and "poison" not in runs()
    (entry,) = quarantined(directory)
    assert entry["record"]["run_id"] == "poison" and entry["error"]

    remote = RemoteStore(server_process.url, token="test-token")
    remote.create_run(RunRecord("later", "wf"))
    remote.close()
    eventually(lambda: "later" in runs(), timeout=30)
    server_process.kill9()
    server_process.start()  # and again: nothing left that could stop it
    assert {"before", "behind", "later"} <= runs()
    assert len(quarantined(directory)) == 1
