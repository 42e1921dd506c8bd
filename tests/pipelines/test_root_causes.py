"""Root causes from normalised step spans: steps collapsed per index, a model never trained on the
run it attributes, and an unknown said when the model is unsure."""

from __future__ import annotations

import polars as pl

from omium.models import fault_injection as fi
from omium.models.attribution import Attributor
from omium.pipelines import root_causes as explain

COLUMNS = ["run_id", "step_index", "span_id", "agent", "role", "content", "tool_calls", "status"]


def _frame(run_id: str, rows: list[tuple[int, str, str, str, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            (run_id, i, f"{run_id}-{n}", agent, role, content, tools, status)
            for n, (i, agent, role, content, tools, status) in enumerate(rows)
        ],
        schema=COLUMNS,
        orient="row",
    )


def _spans(one: fi.Scenario) -> tuple[pl.DataFrame, int]:
    steps, mistake = fi.plain_steps(one)
    rows = []
    for i, s in enumerate(steps):
        rows.append((i, s.agent, "invoke_agent", "", "", "ok"))  # an agent span without content
        rows.append(
            (i, s.agent, "tool" if s.tool else "assistant", s.content, "", "error" if s.error else "ok")
        )
    return _frame(one.run_id, rows), mistake


def test_steps_join_their_spans() -> None:
    frame = _frame(
        "r",
        [
            (3, "a", "invoke_agent", "", "", "ok"),
            (3, "a", "assistant", "hello", "", "ok"),
            (5, "b", "tool", "boom", "", "error"),
            (5, "b", "assistant", "retry", '["lookup"]', "ok"),
        ],
    )
    indices, steps, spans = explain.run_steps(frame)
    assert indices == [3, 5] and spans == ["r-0", "r-2"]
    assert [s.content for s in steps] == ["hello", "boom\nretry"]
    assert [s.error for s in steps] == [False, True] and [s.tool for s in steps] == [False, True]


def test_fitted_model_attributes_runs_with_evidence_and_a_confidence() -> None:
    made = fi.scenarios(5, 48, "p")
    frames, mistakes = zip(*(_spans(s) for s in made), strict=True)
    truth = pl.DataFrame(
        {
            "run_id": [s.run_id for s in made[:36]],
            "mistake_step": list(mistakes[:36]),
            "source": [f"src{i % 2}" for i in range(36)],
        }
    )
    model, rows = explain.fit_attribution(truth, pl.concat(frames[:36]))
    assert isinstance(model, Attributor) and rows == sum(f["step_index"].n_unique() for f in frames[:36])
    for one, frame in zip(made[36:], frames[36:], strict=True):
        cause = explain.attribute_run(one.run_id, frame, model, "v1")
        assert cause.method == "attribution_model" and cause.model_version == "v1"
        assert 0.0 <= cause.confidence <= 1.0 and cause.span_id.startswith(one.run_id)
        index = frame["step_index"].to_list().index(cause.step_index)
        assert cause.agent == frame["agent"][index]
        assert cause.extra["known"] == (not cause.evidence[0].startswith("unknown"))
    model.threshold = 1.01  # nothing is that certain: every result says unknown
    cause = explain.attribute_run(made[40].run_id, frames[40], model)
    assert cause.evidence[0].startswith("unknown") and not cause.extra["known"]


def test_an_annotated_run_is_never_attributed_by_a_model_trained_on_it() -> None:
    made = fi.scenarios(6, 30, "q")
    frames, mistakes = zip(*(_spans(s) for s in made), strict=True)
    truth = pl.DataFrame({"run_id": [s.run_id for s in made], "mistake_step": list(mistakes)})
    registered: list[tuple[str, set[str]]] = []

    def register(name: str, model: object, trained_on: set[str], rows: int) -> str:
        registered.append((name, trained_on))
        return f"v{len(registered)}"

    failed = {s.run_id for s in made[:10]}
    chooser = explain.ModelChooser.fit(truth, pl.concat(frames), failed, register)
    for run_id in failed:
        model, version = chooser.for_run(run_id)
        assert model is not None and version
        name, trained_on = registered[int(version[1:]) - 1]
        assert name == explain.CROSS_FIT_MODEL and run_id not in trained_on
    assert chooser.for_run("never-seen")[1] == "v1"
