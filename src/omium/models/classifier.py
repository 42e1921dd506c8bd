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


def evaluate(
    features: Sequence[Mapping[str, float]], classes: Sequence[str], seed: int = 0
) -> dict[str, Any]:
    """Held-out macro-F1 and accuracy (stratified k-fold; k is capped by the rarest class)."""
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    counts = Counter(classes)
    folds = min(5, min(counts.values())) if counts else 0
    if len(counts) < 2 or folds < 2:
        return {"evaluated": False, "reason": f"need two classes with two runs each, have {dict(counts)}"}
    predicted = cross_val_predict(
        make_classifier(seed),
        list(features),
        np.array(classes),
        cv=StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed),
    )
    majority = counts.most_common(1)[0][1] / len(classes)
    return {
        "evaluated": True,
        "folds": folds,
        "macro_f1": float(f1_score(classes, predicted, average="macro")),
        "accuracy": float(accuracy_score(classes, predicted)),
        "majority_accuracy": float(majority),
        "classes": dict(counts),
    }


__all__ = ["MODEL_NAME", "evaluate", "make_classifier"]
