"""Failure classifier: which class of the taxonomy a failed run's failure belongs to.

It learns from failed runs whose class is known (runtime triggers, reviews, annotated reasons)
and names the class of those whose class is not (a run that simply ended in error, an imported
run labelled only by its outcome). Inputs are the run-feature maps the pipelines build, so the
classifier reads retries, hand-off verdicts, tool errors and the text of a run alike for live
and imported runs. Its quality is measured per source held out (:func:`evaluate_held_out`), each
source beside always naming its own most common class; nothing pools the sources.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MODEL_NAME = "failure_classifier"


def make_classifier(seed: int = 0) -> Any:
    """An unfitted pipeline: feature maps -> scaled vectors -> balanced logistic regression."""
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        DictVectorizer(sparse=False),
        StandardScaler(),
        LogisticRegression(max_iter=2000, class_weight="balanced", C=0.5, random_state=seed),
    )


@dataclass(frozen=True)
class Fold:
    """One cross-fitting fold: a model fitted on the runs outside it, and which runs those are.

    ``train`` and ``test`` index the features the folds were made from; the model classifies the
    ``test`` runs, which it never saw.
    """

    model: Any
    train: list[int]
    test: list[int]


def _deal(classes: Sequence[str], k: int, seed: int) -> np.ndarray:
    """A fold number per run: each class's runs shuffled and dealt round the ``k`` folds in turn,
    the deal running on from one class to the next, so a class of two runs or more lies in two
    folds or more and the rare classes spread over the folds instead of piling into the first."""
    rng = np.random.RandomState(seed)
    fold = np.zeros(len(classes), dtype=int)
    position = 0
    for name in sorted(set(classes)):
        members = [i for i, c in enumerate(classes) if c == name]
        for i in rng.permutation(members):
            fold[i] = position % k
            position += 1
    return fold


def cross_fit(
    features: Sequence[Mapping[str, float]], classes: Sequence[str], seed: int = 0
) -> tuple[dict[str, Any], list[Fold]]:
    """Held-out macro-F1 and accuracy, and the fitted model of each fold they were measured with.

    Stratified k-fold (:func:`_deal`; k is at most 5 and at most the runs of the second most common
    class): each fold's runs are classified by a model fitted on the other folds, so the
    out-of-fold classes are what a run of known class may be shown (never its own label) when the
    sources cannot provide the folds (one source). The figures are within that one source, so not
    the product's evaluation: :func:`evaluate_held_out` is. A class of one run is held out like
    the others and counts as a miss unless named (no model that classifies it saw it). Two classes
    of two runs or more are needed (each fold's complement then holds both); otherwise nothing is
    evaluated and there are no folds.
    """
    from sklearn.base import clone
    from sklearn.metrics import accuracy_score, f1_score

    counts = Counter(classes)
    common = counts.most_common(2)
    k = min(5, common[1][1]) if len(common) == 2 else 0
    if k < 2:
        return {"evaluated": False, "reason": f"need two classes with two runs each, have {dict(counts)}"}, []
    x, y = list(features), np.array(classes)
    fold_of = _deal(list(classes), k, seed)
    predicted = np.empty(len(y), dtype=object)
    folds: list[Fold] = []
    for number in range(k):
        test = np.flatnonzero(fold_of == number)
        train = np.flatnonzero(fold_of != number)
        model = clone(make_classifier(seed)).fit([x[i] for i in train], y[train])
        predicted[test] = model.predict([x[i] for i in test])
        folds.append(Fold(model, train.tolist(), test.tolist()))
    majority = common[0][1] / len(classes)
    metrics = {
        "evaluated": True,
        "folds": k,
        "macro_f1": float(f1_score(y, predicted.astype(str), average="macro")),
        "accuracy": float(accuracy_score(y, predicted.astype(str))),
        "majority_accuracy": float(majority),
        "classes": dict(counts),
    }
    return metrics, folds


def evaluate(
    features: Sequence[Mapping[str, float]], classes: Sequence[str], seed: int = 0
) -> dict[str, Any]:
    """Macro-F1 and accuracy out of stratified folds (see :func:`cross_fit`); within one source,
    so not the figure the product stores (:func:`evaluate_held_out` is)."""
    return cross_fit(features, classes, seed)[0]


ONE_CLASS_NOTE = "training runs hold one class: no classifier fitted, not measured"


def _too_few_sources(sources: Sequence[str]) -> str:
    counts = Counter(sources)
    found = ", ".join(f"{name} ({n} runs)" for name, n in sorted(counts.items()))
    return (
        f"{len(counts)} source(s) of failed runs of known class ({found or 'none'}): a held-out "
        "evaluation classifies each source by a model fitted on the other sources, so at least two "
        "sources with labelled classes are needed"
    )


def evaluate_held_out(
    features: Sequence[Mapping[str, float]],
    classes: Sequence[str],
    sources: Sequence[str],
    seed: int = 0,
    models: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Each source left out in turn: a classifier fitted on the other sources classifies its runs.

    ``sources[i]`` names the source of run i (``who_and_when``, ``tau_bench``, ``omium`` for live
    runs), as the failure predictor groups runs. Returns a row per source: ``held_out``, ``runs``,
    ``classes`` (its runs per class), ``training_runs``, ``accuracy`` and ``macro_f1`` of the model
    fitted without it, ``majority_class`` and ``majority_accuracy`` (always naming the source's own
    most common class, the baseline to beat) and ``training_majority_accuracy`` (always naming the
    other sources' most common class). A source whose other sources hold one class has no model:
    its ``accuracy`` and ``macro_f1`` are None and ``note`` says so (it is not measured).

    ``models``, when given, receives each source's model under the source's name (None when it has
    none): the model that never saw that source's runs, which may classify them (cross-fitting).

    Raises:
        ValueError: the inputs differ in length, or fewer than two sources hold runs (nothing is
            left to fit on when the only one is held out); the message names the sources found.
    """
    from sklearn.base import clone
    from sklearn.metrics import accuracy_score, f1_score

    if not len(features) == len(classes) == len(sources):
        raise ValueError("features, classes and sources must have the same length")
    source = np.asarray([str(s) for s in sources])
    names = sorted(set(source.tolist()))
    if len(names) < 2:
        raise ValueError(_too_few_sources(source.tolist()))
    x, y = list(features), np.asarray([str(c) for c in classes])
    rows = []
    for name in names:
        test, train = np.flatnonzero(source == name), np.flatnonzero(source != name)
        own, trained = Counter(y[test].tolist()), Counter(y[train].tolist())
        majority, majority_runs = own.most_common(1)[0]
        model = None
        accuracy: float | None = None
        macro_f1: float | None = None
        note = ONE_CLASS_NOTE if len(trained) < 2 else ""
        if not note:
            model = clone(make_classifier(seed)).fit([x[i] for i in train], y[train])
            predicted = np.asarray(model.predict([x[i] for i in test])).astype(str)
            accuracy = float(accuracy_score(y[test], predicted))
            macro_f1 = float(f1_score(y[test], predicted, average="macro"))
        if models is not None:
            models[name] = model
        rows.append(
            {
                "held_out": name,
                "runs": len(test),
                "classes": dict(sorted(own.items())),
                "training_runs": len(train),
                "accuracy": accuracy,
                "macro_f1": macro_f1,
                "majority_class": majority,
                "majority_accuracy": majority_runs / len(test),
                "training_majority_accuracy": own[trained.most_common(1)[0][0]] / len(test),
                "note": note,
            }
        )
    return rows


def summarise_held_out(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Whether the classifier beats each measured source's majority class, or why that is not known.

    ``beats_majority`` holds when at least one source is measured and, on every source measured,
    the held-out accuracy is above always naming that source's most common class. ``worst_source``
    is the source where it does least well against that baseline (``worst_margin``, accuracy minus
    the majority's). Nothing pools the sources.
    """
    measured = [r for r in rows if r.get("accuracy") is not None]
    if not measured:
        return {
            "measurable": False,
            "measured_sources": 0,
            "beats_majority": False,
            "worst_source": None,
            "worst_margin": None,
            "why_not": (f"not measurable: {len(rows)} source(s), none whose other sources hold two classes"),
        }
    worst = min(measured, key=lambda r: r["accuracy"] - r["majority_accuracy"])
    margin = float(worst["accuracy"] - worst["majority_accuracy"])
    return {
        "measurable": True,
        "measured_sources": len(measured),
        "beats_majority": margin > 0,
        "worst_source": worst["held_out"],
        "worst_margin": margin,
        "why_not": "",
    }


__all__ = [
    "MODEL_NAME",
    "ONE_CLASS_NOTE",
    "Fold",
    "cross_fit",
    "evaluate",
    "evaluate_held_out",
    "make_classifier",
    "summarise_held_out",
]
