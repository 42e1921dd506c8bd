"""The LLM judge in the root-cause pipeline: its result as a root cause, and the ``root_causes``
asset asking a scripted judge about failed runs when ``OMIUM_JUDGE_URL`` is set (and never when
it is not). ``omium_root_causes`` keeps one row per run and method: the judge's answer is a row of its own."""

from __future__ import annotations

import json
import re
from pathlib import Path

import dagster as dg
import pytest

from omium import importers
from omium.config import Settings
from omium.models import judge as J
from omium.models.attribution import UNKNOWN
from omium.pipelines import root_causes as explain
from omium.pipelines.defs import assets as A
from omium.pipelines.defs.resources import WarehouseResource
from omium.warehouse import ClickHouseWarehouse
from tests.models.fake_judge import Reply, serving

VERSION = f"judge-model@{J.PROMPT_VERSION}"


def _result(agent: str, position: int, evidence: tuple[str, ...], confidence: float = 0.5) -> J.JudgeResult:
    return J.JudgeResult(agent, position, "binary_search", evidence, confidence, J.PROMPT_VERSION, "judge-model", 3, 300)


def test_a_judge_result_becomes_a_root_cause_of_its_method() -> None:
    found = _result("Analyst", 1, ("#1 by Analyst is where the search ended", "steps 0-3: the first half"))
    cause = explain.judged("r1", found, indices=[4, 7, 9, 12], spans=["s4", "s7", "s9", "s12"])
    assert (cause.method, cause.model_version) == ("judge_binary_search", VERSION)
    assert (cause.agent, cause.step_index, cause.span_id, cause.confidence) == ("Analyst", 7, "s7", 0.5)
    assert cause.evidence[0] == "#7 by Analyst is where the search ended"  # positions become step indices
    assert cause.extra == {"known": True, "calls": 3, "tokens": 300}
    unknown = explain.judged("r1", _result(UNKNOWN, -1, ("unknown: not JSON",), 0.0), [4, 7], ["s4", "s7"])
    assert (unknown.agent, unknown.step_index, unknown.span_id, unknown.confidence) == ("", -1, "", 0.0)
    assert unknown.evidence == ["unknown: not JSON"] and not unknown.extra["known"]


def test_the_judge_and_the_model_are_rows_of_their_own_and_unknown_is_explicit() -> None:
    model = explain.RootCause("r1", "Analyst", 7, 0.6, ["#7 by Analyst scored highest"], "attribution_model")
    judge = explain.judged("r1", _result("Analyst", 1, ("#1 by Analyst: misread",)), [4, 7], ["s4", "s7"])
    unsure = explain.judged("r2", _result(UNKNOWN, -1, ("unknown: x",), 0.0))
    guess = explain.RootCause(
        "r3", "Planner", 2, 0.2, ["#2 by Planner"], "attribution_model", extra={"known": False}
    )
    rows = explain.rows([model, judge, unsure, guess])
    assert [(r["run_id"], r["method"], r["verdict"]) for r in rows] == [
        ("r1", "attribution_model", "known"),
        ("r1", "judge_binary_search", "known"),
        ("r2", "judge_binary_search", "unknown"),
        ("r3", "attribution_model", "unknown"),
    ]
    assert (rows[1]["agent"], rows[1]["step_index"], rows[1]["span_id"]) == ("Analyst", 7, "s7")
    assert json.loads(rows[1]["evidence"])[0] == "#7 by Analyst: misread"
    assert json.loads(rows[0]["evidence"]) == ["#7 by Analyst scored highest"]  # nothing of the judge's
    # An unknown row names no agent or step; a guess stays in the evidence, said to be one.
    for row in rows[2:]:
        assert (row["agent"], row["step_index"], row["span_id"]) == ("", -1, "")
        assert json.loads(row["evidence"])[0].startswith("unknown")
    assert json.loads(rows[3]["evidence"])[0] == "unknown: the best guess was Planner at step #2"
    # A method with a verdict of its own (counterfactual replay) keeps it.
    verified = explain.RootCause("r1", "Analyst", 7, 1.0, ["#7 re-sampled: the failure is gone"], "counterfactual")
    verified = explain.RootCause(**{**verified.__dict__, "extra": {"verdict": "verified"}})
    (row,) = explain.rows([verified])
    assert (row["verdict"], row["agent"], row["step_index"]) == ("verified", "Analyst", 7)


def test_the_settings_make_the_judge() -> None:
    assert explain.make_judge(Settings.from_env({})) is None
    judge = explain.make_judge(
        Settings.from_env(
            {
                "OMIUM_JUDGE_URL": "http://127.0.0.1:9/v1",
                "OMIUM_JUDGE_MODEL": "judge-model",
                "OMIUM_JUDGE_KEY": "sk-x",
                "OMIUM_JUDGE_METHOD": "step_by_step",
                "OMIUM_JUDGE_TIMEOUT_SECONDS": "5",
            }
        )
    )
    assert judge is not None and judge.version == VERSION
    assert (judge.url, judge.key, judge.method, judge.timeout) == ("http://127.0.0.1:9/v1", "sk-x", "step_by_step", 5.0)


def _runs(count: int) -> list[importers.ImportedRun]:
    """Failed imported runs without a decisive step (no model can be fitted: the first error or
    last step is the pipeline's own answer), each with its task."""
    return [
        importers.ImportedRun(
            source="who_and_when",
            source_id=f"judge-{n}.json",
            run_id=f"who_and_when:judge:{n}",
            steps=(
                importers.Step("Planner", "assistant", f"Plan {n}: search, then compute."),
                importers.Step("Searcher", "assistant", f"The source says {n * 3} items."),
                importers.Step("Analyst", "assistant", f"So the total is {n * 5}. TERMINATE"),
            ),
            failed=True,
            question=f"How many items are in list {n}?",
            subset="judge",
        )
        for n in range(count)
    ]


def _second_step(prompt: str) -> str:
    """A judge that always blames step 1, by the name the log gives it."""
    found = re.search(r"Step 1 - (\w+):", prompt)
    assert found, prompt
    return json.dumps({"agent": found.group(1), "step": 1, "reason": "the count has no source"})


def _build(warehouse: ClickHouseWarehouse, settings: Settings, tmp_path: Path, run_ids: list[str]) -> dg.ExecuteInProcessResult:
    resources = {
        "warehouse": WarehouseResource(
            mode="embedded", database=warehouse.database, home=str(settings.home), models_dir=str(tmp_path / "models")
        )
    }
    result = dg.materialize(
        [A.root_causes],
        resources=resources,
        run_config={"ops": {"root_causes": {"config": {"run_ids": run_ids}}}},
    )
    assert result.success and all(c.passed for c in result.get_asset_check_evaluations())
    return result


def _rows(warehouse: ClickHouseWarehouse, method: str = "first_error") -> dict[str, dict[str, object]]:
    """The rows of one method, by run."""
    rows = warehouse.query_rows("SELECT * FROM omium_root_causes")  # not FINAL: every row written
    assert len({(r["run_id"], r["method"]) for r in rows}) == len(rows)  # one row per run and method
    return {str(r["run_id"]): r for r in rows if r["method"] == method}


def test_the_asset_asks_the_configured_judge_about_each_failed_run(
    warehouse: ClickHouseWarehouse, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = _runs(2)
    importers.write(warehouse, runs)
    with serving(_second_step) as fake:
        monkeypatch.setenv("OMIUM_JUDGE_URL", fake.url)
        monkeypatch.setenv("OMIUM_JUDGE_MODEL", "judge-model")
        monkeypatch.setenv("OMIUM_JUDGE_KEY", "sk-pipeline")
        result = _build(warehouse, settings, tmp_path, [r.run_id for r in runs])
    rows, judged = _rows(warehouse), _rows(warehouse, "judge_all_at_once")
    assert set(rows) == set(judged) == {r.run_id for r in runs}
    for run in runs:
        # The pipeline's own answer and the judge's are two rows, each its method's alone.
        row, judge = rows[run.run_id], judged[run.run_id]
        assert row["step_index"] == 2
        assert not any("judge" in line for line in json.loads(str(row["evidence"])))
        assert (judge["agent"], judge["step_index"], judge["verdict"]) == ("Searcher", 1, "known")
        assert judge["model_version"] == VERSION and judge["confidence"] == pytest.approx(0.54, abs=0.005)
        assert "#1 by Searcher: the count has no source" in json.loads(str(judge["evidence"]))
    # One request per run, with its task, the model and the key.
    assert len(fake.requests) == 2
    assert {r.body["model"] for r in fake.requests} == {"judge-model"}
    assert {r.headers["authorization"] for r in fake.requests} == {"Bearer sk-pipeline"}
    asked = sorted(run.question for r in fake.requests for run in runs if run.question in r.prompt)
    assert asked == sorted(run.question for run in runs)
    metadata = result.asset_materializations_for_node("root_causes")[0].metadata
    assert metadata["judged_runs"].value == 2 and metadata["judge_calls"].value == 2
    assert metadata["judge_errors"].value == 0 and metadata["judge_unknown"].value == 0


def test_without_a_judge_url_no_judge_is_asked(
    warehouse: ClickHouseWarehouse, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = _runs(1)
    importers.write(warehouse, runs)
    monkeypatch.delenv("OMIUM_JUDGE_URL", raising=False)
    with serving(_second_step) as fake:
        monkeypatch.setenv("OMIUM_JUDGE_MODEL", "judge-model")  # a model alone configures nothing
        result = _build(warehouse, settings, tmp_path, [runs[0].run_id])
    assert not fake.requests
    assert set(_rows(warehouse)) == {runs[0].run_id}
    assert warehouse.scalar("SELECT count() FROM omium_root_causes WHERE method LIKE 'judge%'") == 0
    assert "judged_runs" not in result.asset_materializations_for_node("root_causes")[0].metadata


def test_a_failing_judge_leaves_the_root_causes_and_is_not_asked_again(
    warehouse: ClickHouseWarehouse, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = _runs(explain.JUDGE_MAX_ERRORS + 2)
    importers.write(warehouse, runs)
    with serving(Reply(503, b'{"error": "overloaded"}')) as fake:
        monkeypatch.setenv("OMIUM_JUDGE_URL", fake.url)
        monkeypatch.setenv("OMIUM_JUDGE_MODEL", "judge-model")
        result = _build(warehouse, settings, tmp_path, [r.run_id for r in runs])
    assert len(fake.requests) == explain.JUDGE_MAX_ERRORS
    # The pipeline's rows are all there; a judge that gave no answer has no row.
    assert set(_rows(warehouse)) == {r.run_id for r in runs}
    assert warehouse.scalar("SELECT count() FROM omium_root_causes WHERE method LIKE 'judge%'") == 0
    metadata = result.asset_materializations_for_node("root_causes")[0].metadata
    assert metadata["judge_errors"].value == explain.JUDGE_MAX_ERRORS and "HTTP 503" in str(metadata["judge_last_error"].value)
    assert metadata["judge_not_asked"].value == 2
