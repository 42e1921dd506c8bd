"""Two crews at once in one Omium run (each kicked off in a thread of the run), and resumed runs whose
crew diverges from the recording."""

from __future__ import annotations

import time
from typing import Any

import pytest

import omium
from omium.adapters.crewai import TASK_KIND, instrument
from omium.errors import NonDeterminismError
from omium.sdk import serde
from omium.testing import Runtime
from tests.adapters.crewai.onboarding import KYC_CHECK, Onboarding, onboarding

TASKS = ["verify identity", "score credit", "generate terms", "send offer"]


def _two_crews(a: Onboarding, b: Onboarding, *, a_waits: float, b_waits: float) -> Any:
    """A workflow kicking crews A and B off at once, each after waiting the given seconds."""
    flows = [
        instrument(a.crew, name="crew_a", handoffs=[KYC_CHECK]).workflow(),
        instrument(b.crew, name="crew_b", handoffs=[KYC_CHECK]).workflow(),
    ]

    def after(seconds: float, flow: Any, inputs: dict[str, Any]) -> Any:
        time.sleep(seconds)
        return flow(inputs)

    @omium.workflow(name="two_crews")
    def two_crews(inputs: dict[str, Any]) -> list[Any]:
        with omium.ThreadPoolExecutor(2) as pool:  # each submitted crew gets its own place in the run
            started = [
                pool.submit(after, s, f, inputs) for s, f in zip((a_waits, b_waits), flows, strict=True)
            ]
            return [f.result() for f in started]

    return two_crews


def test_two_crews_in_one_run_keep_their_call_ids_and_resume_in_another_order(rt: Runtime) -> None:
    # First execution: crew A gets ahead; crew B's terms model is down.
    first_a, first_b = onboarding(), onboarding({"terms": [RuntimeError("model provider timed out")] * 3})
    with pytest.raises(RuntimeError, match="timed out"):
        omium.run(_two_crews(first_a, first_b, a_waits=0, b_waits=0.3), {"customer": "Ada"}, run_id="pair")
    steps = rt.store.steps("pair")
    first = {s.call_id: (s.name, s.status) for s in steps}
    assert first == {
        **{f"0.{i}": (name, "completed") for i, name in enumerate(TASKS)},
        "1.0": ("verify identity", "completed"),
        "1.1": ("score credit", "completed"),
        "1.2": ("generate terms", "failed"),
    }
    slots = {s.call_id: s.position for s in steps}

    # Resumed with crew B ahead: each crew's finished tasks come back from its own calls.
    again_a, again_b = onboarding(), onboarding()
    result = omium.run(
        _two_crews(again_a, again_b, a_waits=0.3, b_waits=0), {"customer": "Ada"}, run_id="pair"
    )
    assert [r["raw"] for r in result] == ["Email sent to Ada", "Email sent to Ada"]
    assert again_a.calls() == {"kyc": 0, "credit": 0, "terms": 0, "email": 0}
    assert again_b.calls() == {"kyc": 0, "credit": 0, "terms": 1, "email": 2}
    assert again_a.tool_runs() == {"lookup_customer": [], "send_email": []}
    assert again_b.tool_runs() == {"lookup_customer": [], "send_email": ["Ada"]}
    steps = rt.store.steps("pair")
    assert {s.call_id: (s.kind, s.name, s.status) for s in steps} == {
        call_id: (TASK_KIND, name, "completed") for call_id, (name, _) in first.items()
    } | {"1.3": (TASK_KIND, "send offer", "completed")}
    assert {s.call_id: s.position for s in steps if s.call_id in slots} == slots
    # A crew's checkpoints list its own tasks' outputs, never the other crew's.
    last_b = [c for c in rt.store.checkpoints("pair") if c.name == "task-1.3"]
    outputs = serde.loads(rt.store.get_blob(last_b[-1].state_hash))["outputs"]
    assert list(outputs) == ["1.0", "1.1", "1.2", "1.3"]


def test_a_resumed_crew_whose_tasks_changed_raises_naming_the_call(rt: Runtime) -> None:
    team = onboarding({"terms": [RuntimeError("model provider timed out")] * 3})
    with pytest.raises(RuntimeError, match="timed out"):
        instrument(team.crew).kickoff({"customer": "Ada"}, run_id="changed")

    changed = onboarding()
    changed.crew.tasks[1].name = "check fraud"  # the crew now runs another task where credit was scored
    expected = (
        r"call 1 \(position 1\): the recording has crewai\.task 'score credit' by 'credit' there, but this "
        r"execution called crewai\.task 'check fraud'"
    )
    with pytest.raises(NonDeterminismError, match=expected):
        instrument(changed.crew).kickoff({"customer": "Ada"}, run_id="changed")
    # The finished first task was restored, the changed one refused before any model call.
    assert changed.calls() == {"kyc": 0, "credit": 0, "terms": 0, "email": 0}
    assert rt.store.get_run("changed").error.startswith("NonDeterminismError")
