"""The user's "Day 5" end to end, on the embedded warehouse (the real engine).

The terms generator hallucinates 0% APR -> the post-condition fails -> the run is rolled back to
the credit-score checkpoint -> paused -> the webhook arrives -> the prompt is edited -> the test
fix passes -> retry from the checkpoint -> the run completes; the email is sent exactly once and
no step before the checkpoint runs again.
"""

from __future__ import annotations

import json

import pytest

from omium.errors import ConflictError, EditRefused
from omium.examples.company_x import workflow as company_x
from omium.recovery import incidents, resume, review, supervise, test_fix
from omium.sdk import runs
from omium.warehouse import ClickHouseWarehouse
from omium.warehouse.store import EmbeddedStore
from tests.recovery.conftest import Receiver


def no_sleep(seconds: float) -> None:
    assert 1.0 <= seconds <= 10.0 * 1.2  # the policy's exponential(1s, 10s) with jitter


def test_day_5(warehouse: ClickHouseWarehouse, control_store: EmbeddedStore, webhook: Receiver) -> None:
    store = control_store
    company_x.seed_customer(store, "c-5")
    outcome = supervise(company_x.onboard_customer, "c-5", "hallucination", run_id="day5", store=store,
                        sleep=no_sleep)  # fmt: skip

    # Caught at the guard, retried once (same failure twice stops retrying), paused for review.
    assert outcome.status == "paused"
    assert outcome.failure is not None and outcome.failure.trigger == "policy_violation"
    assert outcome.failure.step == "apr_in_range" and outcome.failure.agent == "terms_generator"
    assert outcome.checkpoint == "credit_scored" and outcome.retries == 1
    run = store.get_run("day5")
    assert run.status == "paused" and run.attributes["awaiting"] == "review"
    assert company_x.WORLD.send_attempts["c-5"] == 0  # nothing was sent

    # The webhook: Slack-compatible, with the run, the failure, the evidence and a console link.
    (note,) = webhook.received
    assert "day5" in note["text"] and note["blocks"][0]["type"] == "header"
    assert note["omium"]["evidence"]["apr"] == 0.0
    assert note["omium"]["checkpoint"] == "credit_scored"
    assert note["omium"]["link"].endswith("/?run=day5")

    # Forbidden and not-allowed edits are refused with the reason; nothing changes.
    with pytest.raises(EditRefused, match="'core_logic' is a forbidden edit"):
        review("day5", "edit", edits={"terms_generator.core_logic": "x"}, store=store)
    with pytest.raises(EditRefused, match="not an allowed edit"):
        review("day5", "edit", edits={"terms_generator.model": "gpt-9"}, store=store)
    assert "overrides" not in store.get_run("day5").attributes

    # Test the fix: the failed step alone, nothing committed.
    steps_before = store.steps("day5")
    assert not test_fix("day5", store=store).passed  # the old prompt still hallucinates
    fix = {"terms_generator.prompt": company_x.FIXED_PROMPT}
    checked = test_fix("day5", fix, store=store)
    assert checked.passed, checked.message
    assert store.steps("day5") == steps_before and store.get_run("day5").status == "paused"
    assert company_x.WORLD.send_attempts["c-5"] == 0

    # Retry from the checkpoint with the edit.
    review(
        "day5", "approve", edits=fix, reviewer="alice", reason="APR range stated in the prompt", store=store
    )
    with pytest.raises(ConflictError):  # a run is reviewed once
        review("day5", "approve", store=store)
    executed_before = {s.position: s.ended_at for s in store.steps("day5")}
    done = resume("day5", store=store, sleep=no_sleep)
    assert done.status == "completed"
    assert store.get_run("day5").status == "completed"

    # Exactly one email, with sane terms; nothing before the checkpoint ran again.
    (email,) = company_x.WORLD.emails_to("c-5")
    assert "0% APR" not in email["body"] and company_x.WORLD.send_attempts["c-5"] == 1
    checkpoint = [
        c for c in runs.live_checkpoints(store, store.get_run("day5")) if c.name == "credit_scored"
    ][-1]
    for step in store.steps("day5"):
        if step.position < checkpoint.step_index:
            assert step.ended_at == executed_before[step.position], f"position {step.position} ran again"

    # The incident's timeline, queryable from the warehouse.
    (incident,) = incidents(store, "day5")
    stages = incident.stages
    for stage in ("detected", "rolled_back", "retried", "paused", "notified", "edit_refused", "test_fix",
                  "edited", "reviewed", "resumed", "completed"):  # fmt: skip
        assert stage in stages, (stage, stages)
    order = [
        stages.index(s) for s in ("detected", "rolled_back", "paused", "reviewed", "resumed", "completed")
    ]
    assert order == sorted(order)
    edited = next(e for e in incident.events if e.kind == "edited")
    assert (
        edited.actor == "alice"
        and json.loads(edited.after)["terms_generator.prompt"] == company_x.FIXED_PROMPT
    )
    control_store.ship()  # the analytical copy has it all
    rows = warehouse.query_rows(
        "SELECT kind FROM omium_events FINAL WHERE run_id = {r:String} ORDER BY ts", {"r": "day5"}
    )
    assert [r["kind"] for r in rows] == stages
