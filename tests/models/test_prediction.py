"""Failure prediction: prefixes cut where they should, nothing after turn k is read, held-out AUROC."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from omium.importers import Step, read_tau_bench
from omium.models.prediction import (
    MODEL_NAME,
    NUMERIC_NAMES,
    Turn,
    Unit,
    action_text,
    agent_text,
    evaluate,
    failure_risk,
    first_turns,
    make_length_baseline,
    make_predictor,
    mask,
    numeric_features,
)

TAU = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "tau_bench" / "gpt-4o-airline.json"
CALL = (
    '[{"function": {"name": "get_reservation_details", "arguments": "{\\"reservation_id\\": \\"ABC123\\"}"}}]'
)
WRITE = '[{"function": {"name": "cancel_reservation", "arguments": "{\\"reservation_id\\": \\"ABC123\\"}"}}]'

RUN = [
    Turn("system", "system", "You are an airline agent."),
    Turn("customer", "user", "Hi, I want to cancel reservation ABC123."),  # exchange 1, message 1
    Turn("airline_agent", "assistant", "", CALL),  # message 2
    Turn("tool:get_reservation_details", "tool", '{"reservation_id": "ABC123", "cabin": "economy"}'),  # 3
    Turn("airline_agent", "assistant", "Found it. Shall I proceed? (yes)"),  # 4
    Turn("customer", "user", "Yes please."),  # exchange 2, message 5
    Turn("airline_agent", "assistant", "", WRITE),  # 6
    Turn("tool:cancel_reservation", "tool", '{"status": "cancelled"}'),  # 7
    Turn("airline_agent", "assistant", "Done."),  # 8
    Turn("customer", "user", "Thanks! ###STOP###"),  # exchange 3, message 9
]


def test_message_turns_are_the_messages_after_the_system_prompt() -> None:
    assert first_turns(RUN, 0, "message") == []
    assert first_turns(RUN, 1, "message") == [RUN[1]]
    assert first_turns(RUN, 4, "message") == RUN[1:5]
    assert first_turns(RUN, 8, "message") == RUN[1:9]
    assert first_turns(RUN, 100, "message") == RUN[1:]  # fewer turns than k: the whole run


def test_exchange_turns_run_from_one_customer_message_to_the_next() -> None:
    assert first_turns(RUN, 0, "exchange") == []
    assert first_turns(RUN, 1, "exchange") == RUN[1:5]  # the customer, the call, its result, the reply
    assert first_turns(RUN, 2, "exchange") == RUN[1:9]  # stops before the third customer message
    assert first_turns(RUN, 3, "exchange") == RUN[1:]
    assert first_turns(RUN, 4, "exchange") == RUN[1:]
    greeting = [RUN[0], Turn("airline_agent", "assistant", "Hello! How can I help?"), *RUN[1:]]
    assert first_turns(greeting, 1, "exchange") == greeting[1:6]  # a greeting belongs to exchange 1


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="unit"):
        first_turns(RUN, 2, "turn")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k must be"):
        first_turns(RUN, -1)


def test_runs_without_a_customer_fall_back_to_messages() -> None:
    run = [
        Turn("Planner", "assistant", "Plan: step 1, search."),
        Turn("Coder", "assistant", "print(1)"),
        Turn("Computer_terminal", "tool", "exitcode: 1 Traceback"),
        Turn("Coder", "assistant", "Fixed."),
    ]
    assert first_turns(run, 2, "exchange") == run[:2]
    assert first_turns(run, 2, "exchange") == first_turns(run, 2, "message")


def test_importer_steps_work_as_turns() -> None:
    steps = tuple(Step(t.agent, t.role, t.content, t.tool_calls) for t in RUN)
    assert first_turns(steps, 1) == list(steps[1:5])
    rows = numeric_features([first_turns(steps, 2)])
    assert rows.shape == (1, len(NUMERIC_NAMES))
    values = dict(zip(NUMERIC_NAMES, np.expm1(rows[0]).round(6), strict=True))
    assert values["customer_messages"] == 2 and values["tool_calls"] == 2
    assert values["write_calls"] == 1 and values["wrote_already"] == 1 and values["ended"] == 0
    assert "call_cancel_reservation" in action_text([first_turns(steps, 2)])[0]
    assert "call_cancel_reservation" not in action_text([first_turns(steps, 1)])[0]


def test_masking_hides_the_particulars_of_a_case() -> None:
    text = mask("User mia_li_3668, reservation H9ZU1C, flight HAT039 JFK to SEA on May 20th at 3pm for $121.")
    for particular in ("mia_li_3668", "H9ZU1C", "HAT039", "JFK", "SEA", "May 20th", "3pm", "$121"):
        assert particular not in text
    assert agent_text([[Turn("a", "assistant", "Flight HAT039")]]) == [mask("Flight HAT039")]


Tau = tuple[list[tuple[Step, ...]], list[int], list[str]]


@pytest.fixture(scope="module")
def tau() -> Tau:
    runs = read_tau_bench(TAU)
    return [r.steps for r in runs], [int(r.failed) for r in runs], [r.task_id for r in runs]


@pytest.mark.parametrize("unit", ["exchange", "message"])
@pytest.mark.parametrize("text", [False, True])
def test_nothing_after_turn_k_changes_the_prediction(tau: Tau, unit: Unit, text: bool) -> None:
    steps, labels, _ = tau
    k = 4
    model = make_predictor(0, text=text).fit([first_turns(s, k, unit) for s in steps[:150]], labels[:150])
    checked = moved = 0
    for run in steps[150:]:
        cut = len(first_turns(run, k, unit)) + 1  # +1: the system prompt
        tell = Step("customer", "user", "###STOP### refund cancel transfer error $999 HAT001 ABC123 JFK")
        # the same words inside the first k turns do change the prediction: the model reads its turns
        second = run[2]
        inside = [*run[:2], Step(second.agent, second.role, f"{tell.content} {second.content}"), *run[3:]]
        moved += failure_risk(model, inside, k, unit) != failure_risk(model, run, k, unit)
        if cut == len(run):
            continue  # the run ended within k turns: there is no "after" to tamper with
        checked += 1
        # the tell-tale customer message replaces the first step after the prefix, which is (for
        # exchanges) the customer message that opens exchange k+1
        tampered = [
            *run[:cut],
            tell,
            *(Step(s.agent, s.role, s.content[::-1] + " error unfortunately", WRITE) for s in run[cut + 1 :]),
        ]
        assert first_turns(tampered, k, unit) == first_turns(run, k, unit)
        assert failure_risk(model, tampered, k, unit) == failure_risk(model, run, k, unit)
    assert checked > 30 and moved > 0.9 * len(steps[150:])


def test_grouped_cross_validated_auroc_beats_chance_and_length(tau: Tau) -> None:
    steps, labels, groups = tau
    model = evaluate(steps, labels, groups, k=4, unit="exchange", seeds=1)
    length = evaluate(steps, labels, groups, k=4, unit="exchange", seeds=1, make=make_length_baseline)
    assert model["runs"] == 200 and model["groups"] == 50
    assert model["auroc_mean"] > 0.65  # measured 0.73; chance is 0.5
    assert model["auroc_mean"] > length["auroc_mean"] + 0.05  # measured 0.60
    by_message = evaluate(steps, labels, groups, k=4, unit="message", seeds=1)
    assert by_message["auroc_mean"] > 0.6  # measured 0.67
    assert by_message["finished"] == 0  # no run ends within four messages


def test_the_fitted_model_pickles(tau: Tau) -> None:
    steps, labels, _ = tau
    prefixes = [first_turns(s, 4) for s in steps]
    for text in (False, True):
        model = make_predictor(0, text=text).fit(prefixes[:160], labels[:160])
        again = pickle.loads(pickle.dumps(model))
        assert np.array_equal(model.predict_proba(prefixes[160:]), again.predict_proba(prefixes[160:]))
    assert MODEL_NAME == "failure_predictor"


def _generic_run(rng: random.Random, fails: bool) -> list[Turn]:
    agents = ["Planner", "Coder", "Verifier", "Computer_terminal"]
    run = [Turn("system", "system", "Solve the task.")]
    for i in range(rng.randint(3, 8)):
        agent = agents[i % len(agents)]
        if agent == "Computer_terminal":
            out = "exitcode: 1 Traceback: error" if fails and rng.random() < 0.8 else "exitcode: 0 42"
            run.append(Turn(agent, "tool", out))
        else:
            run.append(Turn(agent, "assistant", rng.choice(["Plan: step 1", "print(1)", "Verified: 42"])))
    return run


def test_generic_multi_agent_runs_without_a_customer() -> None:
    rng = random.Random(0)
    labels = [i % 2 for i in range(60)]
    runs = [_generic_run(rng, bool(y)) for y in labels]
    prefixes = [first_turns(r, 4, "exchange") for r in runs]
    assert all(p == first_turns(r, 4, "message") for p, r in zip(prefixes, runs, strict=True))
    for text in (False, True):
        scores = make_predictor(0, text=text).fit(prefixes, labels).predict_proba(prefixes)[:, 1]
        assert np.all((scores >= 0) & (scores <= 1)) and np.all(np.isfinite(scores))
        assert roc_auc_score(labels, scores) > 0.6  # tool errors are learnt as a risk
    held_out = evaluate(runs, labels, [i // 3 for i in range(60)], k=4, unit="exchange", seeds=1)
    assert held_out["auroc_mean"] > 0.6 and held_out["groups"] == 20
