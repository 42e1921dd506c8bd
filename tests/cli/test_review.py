"""``omium review`` records decisions through omium.recovery.review, for any run waiting for one:
an Agents SDK tool approval rejected from the command line is reported to the model, which goes on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

import omium
from omium.adapters.openai_agents import agent_workflow, instrument, pending_approval, uninstrument
from omium.cli.main import app
from omium.errors import ApprovalRequired, ConflictError
from omium.sdk import runs
from omium.testing import Runtime, runtime
from tests.adapters.openai_agents import flows

runner = CliRunner()


@pytest.fixture
def rt(monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """An in-memory store, which the command opens too (instead of the embedded warehouse); the
    SDK's traces go to Omium (not to OpenAI)."""
    flows.executed.clear()
    instrument()
    with runtime() as test_runtime:
        monkeypatch.setattr(runs, "init", lambda: test_runtime.store)
        yield test_runtime
    uninstrument()


def _paused(run_id: str) -> None:
    triage, _ = flows.support([flows.HANDOFF, flows.LOOKUP, flows.REFUND], with_refund=True)
    with pytest.raises(ApprovalRequired):
        omium.run(agent_workflow(triage, name="refunds"), "refund Jane", run_id=run_id)
    assert pending_approval(run_id, store=runs.default_store()) is not None


def test_rejecting_a_tool_call_queues_the_run_to_carry_on_without_it(rt: Runtime) -> None:
    _paused("cli-refund-1")
    done = runner.invoke(
        app, ["review", "cli-refund-1", "--reject", "--reason", "refunds need a manager", "--reviewer", "ann"]
    )
    assert done.exit_code == 0, done.output
    assert "rejected and queued to resume" in done.output
    assert rt.store.get_run("cli-refund-1").status == "queued"
    assert [c.kind for c in rt.store.commands("cli-refund-1")] == ["resume"]
    (reviewed,) = [e for e in rt.store.events("cli-refund-1") if e.kind == "reviewed"]
    assert (reviewed.actor, reviewed.reason, reviewed.attributes["decision"]) == (
        "ann",
        "refunds need a manager",
        "reject",
    )
    # What a worker does with the command: run it again; the model hears why and carries on.
    triage, model = flows.support([flows.ANSWER], with_refund=True)
    omium.run(agent_workflow(triage, name="refunds"), "refund Jane", run_id="cli-refund-1")
    assert flows.executed == {"lookup_account": 1}
    outputs = [
        i for i in model.calls[0].input if isinstance(i, dict) and i.get("type") == "function_call_output"
    ]
    assert "refunds need a manager" in str(outputs[-1]["output"])


def test_approving_a_tool_call_queues_the_run_and_a_second_decision_is_refused(rt: Runtime) -> None:
    _paused("cli-refund-2")
    done = runner.invoke(app, ["review", "cli-refund-2", "--approve"])
    assert done.exit_code == 0, done.output
    assert "approved and queued to resume" in done.output
    assert [c.kind for c in rt.store.commands("cli-refund-2")] == ["resume"]
    again = runner.invoke(app, ["review", "cli-refund-2", "--reject", "--reason", "changed my mind"])
    assert isinstance(again.exception, ConflictError)  # main() shows it as one line, exit code 2
    assert "not paused awaiting review nor stopped at a gate" in str(again.exception)
    triage, _ = flows.support([flows.ANSWER], with_refund=True)
    omium.run(agent_workflow(triage, name="refunds"), "refund Jane", run_id="cli-refund-2")
    assert flows.executed == {"lookup_account": 1, "refund": 1}
