"""Rollback and fork of a LangGraph thread at a past checkpoint (by id, id prefix or ``step N``)."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph

from omium.adapters.langgraph import OmiumSaver, find_checkpoint, fork, rollback
from omium.errors import NotFoundError
from omium.sdk.store import CheckpointStore, MemoryStore


class Pipeline(TypedDict, total=False):
    x: int
    log: Annotated[list[str], operator.add]


def pipeline(saver: OmiumSaver) -> Any:
    """double -> increment -> report: each node logs itself."""

    def double(state: Pipeline) -> dict[str, Any]:
        return {"x": state["x"] * 2, "log": ["double"]}

    def increment(state: Pipeline) -> dict[str, Any]:
        return {"x": state["x"] + 1, "log": ["increment"]}

    def report(state: Pipeline) -> dict[str, Any]:
        return {"log": [f"report {state['x']}"]}

    builder = StateGraph(Pipeline)
    builder.add_node("double", double)
    builder.add_node("increment", increment)
    builder.add_node("report", report)
    builder.add_edge(START, "double")
    builder.add_edge("double", "increment")
    builder.add_edge("increment", "report")
    builder.add_edge("report", END)
    return builder.compile(checkpointer=saver)


def config(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}}


@pytest.fixture
def graph() -> Any:
    store: CheckpointStore = MemoryStore()
    built = pipeline(OmiumSaver(store))
    assert built.invoke({"x": 3}, config("t"))["log"] == ["double", "increment", "report 7"]
    return built


def test_find_checkpoint_by_step_id_and_prefix(graph: Any) -> None:
    history = list(graph.get_state_history(config("t")))
    at_step_1 = next(s for s in history if s.metadata["step"] == 1)
    assert at_step_1.next == ("increment",)
    found = find_checkpoint(graph, "t", "step 1")
    assert found["configurable"]["checkpoint_id"] == at_step_1.config["configurable"]["checkpoint_id"]
    cid = at_step_1.config["configurable"]["checkpoint_id"]
    assert find_checkpoint(graph, "t", cid)["configurable"]["checkpoint_id"] == cid
    with pytest.raises(NotFoundError, match="no checkpoint at step 9"):
        find_checkpoint(graph, "t", "step 9")
    with pytest.raises(NotFoundError, match="ambiguous"):
        find_checkpoint(graph, "t", cid[:4])  # uuid6 ids of one thread share their time prefix
    with pytest.raises(NotFoundError, match="no checkpoints"):
        find_checkpoint(graph, "nobody", "step 1")


def test_rollback_runs_what_came_after_the_checkpoint_again(graph: Any) -> None:
    before = len(list(graph.get_state_history(config("t"))))
    target = find_checkpoint(graph, "t", "step 1")["configurable"]["checkpoint_id"]
    outcome = rollback(graph, "t", "step 1")
    assert outcome.started_from == target and not outcome.interrupted
    assert outcome.values == {"x": 7, "log": ["double", "increment", "report 7"]}
    history = list(graph.get_state_history(config("t")))
    assert len(history) == before + 3  # a copy of the checkpoint, then increment and report again
    parents = {s.config["configurable"]["checkpoint_id"]: s.parent_config for s in history}
    chain, cid = [], outcome.checkpoint_id
    while cid != target:  # the new latest descends from the target: a branch of the history
        chain.append(cid)
        cid = parents[cid]["configurable"]["checkpoint_id"]
    assert len(chain) == 3 and outcome.checkpoint_id == history[0].config["configurable"]["checkpoint_id"]


def test_fork_writes_values_on_a_past_checkpoint_and_runs_on(graph: Any) -> None:
    outcome = fork(graph, "t", "step 1", {"x": 10})
    assert outcome.values["x"] == 11
    assert outcome.values["log"] == ["double", "increment", "report 11"]
    # the original branch is still in the history
    finals = [s.values["log"][-1] for s in graph.get_state_history(config("t")) if not s.next]
    assert finals == ["report 11", "report 7"]
