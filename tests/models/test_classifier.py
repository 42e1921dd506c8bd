"""The failure classifier's evaluation, per source held out (each source classified by a model fitted
on the others, beside its own majority class), and its cross-fitting: what a run of known class may
be shown comes from a model that never saw the run."""

from __future__ import annotations

import random
from typing import Any

import pytest

from omium.models.classifier import (
    ONE_CLASS_NOTE,
    cross_fit,
    evaluate,
    evaluate_held_out,
    summarise_held_out,
)


def _runs() -> tuple[list[dict[str, float]], list[str]]:
    rng = random.Random(7)
    classes = ["specification"] * 20 + ["tool_invocation"] * 10 + ["state_synchronisation"] * 1
    centre = {"specification": 0.0, "tool_invocation": 3.0, "state_synchronisation": 6.0}
    return [{"signal": centre[c] + rng.gauss(0, 0.3)} for c in classes], classes


def test_each_run_is_classified_by_a_model_fitted_without_it() -> None:
    features, classes = _runs()
    metrics, folds = cross_fit(features, classes)
    assert metrics["evaluated"] and metrics["folds"] == len(folds) == 5
    tested = sorted(i for f in folds for i in f.test)
    assert tested == list(range(len(classes)))  # every run in exactly one fold
    for fold in folds:
        assert not set(fold.train) & set(fold.test)
        assert sorted(fold.train + fold.test) == list(range(len(classes)))
    # The rare classes are spread over the folds, not piled into one: a class of two runs or more
    # lies in two folds or more, so every fold's model saw two classes at least.
    for name in ("specification", "tool_invocation"):
        assert len({n for n, f in enumerate(folds) for i in f.test if classes[i] == name}) >= 2
    # The metrics are the folds' own out-of-fold classes: recomputed from the models handed back.
    predicted = {i: f.model.predict([features[i]])[0] for f in folds for i in f.test}
    right = sum(predicted[i] == c for i, c in enumerate(classes))
    assert metrics["accuracy"] == right / len(classes) == evaluate(features, classes)["accuracy"]
    # The one state_synchronisation run is scored by a model that never saw that class: a miss.
    assert predicted[30] != "state_synchronisation"
    assert metrics["majority_accuracy"] == 20 / 31


def test_nothing_is_evaluated_without_two_classes_of_two_runs() -> None:
    features = [{"signal": float(i)} for i in range(7)]
    metrics, folds = cross_fit(features, ["specification"] * 6 + ["tool_invocation"])
    assert not metrics["evaluated"] and folds == []
    assert "two classes with two runs each" in metrics["reason"]


def _sourced_runs() -> tuple[list[dict[str, float]], list[str], list[str]]:
    """Three sources of two classes told apart by one signal; the third source mostly one class."""
    rng = random.Random(18)
    features, classes, sources = [], [], []
    for source, spec, tool in (("omium", 10, 10), ("tau_bench", 8, 6), ("who_and_when", 9, 1)):
        for name, n, centre in (("specification", spec, 0.0), ("tool_invocation", tool, 3.0)):
            features += [{"signal": centre + rng.gauss(0, 0.3)} for _ in range(n)]
            classes += [name] * n
            sources += [source] * n
    return features, classes, sources


def test_each_source_is_classified_by_a_model_fitted_on_the_others() -> None:
    features, classes, sources = _sourced_runs()
    models: dict[str, object] = {}
    rows = evaluate_held_out(features, classes, sources, models=models)
    assert [r["held_out"] for r in rows] == ["omium", "tau_bench", "who_and_when"] == sorted(models)
    for row in rows:
        mine = [i for i, s in enumerate(sources) if s == row["held_out"]]
        assert row["runs"] == len(mine) and row["training_runs"] == len(classes) - len(mine)
        # The figure is the handed-back model's on this source's runs, which it was not fitted on.
        model: Any = models[row["held_out"]]
        right = sum(model.predict([features[i]])[0] == classes[i] for i in mine)
        assert row["accuracy"] == right / len(mine) and row["note"] == ""
    # Each source's baseline is always naming its own most common class, not the pooled one.
    who = rows[2]
    assert who["classes"] == {"specification": 9, "tool_invocation": 1}
    assert (who["majority_class"], who["majority_accuracy"]) == ("specification", 0.9)
    assert rows[0]["majority_accuracy"] == 0.5 and rows[1]["majority_accuracy"] == 8 / 14
    summary = summarise_held_out(rows)
    assert summary["measurable"] and summary["measured_sources"] == 3 and summary["beats_majority"]


def test_fewer_than_two_sources_is_a_clear_error() -> None:
    features, classes, _ = _sourced_runs()
    with pytest.raises(ValueError, match=r"1 source\(s\).*omium \(44 runs\).*at least two sources"):
        evaluate_held_out(features, classes, ["omium"] * len(classes))
    with pytest.raises(ValueError, match="same length"):
        evaluate_held_out(features, classes, ["omium"])


def test_a_source_whose_others_hold_one_class_is_not_measured() -> None:
    features = [{"signal": float(i % 2)} for i in range(8)]
    classes = ["specification"] * 4 + ["specification", "tool_invocation"] * 2
    sources = ["omium"] * 4 + ["tau_bench"] * 4
    models: dict[str, object] = {}
    rows = {r["held_out"]: r for r in evaluate_held_out(features, classes, sources, models=models)}
    # tau_bench's other source holds one class: no model, no figure, said.
    assert rows["tau_bench"]["accuracy"] is None and rows["tau_bench"]["note"] == ONE_CLASS_NOTE
    assert models["tau_bench"] is None and models["omium"] is not None
    assert rows["omium"]["accuracy"] is not None
    only_unmeasured = summarise_held_out([rows["tau_bench"]])
    assert not only_unmeasured["measurable"] and not only_unmeasured["beats_majority"]
    assert only_unmeasured["why_not"].startswith("not measurable")


def test_one_source_below_its_majority_fails_however_the_others_do() -> None:
    """No pooling: 0.95 on one source does not make up for 0.1 against 0.9 on another."""
    rows: list[dict[str, Any]] = [
        {"held_out": "omium", "accuracy": 0.95, "majority_accuracy": 0.5, "note": ""},
        {"held_out": "tau_bench", "accuracy": 0.1, "majority_accuracy": 0.9, "note": ""},
        {"held_out": "who_and_when", "accuracy": None, "majority_accuracy": 1.0, "note": ONE_CLASS_NOTE},
    ]
    summary = summarise_held_out(rows)
    assert summary["measurable"] and summary["measured_sources"] == 2
    assert not summary["beats_majority"] and summary["worst_source"] == "tau_bench"
    assert summary["worst_margin"] == pytest.approx(-0.8)
    assert summarise_held_out(rows[:1])["beats_majority"]
