"""Root-cause attribution: features without names, calibrated confidences, an explicit unknown."""

from __future__ import annotations

import random

import numpy as np
import pytest

from omium.models import fault_injection as fi
from omium.models.attribution import UNKNOWN, Attributor, Step, step_features


def _runs(seed: int, count: int) -> tuple[list[list[Step]], list[int]]:
    runs, mistakes = [], []
    for one in fi.scenarios(seed, count, "t"):
        steps, mistake = fi.plain_steps(one)
        runs.append(steps)
        mistakes.append(mistake)
    return runs, mistakes


def test_features_carry_no_agent_identity() -> None:
    rng = random.Random(0)
    for steps in _runs(0, 30)[0]:
        names = sorted({s.agent for s in steps})
        renamed = dict(zip(names, rng.sample([f"zz{i}" for i in range(50)], len(names)), strict=True))
        other = [Step(renamed[s.agent].upper(), s.content, s.error, s.tool) for s in steps]
        before, after = step_features(steps), step_features(other)
        assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    # ...but they do see who speaks: giving one agent's step to another changes its features.
    steps = _runs(0, 1)[0][0]
    moved = [
        Step(steps[1].agent if i == 0 else s.agent, s.content, s.error, s.tool) for i, s in enumerate(steps)
    ]
    assert not np.array_equal(step_features(steps)[0], step_features(moved)[0])


def test_features_see_errors_contradictions_and_handoffs() -> None:
    from omium.models.attribution import STEP_FEATURE_NAMES as NAMES

    steps = [
        Step("a", "Plan: look up the figure. Over to b."),
        Step("b", "acme: revenue 120", tool=True),
        Step("b", "The revenue is 450, from memory."),
        Step("c", "I received no figure from b."),
        Step("c", "lookup timed out", error=True, tool=True),
    ]
    rows = [dict(zip(NAMES, r, strict=True)) for r in step_features(steps)]
    assert rows[2]["contradicts_tool"] and not rows[1]["contradicts_tool"]
    assert rows[0]["says_handoff"] and rows[2]["next_complains"] and not rows[0]["next_complains"]
    assert rows[4]["status_error"] and rows[4]["is_first_error"] and not rows[3]["is_first_error"]
    assert rows[1]["is_tool"] and rows[2]["after_tool"] and rows[1]["agent_tool_share"] == 0.5


def test_calibrated_confidences_are_probabilities_and_unknown_is_below_the_threshold() -> None:
    runs, mistakes = _runs(1, 90)
    groups = [f"g{i % 3}" for i in range(len(runs))]
    model = Attributor(threshold=0.5).fit(runs, mistakes, groups)
    assert model.step_calibration is not None and model.agent_calibration is not None
    tests, truth = _runs(2, 40)
    found = [model.attribute(s) for s in tests]
    confidences = np.array([f.agent_confidence for f in found])
    assert ((confidences >= 0) & (confidences <= 1)).all()
    assert all(0 <= f.confidence <= 1 for f in found)
    for f in found:
        assert f.known == (f.agent_confidence >= 0.5)
        assert (f.agent == UNKNOWN) == (not f.known) and f.guess
        assert f.method == "attribution_model" and f.evidence
    strict = Attributor(threshold=1.01).fit(runs, mistakes, groups)
    assert all(not strict.attribute(s).known for s in tests[:5])
    lenient = Attributor(threshold=0.0).fit(runs, mistakes, groups)
    assert all(lenient.attribute(s).known for s in tests[:5])
    # The calibrated step confidence tracks correctness: higher on the runs it gets right.
    hits = np.array([f.position == m for f, m in zip(found, truth, strict=True)])
    steps_conf = np.array([f.confidence for f in found])
    if hits.any() and (~hits).any():
        assert steps_conf[hits].mean() >= steps_conf[~hits].mean()


def test_an_unfitted_attributor_refuses() -> None:
    with pytest.raises(ValueError, match="not fitted"):
        Attributor().attribute([Step("a", "x")])


def test_training_sees_each_recorded_view_of_a_run() -> None:
    from omium.models.attribution import views

    steps = [Step("a", "plan 12"), Step("b", "lookup timed out", error=True, tool=True)]
    full, bare, text = views(steps)
    assert full == steps
    assert [s.content for s in bare] == ["", ""] and bare[1].error and bare[1].tool
    assert [s.content for s in text] == ["plan 12", "lookup timed out"] and not (
        text[1].error or text[1].tool
    )
    runs, mistakes = _runs(4, 12)
    augmented = Attributor(augment=True)._training(runs, mistakes)[0]
    plain = Attributor(augment=False)._training(runs, mistakes)[0]
    assert augmented.shape[0] == 3 * plain.shape[0]
