"""``omium import langgraph MODULE:GRAPH`` reads a real LangGraph workflow and writes a policy that checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from omium.adapters.inspection import inspect_langgraph, load_object
from omium.errors import ConfigError

FLOW = """
from typing import TypedDict
from langgraph.graph import StateGraph, START, END

class State(TypedDict):
    customer: str
    score: int

def kyc(state): return {"customer": state["customer"].strip()}
def scorer(state): return {"score": 720}
def terms(state): return {}
def review(state): return {}

def route(state): return "terms" if state["score"] > 600 else "review"

builder = StateGraph(State)
builder.add_node("kyc", kyc)
builder.add_node("scorer", scorer)
builder.add_node("terms", terms)
builder.add_node("review", review)
builder.add_edge(START, "kyc")
builder.add_edge("kyc", "scorer")
builder.add_conditional_edges("scorer", route, ["terms", "review"])
builder.add_edge("terms", END)
builder.add_edge("review", END)
graph = builder.compile()
"""


@pytest.fixture
def flow(tmp_path: Path) -> Path:
    (tmp_path / "onboarding_flow.py").write_text(FLOW)
    return tmp_path


def test_inspection_reads_agents_routes_and_entry(flow: Path) -> None:
    report = inspect_langgraph(load_object("onboarding_flow:graph", search=flow))
    assert report.agents == ("kyc", "scorer", "terms", "review")
    assert report.entry == ("kyc",)
    routes = {(h.source, h.target, h.conditional) for h in report.handoffs}
    assert routes == {("kyc", "scorer", False), ("scorer", "terms", True), ("scorer", "review", True)}
    assert report.checkpoints == ("after kyc", "after scorer", "after terms", "after review")
    # The uncompiled builder reads the same.
    assert inspect_langgraph(load_object("onboarding_flow:builder", search=flow)).agents == report.agents


def test_bad_specs_say_what_is_wrong(flow: Path) -> None:
    with pytest.raises(ConfigError, match="MODULE:OBJECT"):
        load_object("onboarding_flow", search=flow)
    with pytest.raises(ConfigError, match="cannot import"):
        load_object("no_such_module_here:graph", search=flow)
    with pytest.raises(ConfigError, match="has no 'nope'"):
        load_object("onboarding_flow:nope", search=flow)
    with pytest.raises(ConfigError, match="not a LangGraph"):
        inspect_langgraph(load_object("onboarding_flow:route", search=flow))


def test_cli_writes_a_policy_that_checks(flow: Path) -> None:
    def omium(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "omium.cli.main", *args],
            cwd=flow,
            env=os.environ | {"OMIUM_HOME": str(flow / "home"), "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=120,
        )

    done = omium("import", "langgraph", "onboarding_flow:graph")
    assert done.returncode == 0, done.stderr
    assert "4 agents, entry kyc" in done.stdout and "terms?" in done.stdout and "review?" in done.stdout
    policy = flow / "omium-policy.yaml"
    assert "#   scorer -> terms (conditional)" in policy.read_text()
    assert omium("policy", "check", str(policy)).returncode == 0
    again = omium("import", "langgraph", "onboarding_flow:graph")
    assert again.returncode == 2 and "pass --force" in again.stderr
