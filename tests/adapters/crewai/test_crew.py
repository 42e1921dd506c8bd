"""A CrewAI crew under Omium: traced, checkpointed per task, resumable, hand-offs checked, gated."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest
from crewai import Crew

from omium.adapters.crewai import TASK_KIND, HandoffCheck, ReviewGate, guardrail, instrument
from omium.adapters.crewai.testing import final
from omium.errors import ConflictError, GuardViolation
from omium.recovery import review
from omium.recovery.worker import Worker, enqueue
from omium.sdk import runs, serde
from omium.sdk.store import MemoryStore, StepRecord
from omium.testing import Runtime
from tests.adapters.crewai.onboarding import KYC_CHECK, onboarding

TASKS = ["verify identity", "score credit", "generate terms", "send offer"]


def test_a_crew_runs_as_a_durable_run_with_a_checkpoint_per_task(rt: Runtime) -> None:
    team = onboarding()
    outcome = instrument(team.crew, handoffs=[KYC_CHECK]).kickoff({"customer": "Ada"}, run_id="ok-1")

    assert outcome.status == "completed"
    assert outcome.result is not None and outcome.result["raw"] == "Email sent to Ada"
    assert outcome.output.raw == "Email sent to Ada"
    assert (outcome.executed, outcome.replayed, outcome.model_calls) == (4, 0, 6)
    assert team.calls() == {"kyc": 2, "credit": 1, "terms": 1, "email": 2}
    assert team.tool_runs() == {"lookup_customer": ["Ada"], "send_email": ["Ada"]}

    run = rt.store.get_run("ok-1")
    assert (run.status, run.workflow) == ("completed", "onboarding")
    steps = rt.store.steps("ok-1")
    assert [(s.position, s.kind, s.name, s.agent, s.status) for s in steps] == [
        (i, TASK_KIND, name, agent, "completed")
        for i, (name, agent) in enumerate(zip(TASKS, ["kyc", "credit", "terms", "email"], strict=True))
    ]
    stored = serde.loads(rt.store.get_blob(steps[2].output_hash))
    assert (stored["raw"], stored["agent"]) == ("Offer: $20,000 at APR 6.9%", "terms")
    # The hand-off a task received is its step's input: credit got KYC's output.
    assert "verified" in serde.loads(rt.store.get_blob(steps[1].input_hash))["context"]
    checkpoints = rt.store.checkpoints("ok-1")
    assert [c.name for c in checkpoints] == ["task-0", "task-1", "task-2", "task-3"]
    last = serde.loads(rt.store.get_blob(checkpoints[-1].state_hash))
    assert last["outputs"] == {str(s.position): s.output_hash for s in steps}
    # The checked hand-off is in the run's hand-off log.
    [logged] = rt.store.handoffs("ok-1", "kyc->credit")
    assert (logged.status, logged.schema_name) == ("acked", "KycResult")


def test_spans_have_agents_parents_tokens_and_positions(rt: Runtime) -> None:
    team = onboarding()
    instrument(team.crew).kickoff({"customer": "Ada"}, run_id="spans-1")
    spans = rt.spans.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    [root] = [s for s in spans if s.name == "invoke_workflow onboarding"]
    tasks = [s for s in spans if s.name.startswith("invoke_agent ")]
    assert [(s.attributes["gen_ai.agent.name"], s.attributes["omium.step_index"]) for s in tasks] == [
        ("kyc", 0),
        ("credit", 1),
        ("terms", 2),
        ("email", 3),
    ]
    assert {s.parent.span_id for s in tasks} == {root.context.span_id}
    assert {s.context.trace_id for s in spans} == {root.context.trace_id}
    calls = [s for s in spans if s.name.startswith(("chat ", "execute_tool "))]
    assert sorted(s.name for s in calls) == sorted(
        [
            "chat kyc-model",
            "chat kyc-model",
            "execute_tool lookup_customer",
            "chat credit-model",
            "chat terms-model",
            "chat email-model",
            "chat email-model",
            "execute_tool send_email",
        ]
    )
    for span in calls:
        parent = by_id[span.parent.span_id]
        assert parent.name == f"invoke_agent {span.attributes['gen_ai.agent.name']}"
        assert parent.attributes["omium.step_index"] == span.attributes["omium.step_index"]
        assert parent.start_time <= span.start_time <= span.end_time <= parent.end_time
        if span.name.startswith("chat "):
            assert span.attributes["gen_ai.usage.input_tokens"] > 0
            assert span.attributes["gen_ai.usage.output_tokens"] > 0
    [tool] = [s for s in calls if s.name == "execute_tool send_email"]
    assert json.loads(tool.attributes["gen_ai.tool.call.arguments"]) == {"customer": "Ada"}
    assert tool.attributes["gen_ai.tool.call.result"] == "sent to Ada"


def test_a_failed_task_fails_the_run_and_a_resume_runs_only_the_rest(rt: Runtime) -> None:
    team = onboarding({"terms": [RuntimeError("model provider timed out")] * 3})
    with pytest.raises(Exception, match="timed out"):
        instrument(team.crew).kickoff({"customer": "Ada"}, run_id="fail-1")
    run = rt.store.get_run("fail-1")
    assert run.status == "failed" and "timed out" in run.error
    assert [(s.name, s.status) for s in rt.store.steps("fail-1")] == [
        ("verify identity", "completed"),
        ("score credit", "completed"),
        ("generate terms", "failed"),
    ]
    [failed] = [s for s in rt.spans.get_finished_spans() if s.name == "invoke_agent terms"]
    assert not failed.status.is_ok

    fresh = onboarding()
    outcome = instrument(fresh.crew).kickoff({"customer": "Ada"}, run_id="fail-1")
    assert outcome.status == "completed"
    assert (outcome.executed, outcome.replayed) == (2, 2)
    assert fresh.calls() == {"kyc": 0, "credit": 0, "terms": 1, "email": 2}
    assert fresh.tool_runs() == {"lookup_customer": [], "send_email": ["Ada"]}
    # The resumed terms task saw the restored hand-offs.
    prompt = json.dumps(fresh.models["terms"].requests[0])
    assert "Credit score 720" in prompt and "verified" in prompt
    assert outcome.result is not None and outcome.result["tasks"][0] == json.dumps(
        {"customer": "Ada", "verified": True}
    )
    assert [s.status for s in rt.store.steps("fail-1")][-2:] == ["completed", "completed"]


def test_kicking_off_a_completed_run_again_returns_its_result_without_running(rt: Runtime) -> None:
    instrument(onboarding().crew).kickoff({"customer": "Ada"}, run_id="done-1")
    again = onboarding()
    outcome = instrument(again.crew).kickoff({"customer": "Ada"}, run_id="done-1")
    assert outcome.status == "completed" and outcome.result is not None
    assert outcome.result["raw"] == "Email sent to Ada"
    assert sum(again.calls().values()) == 0


def test_a_rejected_handoff_stops_the_crew_with_the_reason_recorded(rt: Runtime) -> None:
    bad = {"kyc": [final(json.dumps({"customer": "Ada", "verified": False}))]}
    team = onboarding(bad)
    outcome = instrument(team.crew, handoffs=[KYC_CHECK]).kickoff({"customer": "Ada"}, run_id="rej-1")

    assert outcome.status == "rejected"
    assert "kyc->credit rejected" in outcome.reason and "verified" in outcome.reason
    assert team.calls() == {"kyc": 1, "credit": 0, "terms": 0, "email": 0}
    run = rt.store.get_run("rej-1")
    assert run.status == "failed" and "HandoffRejected" in run.error
    [logged] = rt.store.handoffs("rej-1", "kyc->credit")
    assert logged.status == "rejected" and "verified" in logged.reason
    [step] = rt.store.steps("rej-1")
    assert (step.name, step.status) == ("verify identity", "failed")
    assert "HandoffRejected" in step.error
    events = [e for e in rt.store.events("rej-1") if e.kind == "failed"]
    assert events and "rejected" in events[-1].reason
    [span] = [s for s in rt.spans.get_finished_spans() if s.name == "invoke_agent kyc"]
    assert span.attributes["omium.handoff.verdict"] == "rejected" and not span.status.is_ok


def test_an_unparseable_handoff_is_rejected_not_crashed(rt: Runtime) -> None:
    team = onboarding({"kyc": [final("Ada looks fine to me")]})
    outcome = instrument(team.crew, handoffs=[KYC_CHECK]).kickoff({"customer": "Ada"}, run_id="rej-2")
    assert outcome.status == "rejected" and "not parseable" in outcome.reason


def test_a_review_gate_pauses_the_crew_until_approved(rt: Runtime) -> None:
    team = onboarding()
    app = instrument(team.crew, reviews=[ReviewGate("email", reason="a person checks the offer")])
    outcome = app.kickoff({"customer": "Ada"}, run_id="gate-1")

    assert outcome.status == "paused" and "awaiting approval before email" in outcome.reason
    assert team.calls() == {"kyc": 2, "credit": 1, "terms": 1, "email": 0}
    run = rt.store.get_run("gate-1")
    assert run.status == "paused" and run.attributes.get("awaiting") == "review"
    with pytest.raises(ConflictError):
        app.kickoff({"customer": "Ada"}, run_id="gate-1")  # not before a person decides

    review("gate-1", "approve", store=rt.store)
    resumed = app.kickoff({"customer": "Ada"}, run_id="gate-1")
    assert resumed.status == "completed"
    assert (resumed.executed, resumed.replayed) == (1, 3)
    assert team.calls() == {"kyc": 2, "credit": 1, "terms": 1, "email": 2}
    assert team.tool_runs()["send_email"] == ["Ada"]
    assert rt.store.get_run("gate-1").status == "completed"


def test_a_rejected_review_ends_the_run(rt: Runtime) -> None:
    app = instrument(onboarding().crew, reviews=[ReviewGate("terms")])
    assert app.kickoff({"customer": "Ada"}, run_id="gate-2").status == "paused"
    review("gate-2", "reject", reason="terms need legal sign-off", store=rt.store)
    with pytest.raises(ConflictError, match="rejected"):
        app.kickoff({"customer": "Ada"}, run_id="gate-2")


def _apr_in_range(output: object) -> str | None:
    text = str(getattr(output, "raw", ""))
    if "APR 0%" in text:
        return "a 0% APR offer is not allowed; offers are between 2.5% and 8.5%"
    return None


def test_a_guardrail_sends_the_agent_back_and_omium_records_each_verdict(rt: Runtime) -> None:
    team = onboarding(
        {"terms": [final("Offer: $20,000 at APR 0%"), final("Offer: $20,000 at APR 6.9%")]},
        guardrail=guardrail(_apr_in_range, name="apr_in_range"),
    )
    outcome = instrument(team.crew).kickoff({"customer": "Ada"}, run_id="guard-1")
    assert outcome.status == "completed"
    assert team.calls()["terms"] == 2
    assert "0% APR offer is not allowed" in json.dumps(team.models["terms"].requests[1])
    [span] = [s for s in rt.spans.get_finished_spans() if s.name == "invoke_agent terms"]
    verdicts = [
        (e.attributes["omium.guardrail.passed"], e.attributes["omium.guardrail.name"]) for e in span.events
    ]
    assert verdicts == [(False, "apr_in_range"), (True, "apr_in_range")]


def test_a_guardrail_that_gives_up_fails_the_run_as_a_guard_violation(rt: Runtime) -> None:
    team = onboarding(
        {"terms": [final("Offer: $20,000 at APR 0%")] * 2},
        guardrail=guardrail(_apr_in_range, name="apr_in_range"),
        guardrail_retries=1,
    )
    with pytest.raises(GuardViolation) as caught:
        instrument(team.crew).kickoff({"customer": "Ada"}, run_id="guard-2")
    assert caught.value.trigger == "policy_violation" and caught.value.check == "apr_in_range"
    assert len(caught.value.evidence["attempts"]) == 2
    run = rt.store.get_run("guard-2")
    assert run.status == "failed" and "GuardViolation" in run.error
    assert team.calls()["email"] == 0


def test_instrument_refuses_what_it_cannot_honour(rt: Runtime) -> None:
    crew = onboarding().crew
    with pytest.raises(ValueError, match="not one of the crew's agents"):
        instrument(crew, handoffs=[HandoffCheck("legal", "terms")])
    with pytest.raises(ValueError, match="not one of the crew's agents"):
        instrument(crew, reviews=[ReviewGate("legal")])
    with pytest.raises(TypeError, match=r"crewai\.Crew"):
        instrument(crew.agents)  # type: ignore[arg-type]


def test_a_crew_not_under_omium_is_left_alone(rt: Runtime) -> None:
    instrument(onboarding().crew)  # installs the process-wide hooks
    plain = onboarding()
    result = plain.crew.kickoff({"customer": "Ada"})
    assert isinstance(plain.crew, Crew) and result.raw == "Email sent to Ada"
    assert rt.spans.get_finished_spans() == ()
    assert rt.store.list_runs() == []


def test_an_approved_run_is_resumed_by_an_omium_worker(rt: Runtime) -> None:
    gate = ReviewGate("email")
    instrument(onboarding().crew, reviews=[gate]).kickoff({"customer": "Ada"}, run_id="by-worker")
    review("by-worker", "approve", store=rt.store)  # what `omium review RUN --approve` does,
    enqueue(rt.store, "by-worker", "resume")  # and then it queues the resume for a worker

    hosted = onboarding()
    flow = instrument(hosted.crew, reviews=[gate]).workflow()
    command = Worker(rt.store, {"onboarding": flow}).run_once()
    assert command is not None and command.status == "done", command
    assert json.loads(command.result)["status"] == "completed"
    assert rt.store.get_run("by-worker").status == "completed"
    # The worker resumed with the run's recorded inputs ({"customer": "Ada"}) from the gate on.
    assert hosted.calls() == {"kyc": 0, "credit": 0, "terms": 0, "email": 2}
    assert hosted.tool_runs()["send_email"] == ["Ada"]


def test_a_task_that_fails_after_a_guardrail_verdict_is_not_blamed_on_the_guardrail(rt: Runtime) -> None:
    down = RuntimeError("model provider is down")
    team = onboarding(
        {"terms": [final("Offer: $20,000 at APR 0%"), down, down, down]},
        guardrail=guardrail(_apr_in_range, name="apr_in_range"),
        guardrail_retries=2,
    )
    with pytest.raises(Exception, match="provider is down") as caught:
        instrument(team.crew).kickoff({"customer": "Ada"}, run_id="guard-3")
    assert not isinstance(caught.value, GuardViolation)
    assert "provider is down" in rt.store.get_run("guard-3").error


class _RefusingStore(MemoryStore):
    """A store that cannot record a finished task (a full disk, say)."""

    def record_call(self, step: StepRecord, values: Mapping[str, bytes]) -> None:
        if step.status == "completed":
            raise OSError("No space left on device")
        super().record_call(step, values)


def test_a_task_omium_cannot_record_stops_the_crew_instead_of_being_carried_past(rt: Runtime) -> None:
    team = onboarding()
    with pytest.raises(OSError, match="No space left"):
        instrument(team.crew).kickoff({"customer": "Ada"}, run_id="full-1", store=_RefusingStore())
    assert team.calls() == {"kyc": 2, "credit": 0, "terms": 0, "email": 0}


def test_a_rolled_back_crew_reruns_only_the_tasks_after_the_checkpoint(rt: Runtime) -> None:
    instrument(onboarding().crew).kickoff({"customer": "Ada"}, run_id="back-1")
    runs.rollback("back-1", "task-1", store=rt.store)  # what `omium rollback back-1 --to task-1` does

    again = onboarding({"terms": [final("Offer: $20,000 at APR 5.9%")]})
    outcome = instrument(again.crew).kickoff({"customer": "Ada"}, run_id="back-1")
    assert outcome.status == "completed"
    assert (outcome.executed, outcome.replayed) == (2, 2)
    assert again.calls() == {"kyc": 0, "credit": 0, "terms": 1, "email": 2}
    assert outcome.result is not None and outcome.result["tasks"][2] == "Offer: $20,000 at APR 5.9%"
    live = [c.name for c in runs.live_checkpoints(rt.store, rt.store.get_run("back-1"))]
    assert live == ["task-0", "task-1", "task-2", "task-3"]
