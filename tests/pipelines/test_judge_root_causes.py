"""The LLM judge in the root-cause pipeline: its result as a root cause, and the ``root_causes``
asset asking a scripted judge about failed runs when ``OMIUM_JUDGE_URL`` is set (and never when
it is not). ``omium_root_causes`` keeps one row per run, so the judge's answer is in its evidence."""

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


def test_the_judge_joins_the_evidence_of_the_runs_row() -> None:
    model = explain.RootCause("r1", "Analyst", 7, 0.6, ["#7 by Analyst scored highest"], "attribution_model")
    judge = explain.judged("r1", _result("Analyst", 1, ("#1 by Analyst: misread",)), [4, 7], ["s4", "s7"])
    both = explain.with_judge(model, judge)
    assert (both.method, both.agent, both.step_index, both.confidence) == ("attribution_model", "Analyst", 7, 0.6)
    assert both.evidence == [
        "#7 by Analyst scored highest",
        f"judge_binary_search ({VERSION}): agent Analyst, step 7, confidence 0.50; agrees with attribution_model",
        "judge_binary_search: #7 by Analyst: misread",
    ]
    other = explain.with_judge(model, explain.judged("r1", _result("Planner", 0, ("#0 by Planner",)), [4, 7]))
    assert "step 4, confidence 0.50; differs from attribution_model" in other.evidence[1]
    unsure = explain.with_judge(model, explain.judged("r1", _result(UNKNOWN, -1, ("unknown: x",), 0.0)))
    assert unsure.evidence[1:] == [f"judge_binary_search ({VERSION}): unknown", "judge_binary_search: unknown: x"]


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


def _rows(warehouse: ClickHouseWarehouse) -> dict[str, dict[str, object]]:
    rows = warehouse.query_rows("SELECT * FROM omium_root_causes")  # not FINAL: every row written
    by_run = {str(r["run_id"]): r for r in rows}
    assert len(by_run) == len(rows)  # one row per run
    return by_run


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
    rows = _rows(warehouse)
    assert set(rows) == {r.run_id for r in runs}
    for run in runs:
        row = rows[run.run_id]
        # The pipeline's own answer stays the row's result; the judge's is in its evidence.
        assert row["method"] == "first_error" and row["step_index"] == 2
        evidence = json.loads(str(row["evidence"]))
        assert f"judge_all_at_once ({VERSION}): agent Searcher, step 1, confidence 0.54" in " ".join(evidence)
        assert "judge_all_at_once: #1 by Searcher: the count has no source" in evidence
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
    evidence = json.loads(str(_rows(warehouse)[runs[0].run_id]["evidence"]))
    assert not any("judge" in line for line in evidence)
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
    rows = _rows(warehouse)
    assert set(rows) == {r.run_id for r in runs}
    evidence = [json.loads(str(r["evidence"])) for r in rows.values()]
    failed = [e for e in evidence if any(f"({VERSION}) failed: " in line and "HTTP 503" in line for line in e)]
    skipped = [e for e in evidence if any("not asked: its provider failed 3 times" in line for line in e)]
    assert len(failed) == explain.JUDGE_MAX_ERRORS and len(skipped) == 2
    assert all(row["method"] == "first_error" for row in rows.values())
    metadata = result.asset_materializations_for_node("root_causes")[0].metadata
    assert metadata["judge_errors"].value == explain.JUDGE_MAX_ERRORS and "HTTP 503" in str(metadata["judge_last_error"].value)
