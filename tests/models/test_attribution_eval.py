"""Leave-one-framework-out evaluation never trains on the framework it scores."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from omium.models import attribution_eval as ev
from omium.models import fault_injection as fi
from omium.models.attribution import Attributor, Step


def _labelled(frameworks: tuple[str, ...], count: int) -> list[ev.Labelled]:
    out = []
    for n, framework in enumerate(frameworks):
        for one in fi.scenarios(n, count, framework):
            steps, mistake = fi.plain_steps(one)
            out.append(ev.Labelled(one.run_id, framework, tuple(steps), mistake))
    return out


def test_splits_hold_each_framework_out_entirely() -> None:
    runs = _labelled(("a", "b", "c"), 5)
    seen = []
    for held, train, test in ev.splits(runs):
        seen.append(held)
        assert {runs[i].framework for i in test} == {held}
        assert held not in {runs[i].framework for i in train}
        assert sorted(train + test) == list(range(len(runs)))
    assert seen == ["a", "b", "c"]


def test_evaluation_fits_only_on_the_other_frameworks(monkeypatch: pytest.MonkeyPatch) -> None:
    runs = _labelled(("a", "b", "c"), 12)
    by_steps = {id(r.steps): r.framework for r in runs}
    fitted: list[set[str]] = []
    real_fit = Attributor.fit

    def spy(self: Attributor, steps: Any, mistakes: Any, groups: Any = None) -> Attributor:
        fitted.append({by_steps[id(s)] for s in steps})
        return real_fit(self, steps, mistakes, groups)

    monkeypatch.setattr(Attributor, "fit", spy)
    results = ev.evaluate(runs, seeds=2)
    assert [r.framework for r in results] == ["a", "b", "c"]
    assert fitted == [{"b", "c"}] * 2 + [{"a", "c"}] * 2 + [{"a", "b"}] * 2
    for result in results:
        assert result.framework not in result.trained_on and result.runs == 12
        assert set(result.agent) == {ev.METHOD, *ev.BASELINES}
        assert {"last step", "first error"} <= set(result.step)
        for score in [*result.agent.values(), *result.step.values()]:
            assert 0 <= score.low <= score.mean <= score.high <= 100


def test_one_framework_is_refused_with_the_frameworks_found() -> None:
    with pytest.raises(ValueError, match=r"1 framework\(s\) of labelled runs \(a \(6 runs\)\).*at least two"):
        ev.evaluate(_labelled(("a",), 6), seeds=1)


def test_baselines_and_intervals() -> None:
    steps = [
        Step("boss", "plan"),
        Step("tool", "out", tool=True),
        Step("x", "a"),
        Step("tool", "error here", error=True, tool=True),
        Step("x", "b"),
        Step("boss", "c"),
        Step("boss", "done"),
    ]
    guesses = ev.baseline_guesses(steps)
    assert guesses["most frequent agent"][0] == "boss"
    assert guesses["most talkative non-orchestrator"][0] == "x"
    assert guesses["last step"] == ("boss", 6)
    assert guesses["first error"] == ("tool", 3)
    score = ev.interval(np.array([1.0, 0.0, 1.0, 1.0]))
    assert score.mean == 75.0 and score.low < 75.0 < score.high
