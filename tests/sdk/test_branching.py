"""Forks: branch a run at a checkpoint with an edited prompt; the prefix is shared, not re-run."""

from __future__ import annotations

import json

import pytest

import omium
from omium import Checkpoint, agent, tool, workflow
from omium.errors import ConfigError, NotFoundError
from omium.sdk.branching import agent_config, fork, parse_overrides
from omium.sdk.llm import llm_call
from omium.testing import FakeLLM, runtime

scored: list[str] = []


@tool
def credit_score(customer: str) -> int:
    scored.append(customer)
    return 720


@agent(config={"prompt": "Offer terms.", "constraints": {"apr": {"min": 2.5, "max": 8.5}}})
def terms_agent(model: FakeLLM, score: int) -> str:
    config = agent_config()
    return llm_call(
        model,
        [{"role": "system", "content": config["prompt"]}, {"role": "user", "content": f"score {score}"}],
    ).text


@workflow(name="branching_onboarding")
def onboarding(customer: str, model: FakeLLM) -> str:
    with Checkpoint("credit_scored"):
        score = credit_score(customer)
    return terms_agent(model, score)


def test_fork_with_an_edited_prompt() -> None:
    scored.clear()
    model = FakeLLM(lambda messages: "APR 4.9%" if "MUST" in messages[0]["content"] else "APR 0.0%")
    with runtime() as rt:
        assert omium.run(onboarding, "jane", model, run_id="parent") == "APR 0.0%"
        branch = fork(
            "parent",
            "credit_scored",
            overrides={"terms_agent.prompt": "APR MUST be 2.5%-8.5%"},
            new_run_id="branch",
        )
        assert (branch.status, branch.parent_run_id, branch.forked_from) == (
            "paused",
            "parent",
            "credit_scored",
        )
        assert omium.run(onboarding, "jane", model, run_id="branch") == "APR 4.9%"
        assert scored == ["jane"]  # the shared prefix ran once, in the parent
        assert model.calls[-1][0]["content"] == "APR MUST be 2.5%-8.5%"
        # The parent is untouched and both branches can be compared.
        assert omium.run(onboarding, "jane", model, run_id="parent") == "APR 0.0%"
        assert [s.name for s in rt.store.steps("branch")] == ["credit_score", "fake-model"]


def test_only_editable_fields_can_be_overridden() -> None:
    with runtime():
        omium.run(onboarding, "ann", FakeLLM(["APR 3%"]), run_id="p2")
        with pytest.raises(ConfigError, match=r"only prompt, constraints, tool_selection \(or tools\)"):
            fork("p2", "credit_scored", overrides={"terms_agent.core_logic": "x"})
        # An agent the run never ran: an override nothing would read is refused, not "completed".
        with pytest.raises(
            ConfigError, match=r"run 'p2' has no agent 'nosuchagent'; its agents: branching_onboarding, terms_agent"
        ):
            fork("p2", "credit_scored", overrides={"nosuchagent.prompt": "hi"})
        branch = fork("p2", "credit_scored", overrides={"terms_agent.tool_selection": ["lookup"]})
        assert json.loads(branch.attributes["overrides"]) == {"terms_agent.tools": ["lookup"]}
        with pytest.raises(NotFoundError):
            fork("p2", "nope", overrides={})


def test_parse_overrides() -> None:
    assert parse_overrides(["terms_agent.prompt=APR MUST be 2.5%-8.5%", 'kyc.tools=["lookup"]']) == {
        "terms_agent.prompt": "APR MUST be 2.5%-8.5%",
        "kyc.tools": ["lookup"],
    }
    assert parse_overrides(['kyc.tool_selection=["lookup"]']) == {
        "kyc.tools": ["lookup"]
    }  # the policy's name
    with pytest.raises(ConfigError, match=r"AGENT\.FIELD=VALUE"):
        parse_overrides(["prompt"])
    with pytest.raises(ConfigError, match="may be edited"):
        parse_overrides(["kyc.agent_count=3"])
