from typing import Any

import pytest

from omium.config import Settings
from omium.errors import FencedOut, RunBusy
from omium.sdk.store import CheckpointStore, RunRecord, StepRecord
from omium.warehouse import LATEST_VERSION, ClickHouseWarehouse, connect, migrate
from omium.warehouse.schema import MIGRATIONS, MIGRATIONS_TABLE, RUN_LEASES
from omium.warehouse.store import WarehouseStore
from tests.sdk.store_conformance import StoreConformance


class TestWarehouseStore(StoreConformance):
    @pytest.fixture
    def store(self, warehouse: ClickHouseWarehouse) -> CheckpointStore:
        return WarehouseStore(warehouse)


def test_an_unchanged_value_is_stored_once(warehouse: ClickHouseWarehouse) -> None:
    store = WarehouseStore(warehouse)
    for _ in range(5):
        store.put_blob(b'{"history":["same"]}')
    assert warehouse.scalar("SELECT count() FROM omium_state_blobs") == 1


class TestJournaledStore(StoreConformance):
    """The journal in front of the warehouse, flushing often so reads merge both sides."""

    @pytest.fixture
    def store(self, warehouse: ClickHouseWarehouse, tmp_path):  # type: ignore[no-untyped-def]
        from omium.sdk.journal import JournaledStore

        journaled = JournaledStore(WarehouseStore(warehouse), tmp_path / "journal", flush_interval=0.01)
        yield journaled
        journaled.close()


def test_journal_moves_everything_to_the_warehouse(warehouse: ClickHouseWarehouse, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from omium.sdk.journal import JournaledStore
    from omium.sdk.store import RunRecord, StepRecord

    journaled = JournaledStore(WarehouseStore(warehouse), tmp_path / "j", flush_interval=60)
    journaled.create_run(RunRecord("j1", "wf"))
    digest = journaled.put_blob(b'"hello"')
    journaled.record_step(StepRecord("j1", 0, "tool", "t", "completed", output_hash=digest))
    journaled.update_run("j1", 1, status="completed")
    assert warehouse.scalar("SELECT count() FROM omium_steps") == 0  # still only journaled
    assert journaled.get_run("j1").status == "completed"
    journaled.close()
    plain = WarehouseStore(warehouse)
    assert plain.get_run("j1").status == "completed"
    assert plain.get_blob(plain.steps("j1")[0].output_hash) == b'"hello"'
    assert list((tmp_path / "j").iterdir()) == []


def test_a_crashed_processs_journal_is_replayed(warehouse: ClickHouseWarehouse, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from omium.sdk.journal import JournaledStore, _encode
    from omium.sdk.store import RunRecord, StepRecord

    directory = tmp_path / "j"
    directory.mkdir()
    left = directory / "journal-999-dead.jsonl"
    left.write_text(
        _encode("run", RunRecord("lost", "wf"))
        + _encode("blob", ("ab" * 32, b"x"))
        + _encode("step", StepRecord("lost", 0, "step", "s", "completed", output_hash="ab" * 32))
        + '["step", {"run_id": "torn'
    )  # the write the crash interrupted
    journaled = JournaledStore(WarehouseStore(warehouse), directory)
    try:
        assert not left.exists()
        assert journaled.get_run("lost").workflow == "wf"
        assert [s.name for s in journaled.steps("lost")] == ["s"]
    finally:
        journaled.close()


def test_rows_from_before_the_lease_migration_read_back_with_defaults(settings: Settings) -> None:
    """A database at the schema before issue 14's columns: its steps, checkpoints and hand-offs
    read back with call_id "", generation 0 and fence 0 once it is migrated."""
    database = f"{settings.database}_old"
    old = connect(settings, mode="embedded", database=database, migrate=False)
    try:
        old.command(MIGRATIONS_TABLE)
        for version, statements in enumerate(MIGRATIONS[: MIGRATIONS.index(RUN_LEASES)], start=1):
            for statement in statements:
                old.command(statement)
            old.command("INSERT INTO omium_migrations (version) VALUES ({v:UInt32})", {"v": version})
        old.command(
            "INSERT INTO omium_steps (run_id, position, attempt, kind, name, agent, status, input_hash, "
            "output_hash, idempotency_key, started_at, ended_at) VALUES "
            "('o', 0, 1, 'tool', 't', '', 'completed', '', 'h', 'o:0', now64(6), now64(6))"
        )
        old.command(
            "INSERT INTO omium_checkpoints (run_id, seq, checkpoint_id, name, agent, step_index, state_hash, "
            "created_at) VALUES ('o', 0, 'o:0', 'cp', '', 0, 'h', now64(6))"
        )
        old.command(
            "INSERT INTO omium_handoffs (run_id, channel, seq, version, sender, receiver, schema_name, "
            "payload_hash, status, depends_on, created_at) VALUES "
            "('o', 'a->b', 0, 1, 'a', 'b', '', 'p', 'sent', map(), now64(6))"
        )
        assert migrate(old) == LATEST_VERSION - MIGRATIONS.index(RUN_LEASES)
        store = WarehouseStore(old)
        (step,) = store.steps("o")
        assert (step.output_hash, step.call_id, step.generation, step.fence) == ("h", "", 0, 0)
        (checkpoint,) = store.checkpoints("o")
        assert (checkpoint.name, checkpoint.call_id, checkpoint.generation, checkpoint.fence) == (
            "cp",
            "",
            0,
            0,
        )
        (message,) = store.handoffs("o", "a->b")
        assert (message.payload_hash, message.fence) == ("p", 0)
        assert store.lease("o") is None
    finally:
        old.command("DROP DATABASE IF EXISTS {db:Identifier}", {"db": database})
        old.close()


def test_leases_are_kept_in_the_warehouse_and_checked_in_memory(
    warehouse: ClickHouseWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = WarehouseStore(warehouse)
    store.create_run(RunRecord("w", "wf"))
    first = store.acquire_lease("w", "host-a:1", 30)
    store.release_lease("w", "host-a:1", first.fence)
    lease = store.acquire_lease("w", "host-b:2", 30)
    assert (lease.fence, lease.version) == (2, 3)
    rows = warehouse.query_rows(
        "SELECT holder, fence, lease_until, version FROM omium_run_leases ORDER BY version"
    )
    assert [(r["holder"], r["fence"], r["version"]) for r in rows] == [
        ("host-a:1", 1, 1),
        ("host-a:1", 1, 2),
        ("host-b:2", 2, 3),
    ]
    assert rows[1]["lease_until"] == 0

    # The fence check of a step is not a query: the process that writes the warehouse knows.
    queries: list[str] = []
    real_query = warehouse.query_rows

    def counted(sql: str, parameters: Any = None) -> list[dict[str, Any]]:
        queries.append(sql)
        return real_query(sql, parameters)

    monkeypatch.setattr(warehouse, "query_rows", counted)
    for position in range(20):
        store.record_step(StepRecord("w", position, "tool", "t", "completed", fence=lease.fence))
    assert queries == []
    monkeypatch.undo()

    later = WarehouseStore(warehouse)  # a restarted process reads the lease back on first use
    assert later.lease("w") == lease
    with pytest.raises(RunBusy):
        later.acquire_lease("w", "host-c:3", 30)
    with pytest.raises(FencedOut):
        later.record_step(StepRecord("w", 99, "tool", "t", "completed", fence=first.fence))
    later.release_lease("w", "host-b:2", lease.fence)
    assert later.acquire_lease("w", "host-c:3", 30).fence == 3
    assert len(later.steps("w")) == 20
