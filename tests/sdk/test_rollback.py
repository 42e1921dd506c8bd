"""Rollback to a checkpoint, a human fix, and resume: before the checkpoint nothing runs again."""

from __future__ import annotations

import pytest

import omium
from omium import Checkpoint, tool, workflow
from omium.errors import NotFoundError
from omium.sdk.llm import llm_call
from omium.sdk.runs import live_checkpoints, rollback
from omium.testing import FakeLLM, runtime

calls: list[str] = []
sent: list[str] = []


@tool
def credit_score(customer: str) -> int:
    calls.append(f"score:{omium.idempotency_key()}")
    return 720


@tool
def send_email(customer: str, terms: str) -> str:
    sent.append(f"{terms} [{omium.idempotency_key()}]")
    return "sent"


class Hallucination(Exception):
    pass


@workflow(name="rollback_onboarding")
def onboarding(customer: str, prompt: str, model: FakeLLM) -> str:
    with Checkpoint("credit_scored"):
        score = credit_score(customer)
    with Checkpoint("terms_generated"):
        terms = llm_call(
            model,
            [{"role": "system", "content": prompt}, {"role": "user", "content": f"terms for score {score}"}],
        ).text
        if "0.0%" in terms:
            raise Hallucination(f"APR outside 2.5%-8.5%: {terms}")
    send_email(customer, terms)
    return terms


def test_rollback_fix_and_resume() -> None:
    calls.clear()
    sent.clear()
    model = FakeLLM(["APR 0.0%", "APR 4.9%"])
    with runtime() as rt:
        with pytest.raises(Hallucination):
            omium.run(onboarding, "jane", "Offer terms.", model, run_id="day5")
        assert rt.store.get_run("day5").status == "failed"
        rolled = rollback("day5", "credit_scored")
        assert (rolled.status, rolled.attributes["rolled_back_to"]) == ("rolled_back", "credit_scored")
        fixed = "Offer terms. APR MUST be 2.5%-8.5%"
        assert omium.run(onboarding, "jane", fixed, model, run_id="day5") == "APR 4.9%"
        assert calls == ["score:day5:0"]  # nothing before the checkpoint ran again
        assert sent == ["APR 4.9% [day5:2:g1]"]  # the email went out once, after the fix
        assert model.calls[1][0]["content"] == fixed
        run = rt.store.get_run("day5")
        assert run.status == "completed"
        assert [c.name for c in live_checkpoints(rt.store, run)] == ["credit_scored", "terms_generated"]


def test_rollback_to_an_unknown_checkpoint() -> None:
    with runtime():
        omium.run(onboarding, "ann", "p", FakeLLM(["APR 3%"]), run_id="ok")
        with pytest.raises(NotFoundError, match="no checkpoint 'nope'"):
            rollback("ok", "nope")
        with pytest.raises(NotFoundError):
            rollback("missing", "credit_scored")
