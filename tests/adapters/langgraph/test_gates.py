"""Review gates (interrupt / approve / reject) and validated hand-offs, in Omium's audit trail."""

from __future__ import annotations

from collections import Counter
from typing import Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command
from pydantic import BaseModel, Field

import omium.adapters.langgraph
from omium.adapters.langgraph import (
    OmiumSaver,
    OmiumTracer,
    ReviewRejected,
    approve,
    reject,
    review_gate,
    validated,
)
from omium.errors import HandoffRejected
from omium.recovery import audit
from omium.sdk.store import CheckpointStore, MemoryStore


class Offer(TypedDict, total=False):
    customer: str
    apr: float
    sent: str


class Quote(BaseModel):
    apr: float = Field(ge=0)


def config(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}}


def offer_graph(store: CheckpointStore, runs: Counter[str], apr: float = 9.5) -> Any:
    """quote -> approve (review gate on big offers) -> send."""

    def quote(state: Offer) -> dict[str, Any]:
        runs["quote"] += 1
        return {"apr": apr}

    def gate(state: Offer) -> dict[str, Any]:
        runs["gate"] += 1
        if state["apr"] > 8.5:
            approved = review_gate({"apr": state["apr"]}, reason="APR above 8.5%")
            return {"apr": approved["apr"]}
        return {}

    def send(state: Offer) -> dict[str, Any]:
        runs["send"] += 1
        return {"sent": f"offer to {state['customer']} at {state['apr']}%"}

    builder = StateGraph(Offer)
    builder.add_node("quote", validated(quote, schema=Quote, constraints={"apr": {"max": 20}}))
    builder.add_node("gate", gate)
    builder.add_node("send", send)
    builder.add_edge(START, "quote")
    builder.add_edge("quote", "gate")
    builder.add_edge("gate", "send")
    builder.add_edge("send", END)
    return builder.compile(checkpointer=OmiumSaver(store))


def kinds(store: CheckpointStore, thread: str) -> list[str]:
    return [e.kind for e in store.events(f"langgraph:{thread}")]


def test_public_names() -> None:
    assert omium.adapters.langgraph.__all__ == [
        "OmiumSaver",
        "OmiumTracer",
        "Outcome",
        "ReviewRejected",
        "approve",
        "check_handoff",
        "find_checkpoint",
        "fork",
        "reject",
        "review_gate",
        "rollback",
        "validated",
    ]


def test_review_gate_pauses_and_approve_resumes() -> None:
    store, runs = MemoryStore(), Counter[str]()
    graph = offer_graph(store, runs)
    out = graph.invoke({"customer": "ana"}, config("t-gate"))
    (pending,) = out["__interrupt__"]
    assert pending.value["reason"] == "APR above 8.5%" and pending.value["value"] == {"apr": 9.5}
    paused_at = graph.get_state(config("t-gate")).config["configurable"]["checkpoint_id"]
    run = store.get_run("langgraph:t-gate")
    assert run.status == "paused" and run.attributes["awaiting"] == "review"
    (paused,) = store.events("langgraph:t-gate")
    assert paused.kind == "paused" and paused.reason == "APR above 8.5%"
    assert paused.attributes["checkpoint"] == paused_at and paused.attributes["node"] == "gate"

    result = approve(graph, "t-gate", value={"apr": 8.0}, edit=True, reviewer="sam", reason="ok at 8")
    assert result["sent"] == "offer to ana at 8.0%"
    assert runs == {"quote": 1, "gate": 2, "send": 1}  # only the gated node ran again
    assert kinds(store, "t-gate") == ["paused", "reviewed", "resumed"]
    reviewed = store.events("langgraph:t-gate")[1]
    assert reviewed.actor == "sam" and reviewed.attributes["decision"] == "approve"
    run = store.get_run("langgraph:t-gate")
    assert run.status == "completed" and run.attributes["awaiting"] == ""
    (incident,) = audit.incidents(store, "langgraph:t-gate")
    assert incident.stages == ["paused", "reviewed", "resumed"]


def test_reject_ends_the_run() -> None:
    store, runs = MemoryStore(), Counter[str]()
    graph = offer_graph(store, runs)
    graph.invoke({"customer": "bo"}, config("t-no"))
    reject(graph, "t-no", reviewer="sam", reason="too expensive")
    assert runs["send"] == 0
    run = store.get_run("langgraph:t-no")
    assert run.status == "rejected" and run.error == "too expensive"
    assert kinds(store, "t-no") == ["paused", "reviewed"]
    assert store.events("langgraph:t-no")[1].attributes["decision"] == "reject"
    with pytest.raises(ReviewRejected, match="review rejected: no"):  # resumed by hand: the node raises
        graph2 = offer_graph(store, runs)
        graph2.invoke({"customer": "bo"}, config("t-no2"))
        graph2.invoke(Command(resume={"decision": "reject", "reason": "no"}), config("t-no2"))


def test_gate_events_reach_the_tracer_too() -> None:
    store, runs = MemoryStore(), Counter[str]()
    graph = offer_graph(store, runs)
    saver = graph.checkpointer
    traced = {**config("t-both"), "callbacks": [OmiumTracer(saver)]}
    graph.invoke({"customer": "cy"}, traced)
    approve(graph, "t-both", config={"callbacks": [OmiumTracer(saver)]})
    # the gate's events, not repeated by the tracer, which puts them on the workflow spans
    assert kinds(store, "t-both") == ["paused", "reviewed", "resumed"]
    assert len({e.attributes["checkpoint"] for e in store.events("langgraph:t-both")}) == 1


def test_a_rejected_handoff_stops_the_run_with_the_reason() -> None:
    store, runs = MemoryStore(), Counter[str]()
    graph = offer_graph(store, runs, apr=-1.0)
    with pytest.raises(HandoffRejected, match="hand-off from quote rejected: does not match Quote"):
        graph.invoke({"customer": "di"}, config("t-bad"))
    assert runs == {"quote": 1}  # the next node never got it
    state = graph.get_state(config("t-bad"))
    assert state.next == ("quote",) and "apr" not in state.values  # nothing of the update written
    run = store.get_run("langgraph:t-bad")
    assert run.status == "failed" and "does not match Quote" in run.error
    detected, failed = store.events("langgraph:t-bad")
    assert detected.kind == "detected" and detected.attributes["trigger"] == "handoff_rejected"
    assert detected.attributes["node"] == "quote" and "greater than or equal to 0" in detected.reason
    assert detected.before == '{"apr": -1.0}'
    assert failed.kind == "failed" and failed.attributes["incident"] == detected.attributes["incident"]


def test_constraints_reject_too() -> None:
    store = MemoryStore()
    graph = offer_graph(store, Counter(), apr=25.0)
    with pytest.raises(HandoffRejected, match=r"apr: value 25.0 is above the maximum 20"):
        graph.invoke({"customer": "ed"}, config("t-max"))
    detected = store.events("langgraph:t-max")[0]
    assert detected.kind == "detected" and detected.attributes["trigger"] == "handoff_rejected"
