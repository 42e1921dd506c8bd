"""``omium import crewai MODULE:CREW`` reads a real crew (never kicking it off) and writes a policy that checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from omium.adapters.inspection import inspect_crewai, load_object
from omium.errors import ConfigError

CREWS = """
from crewai import Agent, Crew, Process, Task
from crewai.tasks.conditional_task import ConditionalTask
from omium.adapters.crewai.testing import ScriptedLLM

def agent(role):
    return Agent(role=role, goal=role, backstory=role, llm=ScriptedLLM(model=role, script=[]))

kyc, credit, terms, email = (agent(r) for r in ("kyc", "credit", "terms", "email"))
verify = Task(name="verify identity", description="Verify the customer.", expected_output="ok", agent=kyc)
score = Task(name="score credit", description="Score them.", expected_output="a score", agent=credit)
offer = ConditionalTask(
    name="generate terms", description="Write terms.", expected_output="terms", agent=terms,
    condition=lambda output: "approve" in output.raw,
)
send = Task(
    name="send offer", description="Email the offer.", expected_output="sent", agent=email,
    context=[verify, offer], human_input=True,
)
crew = Crew(name="onboarding", agents=[kyc, credit, terms, email], tasks=[verify, score, offer, send])

manager = agent("manager")
tasks = [Task(description="Research the market.", expected_output="notes"), Task(description="Write it up.", expected_output="a memo")]
hierarchical = Crew(agents=[kyc, credit], tasks=tasks, process=Process.hierarchical, manager_agent=manager)
"""


@pytest.fixture
def crews(tmp_path: Path) -> Path:
    (tmp_path / "onboarding_crew.py").write_text(CREWS)
    return tmp_path


def test_a_sequential_crew_reads_as_tasks_handoffs_and_gates(crews: Path) -> None:
    report = inspect_crewai(load_object("onboarding_crew:crew", search=crews))
    assert (report.framework, report.name) == ("crewai", "onboarding")
    assert report.agents == ("kyc", "credit", "terms", "email")
    assert report.entry == ("kyc",)
    assert {(h.source, h.target, h.conditional) for h in report.handoffs} == {
        ("kyc", "credit", False),
        ("credit", "terms", True),  # a ConditionalTask may not run
        ("terms", "email", False),
        ("kyc", "email", False),  # named in send's context
    }
    assert report.step_rows() == (
        ("after task 'verify identity'", "kyc"),
        ("after task 'score credit'", "credit"),
        ("after task 'generate terms'", "terms"),
        ("after task 'send offer'", "email"),
    )
    assert report.reviews == ("before email",)


def test_a_hierarchical_crew_hands_off_from_its_manager(crews: Path) -> None:
    report = inspect_crewai(load_object("onboarding_crew:hierarchical", search=crews))
    assert report.entry == ("manager",) and report.agents[0] == "manager"
    assert {(h.source, h.target, h.conditional) for h in report.handoffs} == {
        ("manager", "kyc", True),
        ("manager", "credit", True),
    }
    assert [agent for _, agent in report.step_rows()] == ["manager", "manager"]


def test_what_is_not_a_crew_is_refused(crews: Path) -> None:
    with pytest.raises(ConfigError, match="not a CrewAI Crew"):
        inspect_crewai(load_object("onboarding_crew:kyc", search=crews))


def test_cli_writes_a_policy_that_checks(crews: Path) -> None:
    def omium(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "omium.cli.main", *args],
            cwd=crews,
            env=os.environ | {"OMIUM_HOME": str(crews / "home"), "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=120,
        )

    done = omium("import", "crewai", "onboarding_crew:crew", "--policy", "crew-policy.yaml")
    assert done.returncode == 0, done.stderr
    assert "4 agents, entry kyc" in done.stdout
    assert "after task 'generate terms'" in done.stdout and "terms?" in done.stdout
    assert "review gates suggested: before email" in done.stdout
    policy = crews / "crew-policy.yaml"
    text = policy.read_text()
    assert "#   credit -> terms (conditional)" in text and "# Review gates suggested" in text
    assert omium("policy", "check", str(policy)).returncode == 0
    again = omium("import", "crewai", "onboarding_crew:crew", "--policy", "crew-policy.yaml")
    assert again.returncode == 2 and "pass --force" in again.stderr
