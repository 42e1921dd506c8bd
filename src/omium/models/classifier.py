"""Failure classifier: which class of the taxonomy a failed run's failure belongs to.

It learns from failed runs whose class is known (runtime triggers, reviews, annotated reasons)
and names the class of those whose class is not (a run that simply ended in error, an imported
run labelled only by its outcome). Inputs are the run-feature maps the pipelines build, so the
classifier reads retries, hand-off verdicts, tool errors and the text of a run alike for live
and imported runs.
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
    out-of-fold classes are both the evaluation and what a run of known class may be shown (never
    its own label). A class of one run is held out like the others and counts as a miss unless
    named (no model that classifies it saw it). Two classes of two runs or more are needed (each
    fold's complement then holds both); otherwise nothing is evaluated and there are no folds.
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
    """Held-out macro-F1 and accuracy (see :func:`cross_fit`)."""
    return cross_fit(features, classes, seed)[0]


__all__ = ["MODEL_NAME", "Fold", "cross_fit", "evaluate", "make_classifier"]
