"""Stores the LangGraph saver is tested on: in memory, the default control database (SQLite, which
several processes share: its threads are read back every time), and the server's
(``RemoteStore``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from omium.sdk.store import CheckpointStore, MemoryStore

StoreFactory = Callable[[], CheckpointStore]

STORES = ["memory", "control", "remote"]


@pytest.fixture(params=STORES)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Makes fresh stores of one kind; the stores of a kind but memory share one database."""
    made: list[CheckpointStore] = []
    server = request.getfixturevalue("server") if request.param == "remote" else None

    def make() -> CheckpointStore:
        store: CheckpointStore
        if request.param == "memory":
            store = MemoryStore()
        elif server is not None:
            from omium.sdk.remote_store import RemoteStore

            store = RemoteStore(server.url, token="test-token")
        else:
            from omium.sdk.sql import open_control_store

            store = open_control_store(tmp_path / "control.db")
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(store_factory: StoreFactory) -> CheckpointStore:
    """One store of each kind."""
    return store_factory()
