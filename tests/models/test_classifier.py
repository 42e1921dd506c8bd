"""The failure classifier's cross-fitting: out-of-fold classes are its evaluation and what a run of
known class may be shown, each from a model that never saw the run."""

from __future__ import annotations

import random

from omium.models.classifier import cross_fit, evaluate


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
