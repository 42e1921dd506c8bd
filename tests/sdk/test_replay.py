"""Deterministic replay: a recorded run replays identically; a changed step is the first divergence."""

from __future__ import annotations

import pytest

import omium
from omium import Checkpoint, step, tool, workflow
from omium.errors import NotFoundError
from omium.sdk.llm import llm_call
from omium.sdk.replay import replay
from omium.testing import FakeLLM, runtime

effects: list[str] = []


@tool
def fetch(customer: str) -> dict[str, object]:
    effects.append("fetch")
    return {"customer": customer, "income": 80_000}


@step
def score(profile: dict[str, object]) -> int:
    effects.append("score")
    return 300 + int(profile["income"]) // 200  # type: ignore[call-overload]


@step
def score_v2(profile: dict[str, object]) -> int:
    return 999


@workflow(name="replay_onboarding")
def onboarding(customer: str, model: FakeLLM) -> str:
    with Checkpoint("kyc"):
        profile = fetch(customer)
    value = score(profile)
    terms = llm_call(model, [{"role": "user", "content": f"terms for score {value}"}])
    return f"{value}: {terms.text}"


@workflow
def onboarding_changed(customer: str, model: FakeLLM) -> str:
    profile = fetch(customer)
    value = score_v2(profile)
    return str(value)


@workflow
def onboarding_shorter(customer: str, model: FakeLLM) -> str:
    return str(fetch(customer))


def test_replay_is_identical_and_executes_nothing() -> None:
    with runtime() as rt:
        model = FakeLLM(["APR 4.9%"])
        result = omium.run(onboarding, "jane", model, run_id="rec")
        effects.clear()
        report = replay(onboarding, "jane", model, run_id="rec")
        assert report.identical, report.divergence
        assert report.result == result == "700: APR 4.9%"
        assert (report.calls_replayed, report.calls_recorded) == (3, 3)
        assert effects == [] and len(model.calls) == 1  # nothing ran again, the model was not called
        assert len(rt.store.checkpoints("rec")) == 1  # and nothing was written
        assert "identical" in str(report)


def test_a_changed_step_is_the_first_divergence() -> None:
    with runtime():
        omium.run(onboarding, "jane", FakeLLM(["APR 4.9%"]), run_id="rec2")
        report = replay(onboarding_changed, "jane", FakeLLM([]), run_id="rec2")
        assert not report.identical
        assert "position 1" in report.divergence and "score_v2" in report.divergence
        shorter = replay(onboarding_shorter, "jane", FakeLLM([]), run_id="rec2")
        assert not shorter.identical and "without making 2 recorded call(s): 1 (step 'score')" in shorter.divergence


def test_replay_of_an_unknown_run() -> None:
    with runtime(), pytest.raises(NotFoundError):
        replay(onboarding, "x", FakeLLM([]), run_id="nope")


@workflow
def plain(customer: str, bonus: int = 0) -> int:
    return score(fetch(customer)) + bonus


def test_replay_uses_the_recorded_arguments() -> None:
    with runtime():
        omium.run(plain, "jane", bonus=5, run_id="args")
        report = replay(plain, run_id="args")
        assert report.identical and report.result == 705
