"""What OmiumSaver leaves in the store: the documented mapping onto Omium's records."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.serde.types import ERROR

from omium.adapters.langgraph import OmiumSaver
from omium.adapters.langgraph._codec import CHUNK, State
from omium.sdk.store import CheckpointRecord, MemoryStore


def stored_values(store: MemoryStore) -> int:
    """How many distinct values the store keeps (its ``blobs`` table)."""
    with store.engine.connect().execution_options(omium_sqlite_begin="") as connection:
        return int(connection.exec_driver_sql("SELECT count(*) FROM blobs").scalar() or 0)


def put(
    saver: OmiumSaver,
    thread: str,
    values: dict[str, Any],
    versions: dict[str, int],
    *,
    parent: str | None = None,
    ns: str = "",
    new: dict[str, int] | None = None,
    **metadata: Any,
) -> dict[str, Any]:
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = values
    checkpoint["channel_versions"] = versions
    configurable = {"thread_id": thread, "checkpoint_ns": ns}
    if parent:
        configurable["checkpoint_id"] = parent
    meta = {"source": "loop", "step": 1, "parents": {}, **metadata}
    return saver.put({"configurable": configurable}, checkpoint, meta, versions if new is None else new)  # type: ignore[arg-type]


def test_thread_run_checkpoint_and_write_records() -> None:
    store = MemoryStore()
    saver = OmiumSaver(store)
    first = put(saver, "t1", {"messages": ["hi"]}, {"messages": 1}, step=-1, source="input")
    cid = first["configurable"]["checkpoint_id"]
    second = put(
        saver, "t1", {"messages": ["hi", "there"]}, {"messages": 2}, parent=cid, ns="outer:1a|inner:2b"
    )
    saver.put_writes(first, [("messages", ["x"]), (ERROR, ValueError("bad input"))], "task-1", "~pull, plan")

    run = store.get_run("langgraph:t1")
    assert (run.workflow, run.status, run.attributes["thread_id"]) == ("langgraph", "completed", "t1")
    records = store.checkpoints("langgraph:t1")
    assert [r.seq for r in records] == [1, 2]
    assert records[0].checkpoint_id == cid and records[0].name == "" and records[0].step_index == 0
    assert json.loads(records[0].metadata) == {"source": "input", "step": -1, "parents": {}}
    assert records[1].name == "outer:1a|inner:2b" and records[1].agent == "outer|inner"
    assert records[1].parent_checkpoint_id == cid
    assert records[1].checkpoint_id == second["configurable"]["checkpoint_id"]
    state = State.unpack(store.get_blob(records[0].state_hash))
    assert set(state.refs) == {"messages"} and state.metadata is None

    (step,) = store.steps("langgraph:t1")
    assert (step.position, step.kind, step.name, step.status) == (
        3,
        "langgraph.writes",
        "~pull, plan",
        "failed",
    )
    assert step.error == "ValueError: bad input"
    assert json.loads(step.idempotency_key) == ["", cid, "task-1"]
    writes = saver.get_tuple(first).pending_writes  # type: ignore[union-attr]
    # writes_sort_key order: the error's index is -1
    assert [(t, c) for t, c, _ in writes] == [("task-1", ERROR), ("task-1", "messages")]
    assert "bad input" in str(writes[0][2]) and writes[1][2] == ["x"]


def test_deleting_writes_a_tombstone_and_keeps_every_record() -> None:
    store = MemoryStore()
    saver = OmiumSaver(store)
    put(saver, "gone", {"a": 1}, {"a": 1})
    saver.delete_thread("gone")
    records = store.checkpoints("langgraph:gone")
    assert len(records) == 2  # append-only: the checkpoint is still there, hidden
    assert records[1].state_hash == "" and json.loads(records[1].metadata) == {"delete": "thread"}
    assert saver.get_tuple({"configurable": {"thread_id": "gone", "checkpoint_ns": ""}}) is None
    saver.delete_thread("never-was")  # no thread: nothing written
    assert store.checkpoints("langgraph:never-was") == []


def test_unchanged_channel_is_carried_from_a_parent_this_saver_never_saw() -> None:
    store = MemoryStore()
    first = put(OmiumSaver(store), "carry", {"a": "one", "b": "kept"}, {"a": 1, "b": 1})
    later = OmiumSaver(store)  # knows nothing of the parent: reads it from the store
    # b did not change and is not even in channel_values (as a delta channel would be).
    second = put(
        later,
        "carry",
        {"a": "two"},
        {"a": 2, "b": 1},
        parent=first["configurable"]["checkpoint_id"],
        new={"a": 2},
    )
    assert later.get_tuple(second).checkpoint["channel_values"] == {"a": "two", "b": "kept"}  # type: ignore[union-attr]


def test_long_lists_share_chunks_and_values() -> None:
    store = MemoryStore()
    saver = OmiumSaver(store)
    history = [f"message {i} " + "x" * 100 for i in range(3 * CHUNK + 5)]
    first = put(saver, "l", {"m": history}, {"m": 1})
    blobs = stored_values(store)
    second = put(
        saver,
        "l",
        {"m": [*history, "one more " + "y" * 100]},
        {"m": 2},
        parent=first["configurable"]["checkpoint_id"],
    )
    assert stored_values(store) - blobs == 2  # the new item and the new state: chunks and items are shared
    assert saver.get_tuple(second).checkpoint["channel_values"]["m"][-2:] == [
        history[-1],
        "one more " + "y" * 100,
    ]  # type: ignore[union-attr]
    assert saver.get_tuple(first).checkpoint["channel_values"]["m"] == history  # type: ignore[union-attr]


def test_metadata_json_cannot_hold_round_trips_from_the_state() -> None:
    saver = OmiumSaver(MemoryStore())
    when = dt.datetime(2026, 11, 24, tzinfo=dt.UTC)
    stored = put(saver, "meta", {}, {}, when=when, pair=(1, 2), score=7)
    assert saver.get_tuple(stored).metadata["when"] == when  # type: ignore[union-attr]
    assert [t.metadata["score"] for t in saver.list(None, filter={"score": 7})] == [7]


def test_list_across_threads_and_savers_sharing_a_store() -> None:
    store = MemoryStore()
    one, two = OmiumSaver(store), OmiumSaver(store)
    put(one, "x", {}, {}, step=1)
    put(two, "y", {}, {}, step=2)
    put(one, "y", {}, {}, step=3)
    found = list(two.list(None))
    assert [t.metadata["step"] for t in found] == [3, 2, 1]  # newest first, every thread
    assert [t.config["configurable"]["thread_id"] for t in found] == ["y", "y", "x"]
    assert [t.metadata["step"] for t in one.list({"configurable": {"thread_id": "y"}})] == [3, 2]


def test_a_vector_is_one_value() -> None:
    store = MemoryStore()
    saver = OmiumSaver(store)
    blobs = stored_values(store)
    vector = [i / 7 for i in range(1536)]
    stored = put(saver, "v", {"embedding": vector}, {"embedding": 1})
    assert stored_values(store) - blobs == 2  # the vector and the state
    assert saver.get_tuple(stored).checkpoint["channel_values"]["embedding"] == vector  # type: ignore[union-attr]


def test_without_the_cache_writes_that_bypass_the_saver_are_seen() -> None:
    store = MemoryStore()
    cached, uncached = OmiumSaver(store), OmiumSaver(store, cache=False)
    stored = put(cached, "ext", {"a": 1}, {"a": 1})
    assert cached.get_tuple(stored) is not None
    # Another writer of the same store object (a server's handler, say) deletes the thread.
    store.add_checkpoint(CheckpointRecord("langgraph:ext", 99, "", 0, "", metadata='{"delete":"thread"}'))
    assert uncached.get_tuple(stored) is None
    assert cached.get_tuple(stored) is not None  # the cache takes this process as the one writer
