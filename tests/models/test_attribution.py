"""Root-cause attribution: features from the shape of a run, and held-out accuracy above baselines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.model_selection import GroupKFold

from omium.importers import read_who_and_when
from omium.models.attribution import attribute, candidates, make_model, speaker_kind, step_features

WHO = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "who_and_when" / "algorithm_generated"


def test_features_describe_shape_not_names() -> None:
    assert speaker_kind("Computer_terminal") == (1, 0, 0, 0)
    assert speaker_kind("Verification_Expert") == (0, 0, 0, 1)
    rows = step_features(
        ["Planner", "Computer_terminal", "Math_Expert"],
        ["Plan: step 1", "exitcode: 1 Traceback", "The answer is 42"],
    )
    assert len(rows) == 3 and rows[0].shape == rows[2].shape
    renamed = step_features(
        ["Planner", "Computer_terminal", "Algebra_Expert"],
        ["Plan: step 1", "exitcode: 1 Traceback", "The answer is 42"],
    )
    assert all(np.array_equal(a, b) for a, b in zip(rows, renamed, strict=True))  # a name is not a feature


def test_held_out_attribution_beats_the_published_baselines() -> None:
    runs = read_who_and_when(WHO)
    data = [([s.agent for s in r.steps], [s.content for s in r.steps]) for r in runs]
    cands = candidates(data)
    features = np.vstack([c.features for c in cands])
    labels = np.array([int(c.position == runs[c.run].mistake_step) for c in cands])
    owners = np.array([c.run for c in cands])
    agent_hits = step_hits = 0
    for train, test in GroupKFold(n_splits=5).split(np.arange(len(runs)), groups=[r.task_id for r in runs]):
        model = make_model(0).fit(features[np.isin(owners, train)], labels[np.isin(owners, train)])
        for i in test:  # never scored by a model fitted on it
            found = attribute(model, *data[i])
            agent_hits += found.agent.lower() == runs[i].mistake_agent.lower()
            step_hits += found.position == runs[i].mistake_step
            assert 0 < found.confidence <= 1
    assert agent_hits / len(runs) > 0.543  # all-at-once GPT-4o, the best published agent-level figure
    assert step_hits / len(runs) > 0.255  # step-by-step GPT-4o, the best published step-level figure
