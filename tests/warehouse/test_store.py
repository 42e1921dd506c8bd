import pytest

from omium.sdk.store import CheckpointStore
from omium.warehouse import ClickHouseWarehouse
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
