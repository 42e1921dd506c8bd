"""Failure prediction: prefixes cut where they should, nothing after turn k is read, generic features
with domain plug-ins, calibrated risks, held-out AUROC by group and by source."""

from __future__ import annotations

import inspect
import pickle
import random
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from omium.importers import Step, read_tau_bench
from omium.models import prediction
from omium.models.prediction import (
    MODEL_NAME,
    NUMERIC_NAMES,
    CalibratedRisk,
    StepLike,
    Turn,
    Unit,
    action_text,
    agent_text,
    bootstrap_auroc,
    brier,
    evaluate,
    evaluate_held_out,
    failure_risk,
    feature_names,
    first_turns,
    is_write,
    make_length_baseline,
    make_predictor,
    mask,
    numeric_features,
    unsupported_figures,
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
    text = mask("User mia_li_3668, reservation H9ZU1C, flight HAT039 on May 20th at 3pm for $121, a@b.io.")
    for particular in ("mia_li_3668", "H9ZU1C", "HAT039", "May 20th", "3pm", "$121", "a@b.io"):
        assert particular not in text
    assert "User" in text and "reservation" in text  # the words stay: they say what kind of thing it was
    assert agent_text([[Turn("a", "assistant", "Flight HAT039")]]) == [mask("Flight HAT039")]
    # airports are one domain's particulars: the product leaves them, that domain's plug-in masks them
    assert "JFK" in mask("JFK to SEA") and mask("JFK to SEA", Shop()) == "JFK to SEA"
    assert "JFK" not in mask("JFK to SEA", Places())
    assert "JFK" not in agent_text([[Turn("a", "assistant", "JFK")]], Places())[0]


class Shop:
    """A domain plug-in as a deployment writes one: a web shop's own words."""

    name = "shop"
    feature_names: tuple[str, ...] = ("returns", "coupons")

    def counts(self, prefix: Sequence[StepLike]) -> list[float]:
        said = " ".join(s.content for s in prefix)
        return [len(re.findall(r"\breturn", said, re.I)), len(re.findall(r"coupon", said, re.I))]

    def mask(self, text: str) -> str:
        return text


class Places(Shop):
    """A plug-in that masks three-letter codes (airports)."""

    name = "places"

    def mask(self, text: str) -> str:
        return re.sub(r"\b[A-Z]{3}\b", " place ", text)


class Broken(Shop):
    """A plug-in whose counts do not match its names."""

    def counts(self, prefix: Sequence[StepLike]) -> list[float]:
        return [1.0]


def test_the_product_ships_no_domain_vocabulary() -> None:
    # issue 18: the features that were tau-bench airline's live in benchmarks/prediction_airline.py
    source = inspect.getsource(prediction).lower()
    for word in ("baggage", "cabin", "flight", "airport", "insurance", "###stop###", "passenger", "luggage"):
        assert word not in " ".join(NUMERIC_NAMES), word
        assert word not in source, word


def test_a_domain_plug_in_adds_its_counts_and_pickles() -> None:
    run = [
        Turn("customer", "user", "I want to return these shoes, and use a coupon. Return both?"),
        Turn("shop_agent", "assistant", "Returns are free."),
    ]
    assert feature_names(Shop()) == (*NUMERIC_NAMES, "shop_returns", "shop_coupons")
    rows = numeric_features([run], Shop())
    assert rows.shape == (1, len(NUMERIC_NAMES) + 2)
    assert np.expm1(rows[0, -2:]).round(6).tolist() == [3.0, 1.0]
    assert np.array_equal(rows[:, : len(NUMERIC_NAMES)], numeric_features([run]))  # generic part unchanged
    with pytest.raises(ValueError, match="domain 'shop' gave 1 counts for 2 names"):
        numeric_features([run], Broken())
    rng = random.Random(3)
    labels = [i % 2 for i in range(40)]
    runs = [[Turn("customer", "user", "return " * (1 + y * rng.randint(1, 3))), run[1]] for y in labels]
    model = make_predictor(0, domain=Shop()).fit(runs, labels)
    again = pickle.loads(pickle.dumps(model))
    assert np.array_equal(model.predict_proba(runs), again.predict_proba(runs))
    with_shop = roc_auc_score(labels, model.predict_proba(runs)[:, 1])
    assert with_shop > 0.9


def test_write_tools_are_told_by_their_verbs() -> None:
    for tool in ("update_reservation_flights", "cancel_order", "createInvoice", "send_email", "book"):
        assert is_write(tool), tool
    for tool in ("get_user_details", "search_products", "compute_total", "address_lookup", "lookup"):
        assert not is_write(tool), tool


def test_figures_no_earlier_step_gave_are_counted() -> None:
    run = [
        Turn("customer", "user", "Order 4411 was 120 dollars."),
        Turn("agent_a", "assistant", "Order 4411 cost 120, so with 3 items that is 360."),  # 360: derived
        Turn("tool:lookup", "tool", '{"total": 500}'),
        Turn("agent_b", "assistant", "The total is 500; I will refund 90."),  # 90: from nowhere
    ]
    assert unsupported_figures(run[:2]) == 1  # 360 (3 is under ten: counts are said freely)
    assert unsupported_figures(run) == 2
    names = dict(zip(NUMERIC_NAMES, np.expm1(numeric_features([run])[0]).round(6), strict=True))
    assert (
        names["unsupported_figures"] == 2 and names["distinct_agents"] == 2 and names["agent_switches"] == 1
    )


Tau = tuple[list[tuple[Step, ...]], list[int], list[str]]


@pytest.fixture(scope="module")
def tau() -> Tau:
    runs = read_tau_bench(TAU)
    return [r.steps for r in runs], [int(bool(r.failed)) for r in runs], [r.task_id for r in runs]


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
    assert model["auroc_mean"] > 0.65  # measured 0.71 on generic features only; chance is 0.5
    assert model["auroc_mean"] > length["auroc_mean"] + 0.05  # measured 0.61
    # calibrated out-of-fold risks are more reliable than the training base rate (0.212 vs 0.247)
    assert model["brier_mean"] < model["base_rate_brier_mean"]
    by_message = evaluate(steps, labels, groups, k=4, unit="message", seeds=1)
    assert by_message["auroc_mean"] > 0.58  # measured 0.62 (0.59 over three seeds)
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


def _separable(rng: np.random.Generator, n: int, base_rate: float) -> tuple[list[list[Turn]], list[int]]:
    """Runs whose failures show tool errors (most of the time), at a given base rate."""
    labels = [int(v) for v in rng.random(n) < base_rate]
    runs = []
    for y in labels:
        broken = rng.random() < (0.9 if y else 0.05)
        runs.append(
            [
                Turn("planner", "assistant", "Plan: look it up."),
                Turn("tool:lookup", "tool", "Error: timed out" if broken else '{"value": 42}'),
                Turn("writer", "assistant", "Draft: " + "words " * int(rng.integers(3, 30))),
            ]
        )
    return runs, labels


def test_risks_are_calibrated_on_held_out_runs() -> None:
    rng = np.random.default_rng(0)
    train, y_train = _separable(rng, 300, base_rate=0.2)
    test, y_test = _separable(rng, 300, base_rate=0.2)
    model = make_predictor(0).fit(train, y_train)
    assert isinstance(model, CalibratedRisk) and model.calibrated_
    risks = model.predict_proba(test)[:, 1]
    constant = brier(y_test, np.full(len(y_test), np.mean(y_train)))
    assert brier(y_test, risks) < 0.6 * constant  # reliable, not only well ranked
    # the balanced-class model says about 0.5 for a failure; calibrated, the risk is a frequency
    raw = make_predictor(0, calibrate=False).fit(train, y_train).predict_proba(test)[:, 1]
    assert brier(y_test, risks) < brier(y_test, raw)
    flagged = risks >= 0.5
    assert abs(np.mean(np.asarray(y_test)[flagged]) - np.mean(risks[flagged])) < 0.15
    assert abs(np.mean(risks) - np.mean(y_test)) < 0.05
    # no signal at all: the risk is the base rate, not a coin
    noise = [[Turn("a", "assistant", "same")] for _ in range(200)]
    labels = [int(v) for v in rng.random(200) < 0.2]
    assert (
        abs(make_predictor(0).fit(noise, labels).predict_proba(noise)[:, 1].mean() - np.mean(labels)) < 0.05
    )


def test_too_few_runs_of_a_class_to_calibrate_on() -> None:
    runs = [[Turn("a", "assistant", "ok " * (i + 1))] for i in range(10)]
    model = make_predictor(0).fit(runs, [1] + [0] * 9)
    assert not model.calibrated_ and model.predict_proba(runs).shape == (10, 2)
    with pytest.raises(ValueError, match="both outcomes"):
        make_predictor(0).fit(runs, [0] * 10)


def test_each_source_held_out_with_intervals() -> None:
    rng = np.random.default_rng(1)
    a, y_a = _separable(rng, 80, base_rate=0.5)
    b, y_b = _separable(rng, 80, base_rate=0.3)
    only_failures = [r for r, y in zip(*_separable(rng, 100, 0.5), strict=True) if y][:20]
    runs = [*a, *b, *only_failures]
    labels = [*y_a, *y_b, *[1] * len(only_failures)]
    sources = ["a"] * 80 + ["b"] * 80 + ["c"] * len(only_failures)
    groups = [f"{s}{i // 2}" for i, s in enumerate(sources)]
    rows = {
        r["held_out"]: r
        for r in evaluate_held_out(runs, labels, sources, groups, k=4, seeds=2, resamples=200)
    }
    assert set(rows) == {"a", "b", "c"}
    for name in ("a", "b"):
        row = rows[name]
        assert row["runs"] == 80 and row["training_runs"] == 80 + len(only_failures) and row["seeds"] == 2
        assert row["auroc_mean"] > 0.8 and row["auroc_low"] <= row["auroc_mean"] <= row["auroc_high"] <= 1
        assert row["brier"] < row["base_rate_brier"] and row["note"] == ""
    assert np.isnan(rows["c"]["auroc_mean"]) and "one outcome" in rows["c"]["note"]
    assert rows["c"]["flagged"] > 0.6  # its failures show the same tool errors
    # a source whose training runs hold one outcome gets the base rate, and says so
    alone = evaluate_held_out(
        runs[:80] + only_failures,
        labels[:80] + [1] * 20,
        ["a"] * 80 + ["c"] * 20,
        groups[:80] + groups[160:],
        k=4,
        seeds=1,
        resamples=50,
    )
    assert "training runs hold one outcome" in alone[0]["note"] and alone[0]["auroc_mean"] == 0.5
    with pytest.raises(ValueError, match="same length"):
        evaluate_held_out(runs, labels, sources[:-1], groups, k=4)


def test_one_source_is_refused_with_the_sources_found() -> None:
    """Held out per source needs another source to fit on: one source is a clear error naming it,
    not a row of NaNs from a model fitted on nothing."""
    rng = np.random.default_rng(2)
    runs, labels = _separable(rng, 30, base_rate=0.5)
    with pytest.raises(ValueError) as raised:
        evaluate_held_out(runs, labels, ["omium"] * 30, list(range(30)), k=4, seeds=1)
    message = str(raised.value)
    assert f"omium (30 runs, {sum(labels)} failed)" in message
    assert "at least two sources are needed" in message and "two with both outcomes" in message
    with pytest.raises(ValueError, match="0 source"):
        evaluate_held_out([], [], [], [], k=4)


def test_held_out_hands_back_the_model_of_each_source() -> None:
    """``models`` gets, per source, the model fitted without it (None when its training runs hold
    one outcome); scoring the source's runs with it gives the row's risks."""
    rng = np.random.default_rng(3)
    a, y_a = _separable(rng, 60, base_rate=0.5)
    failures = [r for r, y in zip(*_separable(rng, 60, 0.5), strict=True) if y][:15]
    runs, labels = [*a, *failures], [*y_a, *[1] * len(failures)]
    sources = ["a"] * 60 + ["c"] * len(failures)
    models: dict[str, object] = {}
    rows = evaluate_held_out(
        runs, labels, sources, list(range(len(runs))), k=4, seeds=1, models=models, resamples=20
    )
    assert set(models) == {"a", "c"} and models["a"] is None  # "c" alone holds one outcome
    model = models["c"]
    assert isinstance(model, CalibratedRisk)
    risks = model.predict_proba([first_turns(r, 4) for r in failures])[:, 1]
    assert abs(float(risks.mean()) - {r["held_out"]: r for r in rows}["c"]["mean_risk"]) < 1e-9


def test_cross_fit_folds_are_sources_or_whole_groups() -> None:
    assert prediction.cross_fit_folds(["b", "a", "b", "c"], [1, 2, 3, 4]) == {"a": [1], "b": [0, 2], "c": [3]}
    groups = ["t1", "t1", "t2", "t3", "t2", "t4", "t5", "t3"]
    folds = prediction.cross_fit_folds(["omium"] * len(groups), groups)
    assert list(folds) == ["fold1", "fold2", "fold3"]
    assert sorted(i for f in folds.values() for i in f) == list(range(len(groups)))
    for name, members in folds.items():
        inside = {groups[i] for i in members}
        # a task's trials stay in one fold: none is both scored and trained on
        assert not inside & {g for i, g in enumerate(groups) if i not in members}, name
    assert prediction.cross_fit_folds(["x", "x"], ["g", "g"]) == {"fold1": [0, 1]}
    with pytest.raises(ValueError, match="same length"):
        prediction.cross_fit_folds(["x"], [])


def test_bootstrap_keeps_groups_together() -> None:
    y = np.array([0, 0, 1, 1] * 10)
    perfect = y.astype(float)
    assert bootstrap_auroc(y, perfect, list(range(40)), resamples=100) == (1.0, 1.0)
    low, high = bootstrap_auroc(
        y, np.random.default_rng(0).random(40), [i // 4 for i in range(40)], resamples=300
    )
    assert 0 <= low < 0.5 < high <= 1
    assert all(np.isnan(v) for v in bootstrap_auroc([1, 1], [0.2, 0.3], [0, 1]))
