"""Shared state: compare-and-set between runs racing on the same key; resumes do not double-write."""

from __future__ import annotations

import threading

import pytest

import omium
from omium import workflow
from omium.errors import ConflictError
from omium.sdk.context import current
from omium.sdk.state import SharedState
from omium.sdk.store import MemoryStore


@pytest.fixture
def store() -> MemoryStore:
    store = MemoryStore()
    omium.init(store=store)
    return store


@workflow
def bump(times: int) -> int:
    orders = SharedState("orders")
    for _ in range(times):
        orders.update("o-17", lambda o: {"updates": (o or {"updates": 0})["updates"] + 1})
    return int(orders.get("o-17")["updates"])


def test_racing_runs_never_lose_an_update(store: MemoryStore) -> None:
    threads = [
        threading.Thread(target=omium.run, args=(bump, 10), kwargs={"run_id": f"w{n}", "store": store})
        for n in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latest = store.read_state("orders", "o-17")
    assert latest is not None and latest.version == 40
    assert omium.run(lambda: SharedState("orders").get("o-17"), run_id="reader")["updates"] == 40


@workflow
def stale_writer() -> None:
    orders = SharedState("orders")
    orders.get("o-1")
    # Another agent changes the order between our read and our write ...
    store = current().store
    store.write_state("orders", "o-1", 1, store.put_blob(b'"cancelled"'), writer="other")
    orders.set("o-1", "shipped")  # ... so this write must not silently win


def test_a_write_based_on_a_stale_read_conflicts(store: MemoryStore) -> None:
    omium.run(lambda: SharedState("orders").set("o-1", "new"), run_id="seed")
    with pytest.raises(ConflictError, match="version 2, not 1"):
        omium.run(stale_writer, run_id="stale")
    assert store.read_state("orders", "o-1").version == 2  # type: ignore[union-attr]


crash = {"on": True}


@workflow
def write_then_crash() -> int:
    version = SharedState("orders").set("o-9", "paid")
    if crash["on"]:
        raise RuntimeError("crash after the write")
    return version


def test_resume_does_not_write_twice(store: MemoryStore) -> None:
    with pytest.raises(RuntimeError):
        omium.run(write_then_crash, run_id="c")
    crash["on"] = False
    assert omium.run(write_then_crash, run_id="c") == 1
    assert store.read_state("orders", "o-9").version == 1  # type: ignore[union-attr]
