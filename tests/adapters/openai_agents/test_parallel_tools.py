"""One turn's tool calls run concurrently: each is recorded once, under its own key and its agent,
and a process killed mid-turn resumes without running a finished call again."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import omium
from omium.adapters.openai_agents import agent_workflow
from omium.sdk import serde
from omium.testing import Runtime
from tests.adapters.openai_agents import parallel

ROOT = Path(__file__).resolve().parents[3]


class ProcessDied(BaseException):
    """Stands for the process dying (no ``except Exception`` stops it, nothing records it)."""


def _tool_steps(rt: Runtime, run_id: str) -> list[tuple[str, str, str]]:
    return [(s.name, s.agent, s.idempotency_key) for s in rt.store.steps(run_id) if s.kind == "tool"]


def test_parallel_tool_calls_are_recorded_once_each_under_their_agent(rt: Runtime, tmp_path: Path) -> None:
    ledger = parallel.Ledger(tmp_path / "ledger.jsonl")
    agent, _ = parallel.booking([parallel.TURN, parallel.ANSWER], ledger)
    result = omium.run(agent_workflow(agent, name="booking"), "book", run_id="parallel")
    assert result == parallel.ANSWER[0].content[0].text  # type: ignore[union-attr]
    tools = _tool_steps(rt, "parallel")
    assert sorted(name for name, _, _ in tools) == [
        "charge_card",
        "reserve_seat",
        "reserve_seat",
        "send_itinerary",
    ]
    assert {agent for _, agent, _ in tools} == {parallel.AGENT}
    keys = [key for _, _, key in tools]
    assert len(set(keys)) == 4
    assert {e["effect"] for e in ledger.effects()} == parallel.EFFECTS
    assert sorted(e["key"] for e in ledger.effects()) == sorted(keys) == sorted(ledger.calls())


def test_call_ids_do_not_depend_on_the_order_tool_calls_finish_in(rt: Runtime, tmp_path: Path) -> None:
    # Random delays finish the calls in another order each time; the recording is the same.
    recordings, orders = [], set()
    for attempt in range(5):
        ledger = parallel.Ledger(tmp_path / f"ledger-{attempt}.jsonl")
        agent, _ = parallel.booking([parallel.TURN, parallel.ANSWER], ledger)
        omium.run(agent_workflow(agent, name="booking"), "book", run_id=f"order-{attempt}")
        steps = rt.store.steps(f"order-{attempt}")
        recordings.append(
            [(s.call_id, s.kind, s.name, serde.loads(rt.store.get_blob(s.output_hash))) for s in steps]
        )
        orders.add(tuple(s.call_id for s in sorted(steps, key=lambda s: s.ended_at) if s.kind == "tool"))
    assert len(orders) > 1  # the calls did finish in different orders
    assert all(recording == recordings[0] for recording in recordings)


def test_a_run_dying_mid_turn_resumes_without_repeating_finished_tool_calls(
    rt: Runtime, tmp_path: Path
) -> None:
    ledger = parallel.Ledger(tmp_path / "ledger.jsonl")

    async def die() -> None:
        await parallel.others_recorded()
        raise ProcessDied("the worker died mid-turn")

    agent, _ = parallel.booking([parallel.TURN, parallel.ANSWER], ledger, hang=die)
    with pytest.raises(ProcessDied):
        omium.run(agent_workflow(agent, name="booking"), "book", run_id="died")
    finished = _tool_steps(rt, "died")
    assert sorted(name for name, _, _ in finished) == ["charge_card", "reserve_seat", "reserve_seat"]
    assert len(ledger.effects()) == 4  # the last call's effect was applied, its result not recorded

    # A new process: agents built again, the model only has the turn that is left.
    agent, model = parallel.booking([parallel.ANSWER], ledger)
    omium.run(agent_workflow(agent, name="booking"), "book", run_id="died")
    assert rt.store.get_run("died").status == "completed" and len(model.calls) == 1
    tools = _tool_steps(rt, "died")
    assert len(tools) == 4 and len({key for _, _, key in tools}) == 4
    assert {agent for _, agent, _ in tools} == {parallel.AGENT}
    # Every effect once; only the call that had not been recorded was made again (same key).
    effects = ledger.effects()
    assert {e["effect"] for e in effects} == parallel.EFFECTS and len(effects) == 4
    calls = Counter(ledger.calls())
    (again,) = [key for key, count in calls.items() if count == 2]
    assert sorted(calls) == sorted(key for _, _, key in tools)
    assert again == next(key for name, _, key in tools if name == parallel.LAST)

    agent, model = parallel.booking([], ledger)
    report = omium.replay(agent_workflow(agent, name="booking"), run_id="died", store=rt.store)
    assert report.identical, report.divergence
    assert report.calls_replayed == 6 and not model.calls and len(ledger.calls()) == 5


@pytest.mark.integration
@pytest.mark.slow
def test_kill_9_mid_turn_then_resume_runs_each_tool_call_once(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"

    def worker(mode: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.adapters.openai_agents.parallel_worker",
                str(tmp_path),
                str(ledger),
                mode,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )

    crashing = worker("crash")
    assert crashing.stdout is not None
    line = crashing.stdout.readline().strip()
    if line != "mid-turn":
        crashing.kill()
        _, err = crashing.communicate(timeout=60)
        pytest.fail(f"the worker did not reach the middle of the turn: {line!r}\n{err}")
    crashing.kill()  # SIGKILL: nothing is flushed, nothing is recorded on the way out
    crashing.communicate(timeout=60)
    assert crashing.returncode == -9
    effects = parallel.Ledger(ledger).effects()
    assert {e["effect"] for e in effects} == parallel.EFFECTS  # all four applied before the kill

    resuming = worker("resume")
    out, err = resuming.communicate(timeout=600)
    assert resuming.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["status"] == "completed"
    assert summary["result"] == parallel.ANSWER[0].content[0].text  # type: ignore[union-attr]
    assert summary["model_calls"] == 1  # the answer; the turn with the tool calls was replayed
    tools = [s for s in summary["steps"] if s["kind"] == "tool"]
    assert len(tools) == 4 and all(s["status"] == "completed" for s in tools)
    assert {s["agent"] for s in tools} == {parallel.AGENT}
    keys = [s["key"] for s in tools]
    assert len(set(keys)) == 4
    effects = parallel.Ledger(ledger).effects()
    assert sorted(e["key"] for e in effects) == sorted(keys), "an effect was applied twice or not at all"
    calls = Counter(parallel.Ledger(ledger).calls())
    assert sorted(calls) == sorted(keys)
    # Only the call killed between its effect and its record ran again, under the same key.
    assert [name for name, count in calls.items() if count > 1] == [
        next(s["key"] for s in tools if s["name"] == parallel.LAST)
    ]
    assert summary["identical"], summary["divergence"]
    assert summary["replayed"] == 6
