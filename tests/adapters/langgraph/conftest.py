"""Stores the LangGraph saver is tested on: in memory, the warehouse, the default (journal + warehouse),
and the server's (``RemoteStore``, the one whose threads are read back every time)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from omium.sdk.store import CheckpointStore, MemoryStore

StoreFactory = Callable[[], CheckpointStore]

STORES = ["memory", "warehouse", "journaled", "remote"]


@pytest.fixture(params=STORES)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Makes fresh stores of one kind; warehouse-backed ones share the test's own database."""
    made: list[CheckpointStore] = []
    # Asked for now, not inside make(): then the database outlives the stores that flush into it.
    warehouse = None if request.param == "memory" else request.getfixturevalue("warehouse")
    server = request.getfixturevalue("server") if request.param == "remote" else None

    def make() -> CheckpointStore:
        store: CheckpointStore
        if warehouse is None:
            store = MemoryStore()
        elif server is not None:
            from omium.sdk.remote_store import RemoteStore

            store = RemoteStore(server.url, token="test-token")
        else:
            from omium.warehouse.store import WarehouseStore

            backing = WarehouseStore(warehouse)
            if request.param == "warehouse":
                store = backing
            else:
                from omium.sdk.journal import JournaledStore

                store = JournaledStore(backing, tmp_path / f"journal-{len(made)}", flush_interval=0.05)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(store_factory: StoreFactory) -> CheckpointStore:
    """One store of each kind."""
    return store_factory()
