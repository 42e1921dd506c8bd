"""Counterfactual verification on real fault-injected SDK runs in the test's control database."""

from __future__ import annotations

import dataclasses
import random
import threading
from typing import Any

import pytest

import omium
from omium.errors import ConfigError, ConflictError, NotFoundError
from omium.models import fault_team
from omium.models.fault_injection import FAULTS
from omium.models.fault_team import TeamScenario
from omium.recovery.counterfactual import Budget, Verification, chain_candidates, root_cause, verify
from omium.recovery.policy import Policy
from omium.recovery.supervisor import supervise
from omium.sdk.store import CheckpointStore
from omium.warehouse.store import EmbeddedStore

WORKFLOWS = {fault_team.WORKFLOW: fault_team.team}


def failed(store: CheckpointStore, fault: str, seed: int = 0, run_id: str = "") -> TeamScenario:
    one = fault_team.scenario(random.Random(seed), run_id or f"cf:{fault}:{seed}", fault)
    assert not fault_team.run(one, store), "an injected fault fails its run"
    assert store.get_run(one.run_id).status == "failed"
    return one


def snapshot(store: CheckpointStore, run_id: str) -> Any:
    run = store.get_run(run_id)
    return (
        run.status,
        run.version,
        run.error,
        run.attributes,
        store.steps(run_id),
        store.checkpoints(run_id),
    )


def fork_id(verification: Verification) -> str:
    line = next(e for e in verification.evidence if e.startswith("forked at"))
    return line.split(" as run ")[1].split(" ")[0]


def first_llm_call(store: CheckpointStore, one: TeamScenario) -> int:
    coordinator = one.roles["coordinator"]
    return min(s.position for s in store.steps(one.run_id) if s.kind == "llm" and s.agent == coordinator)


@pytest.mark.parametrize("fault", FAULTS)
def test_the_injected_culprit_is_verified_and_no_other_step_on_the_chain(
    control_store: EmbeddedStore, fault: str
) -> None:
    one = failed(control_store, fault, seed=FAULTS.index(fault))
    culprit = fault_team.fault_position(control_store.steps(one.run_id), one)
    candidates = chain_candidates(control_store, one.run_id)
    assert culprit in candidates
    results = verify(one.run_id, store=control_store, workflows=WORKFLOWS, budget=Budget(max_forks=20))
    *tried, last = results
    assert last.verified and last.step == culprit and last.agent == one.fault_agent, results
    assert last.forks == 1 and last.calls > 0
    assert "completed: the failure no longer occurs" in last.evidence[-1]
    assert [v.outcome for v in tried] == ["not_verified"] * len(tried)
    assert [v.step for v in results] == candidates[: len(results)]


def test_an_earlier_correct_step_is_not_verified_the_failure_still_occurs(
    control_store: EmbeddedStore,
) -> None:
    one = failed(control_store, "stale_handoff", seed=3)
    culprit = fault_team.fault_position(control_store.steps(one.run_id), one)
    earlier = first_llm_call(control_store, one)
    assert earlier < culprit
    (result,) = verify(one.run_id, [earlier], store=control_store, workflows=WORKFLOWS, samples=3)
    assert result.outcome == "not_verified" and result.forks == 3
    assert "failed again the same way" in result.evidence[-1]
    assert "final_answer_check" in result.evidence[-1]
    # Tried in that order, the culprit after it is still found.
    results = verify(one.run_id, [earlier, culprit], store=control_store, workflows=WORKFLOWS)
    assert [(v.step, v.outcome) for v in results] == [(earlier, "not_verified"), (culprit, "verified")]


def test_a_later_step_that_repairs_the_damage_is_verified_but_the_earliest_verified_is_the_cause(
    control_store: EmbeddedStore,
) -> None:
    # The last agent's re-sample rechecks the record: re-sampling it removes the failure too.
    one = dataclasses.replace(fault_team.scenario(random.Random(3), "cf:repair", "stale_handoff"), repair=1.0)
    assert not fault_team.run(one, control_store)
    culprit = fault_team.fault_position(control_store.steps(one.run_id), one)
    last = max(s.position for s in control_store.steps(one.run_id) if s.kind == "llm")
    assert last > culprit
    first = verify(one.run_id, store=control_store, workflows=WORKFLOWS, budget=Budget(max_forks=20))
    assert [(v.step, v.outcome) for v in first] == [(last, "verified")]  # a repair point, not the cause
    found = verify(
        one.run_id, store=control_store, workflows=WORKFLOWS, budget=Budget(max_forks=20), earliest=True
    )
    cause = root_cause(found)
    assert cause is not None and cause.step == culprit
    assert {v.step for v in found if v.verified} == {last, culprit}
    assert all(v.outcome == "not_verified" for v in found if v.step < culprit)
    # With the budget spent before the earlier candidates were tried, no cause is established.
    short = verify(
        one.run_id, store=control_store, workflows=WORKFLOWS, budget=Budget(max_forks=1), earliest=True
    )
    assert short[0].step == last and short[0].verified and short[1].outcome == "inconclusive"
    assert root_cause(short) is None


def test_the_budget_spent_gives_inconclusive(control_store: EmbeddedStore) -> None:
    one = failed(control_store, "hallucination", seed=7)
    culprit = fault_team.fault_position(control_store.steps(one.run_id), one)
    earlier = first_llm_call(control_store, one)
    forks = verify(
        one.run_id, [earlier, culprit], store=control_store, workflows=WORKFLOWS, budget=Budget(max_forks=1)
    )
    assert [(v.step, v.outcome, v.forks) for v in forks] == [
        (earlier, "not_verified", 1),
        (culprit, "inconclusive", 0),
    ]
    assert "not tried: the budget is spent (1/1 forks" in forks[1].evidence[0]
    (calls,) = verify(
        one.run_id, [culprit], store=control_store, workflows=WORKFLOWS, budget=Budget(max_calls=1)
    )
    assert calls.outcome == "inconclusive" and calls.calls == 1
    assert "the call budget is spent" in calls.evidence[-1]


def test_the_original_run_is_untouched_and_side_effects_stay_in_the_scratch_store(
    control_store: EmbeddedStore,
) -> None:
    one = failed(control_store, "wrong_tool_args", seed=2)
    culprit = fault_team.fault_position(control_store.steps(one.run_id), one)
    before = snapshot(control_store, one.run_id)
    published = control_store.read_state(fault_team.REPORTS, one.run_id)
    assert published is not None and published.version == 1
    (result,) = verify(one.run_id, [culprit], store=control_store, workflows=WORKFLOWS)
    # The re-run published the right answer (it completed past the publish tool and the check) ...
    assert result.verified
    # ... into its scratch store: the real one still holds the original run's answer only.
    after = control_store.read_state(fault_team.REPORTS, one.run_id)
    assert after == published
    assert snapshot(control_store, one.run_id) == before
    with pytest.raises(NotFoundError):
        control_store.get_run(fork_id(result))
    assert "counterfactual" in [e.kind for e in control_store.events(one.run_id)]


def test_an_operator_edit_is_verified_as_the_fix(control_store: EmbeddedStore) -> None:
    one = failed(control_store, "role_violation", seed=5)
    culprit = fault_team.fault_position(control_store.steps(one.run_id), one)
    careful = {f"{one.fault_agent}.prompt": f"{fault_team.CAREFUL}: use what you are handed."}
    (fixed,) = verify(one.run_id, [culprit], store=control_store, workflows=WORKFLOWS, edits=careful)
    assert fixed.verified and any(f"{one.fault_agent}.prompt=" in e for e in fixed.evidence)
    elsewhere = {f"{one.roles['coordinator']}.prompt": careful[f"{one.fault_agent}.prompt"]}
    earlier = first_llm_call(control_store, one)
    (same,) = verify(one.run_id, [earlier], store=control_store, workflows=WORKFLOWS, edits=elsewhere)
    assert same.outcome == "not_verified"


def test_a_run_paused_after_its_failure_is_verified_too(control_store: EmbeddedStore) -> None:
    one = fault_team.scenario(random.Random(11), "cf:paused", "dropped_handoff")
    policy = Policy.from_yaml(
        "rollback_triggers: {policy_violation: true}\nrecovery_actions: {await_human_review: true}\n"
        "retry_policy: {max_retries: 0}"
    )
    outcome = supervise(fault_team.team, one.to_dict(), run_id=one.run_id, policy=policy, store=control_store)
    assert outcome.status == "paused"
    culprit = fault_team.fault_position(control_store.steps(one.run_id), one)
    results = verify(one.run_id, store=control_store, workflows=WORKFLOWS, budget=Budget(max_forks=20))
    assert results[-1].verified and results[-1].step == culprit
    assert control_store.get_run(one.run_id).status == "paused"


def test_two_verifications_at_once_in_threads(control_store: EmbeddedStore) -> None:
    runs = [failed(control_store, "hallucination", seed=21), failed(control_store, "stale_handoff", seed=22)]
    found: dict[str, list[Verification]] = {}
    errors: list[BaseException] = []

    def work(one: TeamScenario) -> None:
        try:
            found[one.run_id] = verify(
                one.run_id, store=control_store, workflows=WORKFLOWS, budget=Budget(max_forks=20)
            )
        except BaseException as error:  # surfaced in the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(one,)) for one in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    for one in runs:
        culprit = fault_team.fault_position(control_store.steps(one.run_id), one)
        results = found[one.run_id]
        assert results[-1].verified and results[-1].step == culprit
        assert all(v.outcome == "not_verified" for v in results[:-1])


def test_clear_errors(control_store: EmbeddedStore) -> None:
    with pytest.raises(NotFoundError):
        verify("no-such-run", store=control_store, workflows=WORKFLOWS)
    one = failed(control_store, "premature_termination", seed=4)
    with pytest.raises(NotFoundError, match="no completed call at step 999"):
        verify(one.run_id, [999], store=control_store, workflows=WORKFLOWS)
    with pytest.raises(NotFoundError, match="is not defined here"):
        verify(one.run_id, store=control_store, workflows={})
    fine = fault_team.scenario(random.Random(4), "cf:fine", "hallucination")
    omium.run(lambda: "ok", run_id=fine.run_id, store=control_store)
    with pytest.raises(ConflictError, match="is completed"):
        verify(fine.run_id, store=control_store, workflows=WORKFLOWS)
    with pytest.raises(ConfigError, match="only prompt, constraints"):
        verify(one.run_id, store=control_store, workflows=WORKFLOWS, edits={f"{one.fault_agent}.model": "x"})
