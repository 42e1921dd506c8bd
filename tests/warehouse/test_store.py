"""The embedded deployment in one process: control store + warehouse + shipper."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from omium.config import Settings
from omium.sdk.store import CheckpointStore, RunRecord, StepRecord
from omium.warehouse import ClickHouseWarehouse
from omium.warehouse.store import EmbeddedStore, recorded_steps
from tests.sdk.store_conformance import StoreConformance


class TestEmbeddedStore(StoreConformance):
    """The store a process with no server opens: every conformance case, with the shipper on."""

    @pytest.fixture
    def store(self, warehouse: ClickHouseWarehouse, tmp_path: Path) -> Iterator[CheckpointStore]:
        store = EmbeddedStore(f"sqlite:///{tmp_path / 'control.db'}", warehouse.clone())
        yield store
        store.close()


def test_the_warehouse_gets_an_analytical_copy(warehouse: ClickHouseWarehouse, settings: Settings) -> None:
    """What the control store committed is in the warehouse after close (shipped at exit), and the
    pipelines' reader sees the latest attempt of each recorded call."""
    assert settings.control_url is not None
    store = EmbeddedStore(settings.control_url, warehouse.clone())
    store.create_run(RunRecord("e1", "wf"))
    store.record_step(StepRecord("e1", 0, "tool", "t", "running"))
    store.record_step(StepRecord("e1", 0, "tool", "t", "completed", attempt=2))
    store.update_run("e1", 1, status="completed")
    store.close()
    assert warehouse.scalar("SELECT status FROM omium_runs FINAL WHERE run_id = 'e1'") == "completed"
    (step,) = recorded_steps(warehouse, "e1")
    assert (step.status, step.attempt) == ("completed", 2)


def test_a_store_without_the_warehouse_keeps_its_facts_queued(tmp_path: Path) -> None:
    """Another process holds the embedded warehouse: runs still work, facts wait in the outbox."""
    from omium.sdk.sql.outbox import Outbox

    store = EmbeddedStore(f"sqlite:///{tmp_path / 'control.db'}", None)
    store.create_run(RunRecord("q", "wf"))
    store.update_run("q", 1, status="completed")
    assert Outbox(store).backlog() == 2
    store.close()
