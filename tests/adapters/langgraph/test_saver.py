"""OmiumSaver under real LangGraph graphs: resume, history and forks, storage growth, concurrency.

The models are langchain-core's scripted fakes, so everything runs offline.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
from collections import Counter
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

import omium.adapters.langgraph
from omium.adapters.langgraph import OmiumSaver
from omium.adapters.langgraph import _shared as shared_module
from omium.sdk.store import CheckpointStore, MemoryStore

WORDS = ["order", "refund", "shipping", "invoice", "account", "delay", "carrier", "address", "label"]


def text(seed: int, size: int = 400) -> str:
    """Chat-like text that does not compress to nothing."""
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) + str(rng.randint(0, 999)) for _ in range(size // 10))


class Chat(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def support_graph(saver: OmiumSaver, runs: Counter[str], fail: set[str] | None = None) -> Any:
    """plan (model) -> act (tool-like) -> review (model): three nodes, one message each."""
    planner = GenericFakeChatModel(messages=(f"plan {i}" for i in itertools.count()))
    reviewer = FakeListChatModel(responses=[f"review {i}" for i in range(100)])
    fail = fail if fail is not None else set()

    def plan(state: Chat) -> dict[str, Any]:
        runs["plan"] += 1
        return {"messages": [planner.invoke(state["messages"])]}

    def act(state: Chat) -> dict[str, Any]:
        runs["act"] += 1
        if "act" in fail:
            fail.discard("act")
            raise RuntimeError("carrier API timed out")
        return {"messages": [AIMessage(f"looked up {len(state['messages'])} messages")]}

    def review(state: Chat) -> dict[str, Any]:
        runs["review"] += 1
        return {"messages": [reviewer.invoke(state["messages"])]}

    builder = StateGraph(Chat)
    for name, node in (("plan", plan), ("act", act), ("review", review)):
        builder.add_node(name, node)
    builder.add_edge(START, "plan")
    builder.add_edge("plan", "act")
    builder.add_edge("act", "review")
    builder.add_edge("review", END)
    return builder.compile(checkpointer=saver)


def chat_graph(saver: OmiumSaver, size: int = 400) -> Any:
    """One model node answering each turn: the history grows by two messages a turn."""
    model = GenericFakeChatModel(messages=(AIMessage(text(i, size)) for i in itertools.count(1_000)))

    def respond(state: Chat) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    builder = StateGraph(Chat)
    builder.add_node("respond", respond)
    builder.add_edge(START, "respond")
    builder.add_edge("respond", END)
    return builder.compile(checkpointer=saver)


def config(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}}


def contents(state: Any) -> list[str]:
    return [m.content for m in state.values["messages"]]


def test_public_names() -> None:
    assert "OmiumSaver" in omium.adapters.langgraph.__all__


def test_a_thread_run_through_a_graph_has_its_run_record(store: CheckpointStore) -> None:
    # LangGraph reads a thread (get_tuple) before its first write: the run must still be made.
    saver = OmiumSaver(store)
    graph = support_graph(saver, Counter())
    graph.invoke({"messages": [HumanMessage("hello")]}, config("t-listed"))
    assert "langgraph:t-listed" in {r.run_id for r in store.list_runs()}
    assert {c.config["configurable"]["thread_id"] for c in saver.list(None)} >= {"t-listed"}


def test_resume_after_a_failure_runs_no_finished_node_again(store: CheckpointStore) -> None:
    runs: Counter[str] = Counter()
    graph = support_graph(OmiumSaver(store), runs, fail={"act"})
    with pytest.raises(RuntimeError, match="carrier API"):
        graph.invoke({"messages": [HumanMessage("where is my order?")]}, config("t-crash"))
    stopped = graph.get_state(config("t-crash"))
    assert stopped.next == ("act",)
    assert "carrier API" in repr(stopped.tasks[0].error)
    # The failed task is a failed step of the thread's run: visible to Omium's console.
    failed = [s for s in store.steps("langgraph:t-crash") if s.status == "failed"]
    assert len(failed) == 1 and "carrier API timed out" in failed[0].error

    result = graph.invoke(None, config("t-crash"))  # resume from the last checkpoint
    assert runs == {"plan": 1, "act": 2, "review": 1}
    assert [m.content for m in result["messages"]] == [
        "where is my order?",
        "plan 0",
        "looked up 2 messages",
        "review 0",
    ]


def test_parallel_branch_that_finished_is_not_run_again() -> None:
    """Its writes were saved as pending writes of the checkpoint when its sibling failed."""
    runs: Counter[str] = Counter()
    fail = {"slow"}

    class Fan(TypedDict):
        messages: Annotated[list[AnyMessage], add_messages]

    def fast(state: Fan) -> dict[str, Any]:
        runs["fast"] += 1
        return {"messages": [AIMessage("fast done", id="fast")]}

    def slow(state: Fan) -> dict[str, Any]:
        runs["slow"] += 1
        if "slow" in fail:
            fail.discard("slow")
            raise TimeoutError("slow tool")
        return {"messages": [AIMessage("slow done", id="slow")]}

    builder = StateGraph(Fan)
    builder.add_node("fast", fast)
    builder.add_node("slow", slow)
    builder.add_edge(START, "fast")
    builder.add_edge(START, "slow")
    builder.add_edge("fast", END)
    builder.add_edge("slow", END)
    graph = builder.compile(checkpointer=OmiumSaver(MemoryStore()))
    with pytest.raises(TimeoutError):
        graph.invoke({"messages": [HumanMessage("go")]}, config("fan"))
    result = graph.invoke(None, config("fan"))
    assert runs == {"fast": 1, "slow": 2}
    assert sorted(m.content for m in result["messages"]) == ["fast done", "go", "slow done"]


def test_history_and_fork_from_a_past_checkpoint(store: CheckpointStore) -> None:
    runs: Counter[str] = Counter()
    graph = support_graph(OmiumSaver(store), runs)
    graph.invoke({"messages": [HumanMessage("refund please")]}, config("t-fork"))
    history = list(graph.get_state_history(config("t-fork")))
    # input, after plan, after act, after review: newest first, each one message longer.
    assert [len(s.values.get("messages", [])) for s in history] == [4, 3, 2, 1, 0]
    assert [s.next for s in history] == [(), ("review",), ("act",), ("plan",), ("__start__",)]
    ids = [s.config["configurable"]["checkpoint_id"] for s in history]
    assert ids == sorted(ids, reverse=True)
    assert all(
        s.parent_config["configurable"]["checkpoint_id"] == p
        for s, p in zip(history[:-1], ids[1:], strict=True)
    )
    assert list(graph.get_state_history(config("t-fork"), limit=2)) == history[:2]

    # Fork after `plan`: replace what the planner said, then run on from there.
    past = history[2]
    planned = past.values["messages"][-1]
    fork = graph.update_state(past.config, {"messages": [AIMessage("plan B", id=planned.id)]})
    result = graph.invoke(None, fork)
    assert [m.content for m in result["messages"]] == [
        "refund please",
        "plan B",
        "looked up 2 messages",
        "review 1",
    ]
    assert runs == {"plan": 1, "act": 2, "review": 2}  # plan did not run again
    assert contents(graph.get_state(config("t-fork")))[1] == "plan B"  # the fork is the head
    # The original branch is intact and still addressable.
    assert contents(graph.get_state(history[0].config))[1] == "plan 0"
    after = list(graph.get_state_history(config("t-fork")))
    assert len(after) == len(history) + 3  # the update, act, review
    forked = graph.get_state(fork)
    assert forked.metadata["source"] == "update"
    assert forked.parent_config["configurable"]["checkpoint_id"] == ids[2]


class MeteredStore(MemoryStore):
    """A memory store that counts the bytes of the blobs it keeps."""

    def __init__(self) -> None:
        super().__init__()
        self.blob_bytes = 0
        self._kept: set[str] = set()

    def put_blob(self, data: bytes) -> str:
        key = super().put_blob(data)
        if key not in self._kept:  # an unchanged value is stored once
            self._kept.add(key)
            self.blob_bytes += len(data)
        return key


def test_storage_grows_linearly_with_turns() -> None:
    store = MeteredStore()
    saver = OmiumSaver(store)
    serde = saver.serde
    graph = chat_graph(saver)
    turns = 30
    stored = []
    naive = 0  # what re-storing the whole history at every checkpoint would take
    for turn in range(2 * turns):
        graph.invoke({"messages": [HumanMessage(text(turn))]}, config("long"))
        history = graph.get_state(config("long")).values["messages"]
        naive += len(serde.dumps_typed(history)[1]) * 3  # 3 checkpoints a turn
        if turn + 1 in (turns, 2 * turns):
            stored.append(store.blob_bytes)
    assert len(graph.get_state(config("long")).values["messages"]) == 4 * turns
    growth = stored[1] / stored[0]
    print(f"blob bytes after {turns} turns {stored[0]:,}, after {2 * turns} {stored[1]:,} (x{growth:.2f}); ")
    print(f"re-storing the history at each checkpoint: {naive:,}")
    assert 1.6 < growth < 2.3, f"{stored}: doubling the turns multiplied the bytes by {growth:.2f}"
    assert stored[1] < naive / 8, f"{stored[1]} bytes vs {naive} when re-storing the history"


def test_separate_threads_written_concurrently_stay_separate(store: CheckpointStore) -> None:
    saver = OmiumSaver(store)
    graph = chat_graph(saver, size=120)
    errors: list[BaseException] = []

    def converse(thread: str) -> None:
        try:
            for turn in range(4):
                graph.invoke({"messages": [HumanMessage(f"{thread} says {turn}")]}, config(thread))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=converse, args=(f"c{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for i in range(4):
        said = [c for c in contents(graph.get_state(config(f"c{i}")))[::2]]
        assert said == [f"c{i} says {turn}" for turn in range(4)]
        records = store.checkpoints(f"langgraph:c{i}")
        assert (
            len({r.seq for r in records})
            == len(records)
            == len(list(graph.get_state_history(config(f"c{i}"))))
        )


def test_a_new_process_numbers_past_what_is_stored() -> None:
    store = MemoryStore()
    graph = chat_graph(OmiumSaver(store))
    graph.invoke({"messages": [HumanMessage("first")]}, config("p"))
    shared_module._by_store.pop(store)  # forget what this process knew, as a new process would
    again = chat_graph(OmiumSaver(store))
    again.invoke({"messages": [HumanMessage("second")]}, config("p"))
    records = store.checkpoints("langgraph:p")
    assert len({r.seq for r in records}) == len(records) == len(list(again.get_state_history(config("p"))))
    assert contents(again.get_state(config("p")))[::2] == ["first", "second"]


def test_deleted_thread_starts_over() -> None:
    saver = OmiumSaver(MemoryStore())
    graph = chat_graph(saver)
    graph.invoke({"messages": [HumanMessage("old")]}, config("d"))
    saver.delete_thread("d")
    assert graph.get_state(config("d")).values == {}
    graph.invoke({"messages": [HumanMessage("new")]}, config("d"))
    assert contents(graph.get_state(config("d")))[0] == "new"
    assert len(list(graph.get_state_history(config("d")))) == 3


def test_subgraph_checkpoints_live_in_their_namespace() -> None:
    inner = StateGraph(Chat)
    inner.add_node("lookup", lambda s: {"messages": [AIMessage("found it")]})
    inner.add_edge(START, "lookup")
    inner.add_edge("lookup", END)
    outer = StateGraph(Chat)
    outer.add_node("research", inner.compile())
    outer.add_node("answer", lambda s: {"messages": [AIMessage(f"{len(s['messages'])} messages")]})
    outer.add_edge(START, "research")
    outer.add_edge("research", "answer")
    outer.add_edge("answer", END)
    saver = OmiumSaver(MemoryStore())
    graph = outer.compile(checkpointer=saver)
    result = graph.invoke({"messages": [HumanMessage("q")]}, config("sub"))
    assert [m.content for m in result["messages"]] == ["q", "found it", "2 messages"]
    records = saver.store.checkpoints("langgraph:sub")
    assert {r.agent for r in records} == {"", "research"}
    saver.delete_thread("sub")
    assert list(saver.list(config("sub"))) == []


def test_async_graph() -> None:
    graph = chat_graph(OmiumSaver(MemoryStore()))

    async def converse() -> list[str]:
        for turn in range(3):
            await graph.ainvoke({"messages": [HumanMessage(f"turn {turn}")]}, config("a"))
        state = await graph.aget_state(config("a"))
        assert len([s async for s in graph.aget_state_history(config("a"))]) == 9  # 3 a turn
        return contents(state)

    assert asyncio.run(converse())[::2] == ["turn 0", "turn 1", "turn 2"]
