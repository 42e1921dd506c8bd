"""Sequential AG2 chats under Omium: traced turns, checkpoints per turn, resume without re-running turns."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ag2 import Agent
from ag2.events import ModelMessage, ModelRequest, ModelResponse, TextInput

import omium
from omium.adapters.autogen import OmiumMiddleware, instrument, transcript
from omium.adapters.autogen.recording import decode_event, encode_event, request_text
from omium.adapters.autogen.testing import ScriptedModel
from omium.errors import NonDeterminismError, SerializationError
from omium.sdk import serde
from omium.testing import Runtime
from tests.adapters.autogen.team_example import CODE, PLAN, PLAN_CHECK, crew, drive


def _spans(rt: Runtime) -> list[Any]:
    return list(rt.spans.get_finished_spans())


def test_turns_are_traced_with_genai_names_run_ids_and_parents(rt: Runtime) -> None:
    team_crew = crew()
    outcome = drive(
        team_crew.team(handoffs=[PLAN_CHECK]).run(team_crew.sequential, "Write fib", run_id="seq")
    )
    assert outcome.status == "completed"
    assert outcome.result.startswith("LGTM")
    spans = _spans(rt)
    by_id = {s.context.span_id: s for s in spans}
    (root,) = [s for s in spans if s.parent is None]
    assert root.name == "invoke_workflow fib_team"
    turns = [s for s in spans if s.name.startswith("invoke_agent ")]
    assert [s.name for s in sorted(turns, key=lambda s: s.start_time)] == [
        "invoke_agent planner",
        "invoke_agent coder",
        "invoke_agent reviewer",
    ]
    for index, turn in enumerate(sorted(turns, key=lambda s: s.start_time)):
        assert turn.parent.span_id == root.context.span_id
        assert turn.attributes["gen_ai.operation.name"] == "invoke_agent"
        assert turn.attributes["omium.run_id"] == "seq"
        assert turn.attributes["omium.step_index"] == index
        assert turn.attributes["omium.turn"] == index
        assert turn.attributes["gen_ai.workflow.name"] == "fib_team"
    chats = [s for s in spans if s.name.startswith("chat ")]
    assert sorted(s.name for s in chats) == [
        "chat coder-model",
        "chat coder-model",
        "chat planner-model",
        "chat reviewer-model",
    ]
    for chat in chats:
        parent = by_id[chat.parent.span_id]
        assert parent.name == f"invoke_agent {chat.attributes['gen_ai.agent.name']}"
        assert chat.attributes["omium.step_index"] == parent.attributes["omium.step_index"]
        assert chat.attributes["gen_ai.provider.name"] == "omium.testing"
        assert chat.attributes["gen_ai.usage.output_tokens"] >= 1
    (tool,) = [s for s in spans if s.name == "execute_tool run_tests"]
    assert by_id[tool.parent.span_id].name == "invoke_agent coder"
    assert tool.attributes["gen_ai.tool.name"] == "run_tests"
    assert tool.attributes["gen_ai.tool.call.result"] == "3 passed"
    assert tool.attributes["omium.run_id"] == "seq"
    (handoff,) = [s for s in spans if s.name == "handoff_send planner->coder"]
    assert handoff.attributes["omium.handoff.verdict"] == "acked"
    assert (
        json.loads(by_id[handoff.parent.span_id].attributes["gen_ai.output.messages"])[0]["content"] == PLAN
    )


def test_each_turn_is_checkpointed_with_the_transcript_by_content_address(rt: Runtime) -> None:
    team_crew = crew()
    drive(team_crew.team().run(team_crew.sequential, "Write fib", run_id="cp"))
    steps = rt.store.steps("cp")
    assert [(s.position, s.kind, s.name, s.status) for s in steps] == [
        (0, "agent_turn", "planner", "completed"),
        (1, "agent_turn", "coder", "completed"),
        (2, "agent_turn", "reviewer", "completed"),
    ]
    checkpoints = rt.store.checkpoints("cp")
    assert [(c.name, c.agent, c.step_index) for c in checkpoints] == [
        ("turn-0", "planner", 1),
        ("turn-1", "coder", 2),
        ("turn-2", "reviewer", 3),
    ]
    first = serde.loads(rt.store.get_blob(checkpoints[0].state_hash))["values"]["transcript"]
    last = serde.loads(rt.store.get_blob(checkpoints[2].state_hash))["values"]["transcript"]
    assert last[: len(first)] == first  # earlier messages are named, not stored again
    messages = transcript(rt.store, "cp")
    assert [(m["agent"], m["role"]) for m in messages] == [
        ("planner", "user"),
        ("planner", "assistant"),
        ("coder", "user"),
        ("coder", "assistant"),
        ("reviewer", "user"),
        ("reviewer", "assistant"),
    ]
    assert messages[1]["content"] == PLAN
    assert CODE in messages[3]["content"]
    assert [m["role"] for m in transcript(rt.store, "cp", "turn-0")] == ["user", "assistant"]


def test_a_crashed_conversation_resumes_without_rerunning_finished_turns(rt: Runtime) -> None:
    broken = crew(reviewer=[ConnectionError("model endpoint down")])
    with pytest.raises(ConnectionError):
        drive(broken.team(handoffs=[PLAN_CHECK]).run(broken.sequential, "Write fib", run_id="crash"))
    run = rt.store.get_run("crash")
    assert (run.status, run.error) == ("failed", "ConnectionError: model endpoint down")
    assert [(s.name, s.status) for s in rt.store.steps("crash")] == [
        ("planner", "completed"),
        ("coder", "completed"),
        ("reviewer", "failed"),
    ]
    assert broken.tool_runs == ["fib"]

    rt.spans.clear()
    fresh = crew()  # new agents and models: nothing is shared with the crashed attempt but the store
    outcome = drive(fresh.team(handoffs=[PLAN_CHECK]).run(fresh.sequential, "Write fib", run_id="crash"))
    assert outcome.status == "completed"
    assert fresh.calls() == {"planner": 0, "coder": 0, "reviewer": 1}
    assert fresh.tool_runs == []  # the coder's tool did not run again either
    assert (outcome.executed, outcome.replayed, outcome.model_calls) == (1, 2, 1)
    assert rt.store.get_run("crash").status == "completed"
    replayed = {
        s.name: s.attributes.get("omium.replayed", False) for s in _spans(rt) if "invoke_agent" in s.name
    }
    assert replayed == {
        "invoke_agent planner": True,
        "invoke_agent coder": True,
        "invoke_agent reviewer": False,
    }
    # The reviewer saw the coder's recorded reply, exactly as the first attempt would have.
    (request,) = fresh.models["reviewer"].requests
    assert isinstance(request[-1], ModelRequest)
    assert CODE in request_text(request[-1])


def test_a_continued_chat_sees_replayed_turns_in_its_history(rt: Runtime) -> None:
    def build() -> tuple[Agent[Any], ScriptedModel]:
        model = ScriptedModel(["first answer", "second answer"])
        return Agent("solo", config=model), model

    async def chat(agent: Agent[Any]) -> str:
        reply = await agent.ask("first question")
        follow = await reply.ask("second question")
        return follow.body or ""

    agent, model = build()
    model.script = ["first answer", ConnectionError("down")]
    with pytest.raises(ConnectionError):
        drive(instrument(agent).run(chat, agent, run_id="continued"))
    agent, model = build()
    model.script = ["second answer"]
    outcome = drive(instrument(agent).run(chat, agent, run_id="continued"))
    assert outcome.result == "second answer"
    # The second call was shown the first turn, restored from the record.
    seen = [e for e in model.requests[0] if isinstance(e, (ModelRequest, ModelResponse))]
    assert [type(e).__name__ for e in seen] == ["ModelRequest", "ModelResponse", "ModelRequest"]
    assert isinstance(seen[1], ModelResponse)
    assert seen[1].content == "first answer"


def test_a_resumed_conversation_that_changes_speakers_is_refused(rt: Runtime) -> None:
    broken = crew(reviewer=[ConnectionError("down")])
    with pytest.raises(ConnectionError):
        drive(broken.team().run(broken.sequential, "Write fib", run_id="nondet"))
    fresh = crew()

    async def reordered(task: str) -> str:
        code = await fresh.coder.ask(task)  # the coder first this time
        return code.body or ""

    with pytest.raises(
        NonDeterminismError, match=r"call 0\.0 \(position 0\): the recording has agent_turn 'planner'"
    ):
        drive(fresh.team().run(reordered, "Write fib", run_id="nondet"))


def test_agents_outside_a_run_are_untouched(rt: Runtime) -> None:
    team_crew = crew()
    team_crew.team()
    assert drive(team_crew.sequential("Write fib")).startswith("LGTM")
    assert rt.spans.get_finished_spans() == ()
    assert rt.store.list_runs() == []


def test_instrumenting_again_moves_agents_to_the_new_team(rt: Runtime) -> None:
    team_crew = crew()
    first = team_crew.team()
    second = team_crew.team(handoffs=[PLAN_CHECK])
    assert first is not second
    installed = [
        m.middleware for m in team_crew.planner.middleware if isinstance(m.middleware, OmiumMiddleware)
    ]
    assert len(installed) == 1
    assert installed[0].team is second
    assert team_crew.planner.middleware[0].description.config == {"agent": "planner"}  # the outermost
    drive(second.run(team_crew.sequential, "Write fib", run_id="again"))
    assert [m.status for m in rt.store.handoffs("again", "planner->coder")] == ["acked"]


def test_recorded_events_are_read_back_only_as_what_they_claim_to_be() -> None:
    response = ModelResponse(ModelMessage("hi"), model="m")
    assert decode_event(encode_event(response)) == response
    request = encode_event(ModelRequest([TextInput("x")]))
    request["data"]["parts"][0]["__event__"] = "subprocess.Popen"
    with pytest.raises(SerializationError, match="not an AG2 event"):
        decode_event(request)
    with pytest.raises(SerializationError, match="not an AG2 event"):
        decode_event({"type": "os.PathLike", "data": {}})


def test_turns_inside_an_omium_workflow_are_calls_of_that_run(rt: Runtime) -> None:
    team_crew = crew()
    team_crew.team()

    @omium.workflow(name="hand_written")
    async def hand_written(task: str) -> str:
        return await team_crew.sequential(task)

    assert drive(omium.arun(hand_written, "Write fib", run_id="wf")).startswith("LGTM")
    assert [s.name for s in rt.store.steps("wf")] == ["planner", "coder", "reviewer"]
    spans = {s.name: s for s in rt.spans.get_finished_spans()}
    root = spans["invoke_workflow hand_written"]
    assert spans["invoke_agent coder"].parent.span_id == root.context.span_id


def test_a_rollback_to_a_turn_checkpoint_reruns_the_turns_after_it(rt: Runtime) -> None:
    first = crew()
    drive(first.team().run(first.sequential, "Write fib", run_id="rolled"))
    omium.rollback("rolled", "turn-0")
    second = crew()
    outcome = drive(second.team().run(second.sequential, "Write fib", run_id="rolled"))
    assert outcome.status == "completed"
    assert second.calls() == {"planner": 0, "coder": 2, "reviewer": 1}
    assert second.tool_runs == ["fib"]  # the coder's turn ran again, tool and all
    # AG2 runs each ask in a task of its own: a turn's call id is that task's first call.
    assert [(s.name, s.idempotency_key) for s in rt.store.steps("rolled")] == [
        ("planner", "rolled:0.0"),
        ("coder", "rolled:1.0:g1"),
        ("reviewer", "rolled:2.0:g1"),
    ]
