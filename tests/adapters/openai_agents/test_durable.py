"""A crashed Agents SDK run resumes from its last completed step: finished tool and model calls stay done."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from agents import Agent, ModelResponse, Runner, Usage, function_tool
from agents.testing import ScriptedModel, assistant_message, function_call

import omium
from omium.adapters.openai_agents import OmiumRunHooks, agent_workflow, durable
from omium.adapters.openai_agents.durable import decode_response, encode_response
from omium.sdk import serde
from omium.testing import Runtime
from tests.adapters.openai_agents import flows


class WorkerCrashed(Exception):
    """Stands for the process dying."""


def test_a_crash_after_the_first_tool_call_resumes_without_repeating_it(rt: Runtime) -> None:
    crash = WorkerCrashed("worker lost after the lookup")
    triage, model = flows.support([flows.HANDOFF, flows.LOOKUP, crash])
    with pytest.raises(WorkerCrashed):
        omium.run(agent_workflow(triage, name="support"), "Jane was charged twice", run_id="crashy")
    assert flows.executed["lookup_account"] == 1
    run = rt.store.get_run("crashy")
    assert run.status == "failed" and "worker lost" in run.error
    steps = rt.store.steps("crashy")
    assert [(s.kind, s.name, s.status) for s in steps] == [
        ("llm", "ScriptedModel", "completed"),
        ("handoff_send", "triage->billing", "completed"),
        ("handoff_receive", "triage->billing", "completed"),
        ("llm", "ScriptedModel", "completed"),
        ("tool", "lookup_account", "completed"),
        ("llm", "ScriptedModel", "failed"),
    ]
    assert [c.name for c in rt.store.checkpoints("crashy")] == [
        "triage.turn",
        "billing.turn",
        "billing.lookup_account",
    ]

    # A new process: the agents are built again; the model only has what is left to say.
    triage, model = flows.support([flows.ANSWER])
    rt.spans.clear()
    result = omium.run(agent_workflow(triage, name="support"), "Jane was charged twice", run_id="crashy")
    assert result == "Jane is premium; refund of 42.00 sorted."
    assert flows.executed["lookup_account"] == 1  # not run again
    assert len(model.calls) == 1  # only the call that had failed; the others were replayed
    assert rt.store.get_run("crashy").status == "completed"
    replayed = {
        s.name for s in rt.spans.get_finished_spans() if s.attributes and s.attributes.get("omium.replayed")
    }
    assert replayed == {
        "chat ScriptedModel",
        "execute_tool lookup_account",
        "handoff_send triage->billing",
        "handoff_receive triage->billing",
    }
    assert [c.name for c in rt.store.checkpoints("crashy")][-2:] == ["billing.turn", "billing.output"]


def test_checkpoints_are_rollback_points(rt: Runtime) -> None:
    triage, _ = flows.support([flows.HANDOFF, flows.LOOKUP, flows.ANSWER])
    omium.run(agent_workflow(triage, name="support"), "Jane was charged twice", run_id="rolling")
    assert flows.executed["lookup_account"] == 1
    omium.rollback("rolling", "billing.turn", store=rt.store)  # the latest: before the answer
    omium.rollback("rolling", "triage.turn", store=rt.store)  # further: right after triage answered
    triage, model = flows.support([flows.LOOKUP, flows.ANSWER])
    omium.run(agent_workflow(triage, name="support"), "Jane was charged twice", run_id="rolling")
    # Everything after triage's turn ran again: billing's model calls and its tool call.
    assert len(model.calls) == 2 and flows.executed["lookup_account"] == 2


def test_outside_a_run_the_wrappers_pass_through(rt: Runtime) -> None:
    calls: list[str] = []

    @function_tool
    def ping(host: str) -> str:
        """Ping."""
        calls.append(host)
        return "pong"

    model = ScriptedModel([[function_call("ping", {"host": "db"}, call_id="p1")], [assistant_message("up")]])
    agent: Agent[Any] = durable(Agent(name="ops", model=model, tools=[ping]))
    hooks = OmiumRunHooks()
    result = asyncio.run(Runner.run(agent, "is the db up?", hooks=hooks))
    assert result.final_output == "up" and calls == ["db"] and hooks.checkpoints == []
    assert rt.store.list_runs() == []


def test_model_responses_round_trip_through_the_recording() -> None:
    response = ModelResponse(
        output=[flows.LOOKUP[0], flows.ANSWER[0]],
        usage=Usage(requests=1, input_tokens=12, output_tokens=7, total_tokens=19),
        response_id="resp-1",
    )
    back = decode_response(serde.loads(serde.dumps(encode_response(response))))
    assert back.output == response.output
    assert (back.usage.input_tokens, back.usage.output_tokens, back.response_id) == (12, 7, "resp-1")


def test_a_completed_run_replays_identically(rt: Runtime) -> None:
    triage, _ = flows.support([flows.HANDOFF, flows.LOOKUP, flows.ANSWER])
    flow = agent_workflow(triage, name="support")
    omium.run(flow, "Jane was charged twice", run_id="replayable")
    triage, model = flows.support([])
    report = omium.replay(agent_workflow(triage, name="support"), run_id="replayable", store=rt.store)
    assert report.identical, report.divergence
    assert report.calls_replayed == 6 and not model.calls and flows.executed["lookup_account"] == 1


def test_a_tool_failure_the_model_saw_is_recorded_as_seen(rt: Runtime) -> None:
    attempts: list[str] = []

    @function_tool
    def charge(card: str) -> str:
        """Charge a card."""
        attempts.append(card)
        raise ConnectionError("payment gateway down")

    model = ScriptedModel(
        [[function_call("charge", {"card": "visa"}, call_id="c1")], [assistant_message("try later")]]
    )
    flow = agent_workflow(Agent(name="cashier", model=model, tools=[charge]), name="cashier")
    assert omium.run(flow, "charge me", run_id="declined") == "try later"
    step = next(s for s in rt.store.steps("declined") if s.kind == "tool")
    recorded = serde.loads(rt.store.get_blob(step.output_hash))
    seen = [
        i for i in model.calls[-1].input if isinstance(i, dict) and i.get("type") == "function_call_output"
    ]
    assert step.status == "completed" and recorded == seen[-1]["output"] and attempts == ["visa"]
    span = next(s for s in rt.spans.get_finished_spans() if s.name == "execute_tool charge")
    assert span.status.status_code.name == "ERROR" and span.attributes["gen_ai.agent.name"] == "cashier"  # type: ignore[index]
