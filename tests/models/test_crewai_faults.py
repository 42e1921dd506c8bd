"""CrewAI's fault-injected runs, generated in CrewAI's own venv, carry the fault where the label says."""

from __future__ import annotations

from pathlib import Path

import pytest

from omium.models import fault_injection as fi
from omium.models.crewai_faults import generate_in

PYTHON = Path(__file__).resolve().parents[2] / ".venv-crewai" / "bin" / "python"


@pytest.mark.skipif(not PYTHON.exists(), reason="CrewAI's venv (.venv-crewai) is not made")
def test_crewai_runs_are_labelled_on_their_spans() -> None:
    count = len(fi.FAULTS)
    runs = generate_in(PYTHON, count, seed=2)
    scenarios = {s.run_id: s for s in fi.scenarios(200, count, f"fault:{fi.CREWAI}")}
    assert sorted(r["run_id"] for r in runs) == sorted(scenarios)
    for run in runs:
        one = scenarios[run["run_id"]]
        steps, mistake = run["steps"], run["mistake"]
        assert run["framework"] == fi.CREWAI and run["agent"] == one.fault_agent
        assert steps[mistake].agent == one.fault_agent and one.fault_text in steps[mistake].content
        assert not any(one.fault_text in s.content for i, s in enumerate(steps) if i != mistake)
        assert {s.agent for s in steps} <= set(one.roles.values())
