"""Every asset materialises on demo and imported runs, its checks pass, and the outputs are right."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from omium.config import Settings
from omium.pipelines import registry, spans
from omium.pipelines import root_causes as explain
from omium.pipelines.defs import assets as A
from omium.pipelines.defs.resources import WarehouseResource
from omium.warehouse import ClickHouseWarehouse
from tests.pipelines.conftest import Seeded

DAILY = [A.normalized_spans, A.run_edges, A.agent_graph, A.step_features, A.run_features, A.failure_labels]
MODELS = [A.failure_classifier, A.failure_predictor, A.failure_predictions, A.root_causes]


def resources(warehouse: ClickHouseWarehouse, tmp_path: Path) -> dict[str, object]:
    """The pipelines' resource on the test's own database (and the session's one chdb directory)."""
    return {
        "warehouse": WarehouseResource(
            mode="embedded", database=warehouse.database, home=HOME[0], models_dir=str(tmp_path / "models")
        )
    }


HOME: list[str] = [""]


@pytest.fixture(autouse=True)
def _home(settings: Settings) -> None:
    HOME[0] = str(settings.home)


def build_everything(warehouse: ClickHouseWarehouse, tmp_path: Path) -> list[dg.AssetCheckEvaluation]:
    checks = []
    res = resources(warehouse, tmp_path)
    for day in spans.days_with_spans(warehouse):
        result = dg.materialize(DAILY, partition_key=str(day), resources=res)
        assert result.success
        checks += result.get_asset_check_evaluations()
    result = dg.materialize(
        MODELS, resources=res, run_config={"ops": {"failure_predictions": {"config": {"all_runs": True}}}}
    )
    assert result.success
    return checks + result.get_asset_check_evaluations()


def test_every_asset_materialises_and_its_checks_pass(seeded: Seeded, tmp_path: Path) -> None:
    wh = seeded.warehouse
    checks = build_everything(wh, tmp_path)
    # The predictor's check fails (as a warning) whenever the lowest AUROC of a source held out is
    # at or below chance, as it may be on this small data: it says so rather than pooling sources.
    # test_the_predictor_stores_held_out_figures_per_source holds it to the stored figure.
    # Likewise the classifier's, an error when it does not beat always naming the majority class
    # on some source held out (as on this data: omium 0.00 against 0.67, who_and_when 0.08 against
    # 0.62): its classes are then withheld, checked below.
    failing = [
        (c.asset_key.to_user_string(), c.check_name, c.description)
        for c in checks
        if not c.passed and c.check_name not in ("auroc_above_chance", "classifier_beats_majority")
    ]
    assert not failing
    (beats,) = [c for c in checks if c.check_name == "classifier_beats_majority"]
    names = {(c.asset_key.to_user_string(), c.check_name) for c in checks}
    assert ("root_causes", "every_failed_run_has_a_root_cause") in names and len(names) >= 14

    # Normalised spans: agents resolved for live and imported steps alike.
    agents = {
        r["agent"]
        for r in wh.query_rows(
            "SELECT DISTINCT agent FROM omium_normalized_spans FINAL WHERE step_index >= 0"
        )
    }
    assert {"terms_generator", "credit_scorer", "airline_agent", "customer"} <= agents

    # Edges: the live hand-off chain and imported turn-taking.
    edges = {
        (r["source"], r["target"], r["kind"])
        for r in wh.query_rows("SELECT source, target, kind FROM omium_run_edges FINAL")
    }
    assert ("kyc_verification_agent", "credit_scorer", "handoff") in edges
    assert ("customer", "airline_agent", "sequence") in edges
    stale = wh.query_rows(
        "SELECT errors, detail FROM omium_run_edges FINAL WHERE run_id = 'live-stale' AND kind = 'handoff' AND errors > 0"
    )
    assert stale and stale[0]["detail"] in ("rejected", "stale")  # the receiver refused the stale message
    graph = wh.query_rows(
        "SELECT * FROM omium_agent_edges FINAL WHERE source = 'customer' AND target = 'airline_agent'"
    )
    assert graph[0]["runs"] == 80 and graph[0]["calls"] > 80

    # Labels: ground truth, incidents and clean runs, in the taxonomy.
    labels = {r["run_id"]: r for r in wh.query_rows("SELECT * FROM omium_failure_labels FINAL")}
    assert labels["live-ok-1"]["failed"] is False
    assert labels["live-halluc"]["failed"] and labels["live-halluc"]["failure_class"] == "specification"
    assert labels["live-stale"]["failure_class"] == "state_synchronisation"
    tau_failed = [r for r in seeded.imported if r.source == "tau_bench" and r.failed]
    assert all(labels[r.run_id]["failed"] for r in tau_failed)
    assert sum(1 for r in labels.values() if r["label_source"] == "ground_truth") == 120

    # Models are registered with their evaluation, and score runs.
    models = {r["model_name"]: r for r in wh.query_rows("SELECT * FROM omium_models FINAL")}
    assert {"failure_classifier", "failure_predictor_k4", "root_cause_attribution"} <= set(models)
    evaluation = json.loads(models["failure_predictor_k4"]["metrics"])
    assert evaluation["runs"] >= 120 and evaluation["evaluation"] == "held out per source"
    assert "auroc_mean" not in evaluation and len(evaluation["held_out"]) == 3  # no pooled figure
    risks = wh.query_rows("SELECT run_id, risk FROM omium_predictions FINAL WHERE k = 4")
    assert len(risks) == len(labels) and all(0 <= r["risk"] <= 1 for r in risks)

    # Every failed run has a root cause, on a step of its own run.
    causes = {r["run_id"]: r for r in wh.query_rows("SELECT * FROM omium_root_causes FINAL")}
    failed = {run_id for run_id, r in labels.items() if r["failed"]}
    assert failed <= set(causes)
    halluc = causes["live-halluc"]
    assert halluc["method"] == "runtime_chain" and halluc["agent"] == "terms_generator"
    assert any("produced the data" in line for line in json.loads(halluc["evidence"]))
    # Annotations are not results: an annotated run is attributed by a model that never saw it.
    assert "ground_truth" not in {c["method"] for c in causes.values()}
    models = {
        r["model_version"]: (r["model_name"], set(json.loads(r["params"])["training_runs"]))
        for r in wh.query_rows(
            "SELECT model_name, model_version, params FROM omium_models FINAL WHERE model_name IN {n:Array(String)}",
            {"n": [explain.ATTRIBUTION_MODEL, explain.CROSS_FIT_MODEL]},
        )
    }
    annotated = [r for r in seeded.imported if r.source == "who_and_when" and r.run_id in causes]
    assert annotated
    for run in annotated:
        cause = causes[run.run_id]
        assert cause["method"] in ("attribution_model", "first_error")
        if cause["method"] == "attribution_model":
            name, trained_on = models[cause["model_version"]]
            assert name == explain.CROSS_FIT_MODEL and run.run_id not in trained_on
    tau = causes[tau_failed[0].run_id]
    assert tau["method"] == "attribution_model" and 0 <= tau["step_index"] < len(tau_failed[0].steps)
    assert tau["agent"] == tau_failed[0].steps[tau["step_index"]].agent
    classes = {
        r["run_id"]: r
        for r in wh.query_rows("SELECT run_id, failure_class, model_version FROM omium_failure_classes FINAL")
    }
    assert set(classes) == failed
    # A label is never a result: no class is the label copied, a root cause's class is the classifier's.
    assert "label" not in {r["model_version"] for r in classes.values()}
    assert all(c["failure_class"] == classes[r]["failure_class"] for r, c in causes.items() if r in classes)
    if not beats.passed:
        assert "class unknown" in (beats.description or "")
        assert {r["failure_class"] for r in classes.values()} == {"unknown"}

    # Grafana's panels over the derived tables read what the pipelines wrote (not only test rows).
    from omium.dashboards import grafana

    wide = (dt.datetime(2020, 1, 1, tzinfo=dt.UTC), dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    for dashboard in grafana.dashboards():
        variables = {
            v["name"]: v.get("current", {}).get("value", "")
            for v in dashboard["templating"]["list"]
            if v["type"] != "datasource"
        }
        for panel, target in grafana.panels(dashboard):
            sql = target["rawSql"]
            if not any(t in sql for t in ("omium_root_causes", "omium_predictions", "omium_agent_edges")):
                continue
            rows = wh.query_rows(grafana.substitute_macros(sql, *wide, 3600, variables))
            assert rows, f"{dashboard['title']} / {panel['title']} is empty on materialised data"


def _foreign_spans(warehouse: ClickHouseWarehouse, attributes: list[dict[str, str]]) -> None:
    """Spans from some other instrumentation, exported the collector's way."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from omium.warehouse.span_exporter import WarehouseSpanExporter

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(WarehouseSpanExporter(warehouse)))
    tracer = provider.get_tracer("foreign")
    with tracer.start_as_current_span("workflow"):
        for i, attrs in enumerate(attributes):
            with tracer.start_as_current_span(f"step {i}", attributes={"omium.step_index": str(i), **attrs}):
                pass
    provider.shutdown()


def test_a_check_fails_when_its_output_is_wrong(warehouse: ClickHouseWarehouse, tmp_path: Path) -> None:
    # One step names its agent the OpenInference way, one under no convention at all.
    _foreign_spans(
        warehouse,
        [
            {
                "agent.name": "planner",
                "input.value": "plan",
                "llm.token_count.prompt": "7",
                "session.id": "s1",
            },
            {"input.value": "who said this?"},
        ],
    )
    (day,) = spans.days_with_spans(warehouse)
    result = dg.materialize(
        [A.normalized_spans], partition_key=str(day), resources=resources(warehouse, tmp_path)
    )
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["all_spans_normalised"].passed
    assert not checks["step_spans_have_agents"].passed
    assert checks["step_spans_have_agents"].metadata["anonymous"].value == 1
    agents = [
        r["agent"]
        for r in warehouse.query_rows(
            "SELECT agent FROM omium_normalized_spans FINAL WHERE step_index >= 0 ORDER BY step_index"
        )
    ]
    assert agents == ["planner", ""]
    # OpenInference's names resolve like the GenAI conventions' (REFERENCE.md section 3).
    (planner,) = warehouse.query_rows(
        "SELECT input_tokens, session, content FROM omium_normalized_spans FINAL WHERE agent = 'planner'"
    )
    assert planner == {"input_tokens": 7, "session": "s1", "content": "plan"}


def test_a_sensor_request_explains_one_new_failure(seeded: Seeded, tmp_path: Path) -> None:
    from omium.pipelines.defs.automation import failed_runs_sensor

    res = resources(seeded.warehouse, tmp_path)
    with dg.build_sensor_context(resources=res) as context:
        request = failed_runs_sensor(context)
        assert isinstance(request, dg.RunRequest)
        run_ids = request.run_config["ops"]["root_causes"]["config"]["run_ids"]
        assert {"live-halluc", "live-stale"} <= set(run_ids) and "live-ok-1" not in run_ids
        # The daily build never ran: the request still produces root causes for exactly those runs.
        result = dg.materialize(
            [A.root_causes], resources=res, run_config=request.run_config, selection=[A.root_causes.key]
        )
        assert result.success and all(c.passed for c in result.get_asset_check_evaluations())
        explained = {
            r["run_id"] for r in seeded.warehouse.query_rows("SELECT run_id FROM omium_root_causes FINAL")
        }
        assert set(run_ids) == explained
        # Nothing new since: the sensor skips and keeps its cursor.
        assert isinstance(failed_runs_sensor(context), dg.SkipReason)


def _failed_runs(
    warehouse: ClickHouseWarehouse,
    runs: list[tuple[str, str, dict[str, float]]],
    sources: dict[str, str] | None = None,
) -> None:
    """Failed runs with their label's class and run features, as the daily assets write them.

    ``sources`` gives a run an imported source (its ``omium_ground_truth`` row, as an importer
    writes it); any other run is a live one (source ``omium``).
    """
    from omium.pipelines import features as feats

    truth = [
        {"run_id": run_id, "source": source, "source_id": run_id, "failed": True}
        for run_id, source in (sources or {}).items()
    ]
    feats.insert_rows(warehouse, "omium_ground_truth", truth, stamp="imported_at")

    day = dt.date(2026, 1, 5)
    labels = [
        {
            "day": day,
            "run_id": run_id,
            "failed": True,
            "failure_class": failure_class,
            "mast_code": "",
            "label_source": "runtime",
            "evidence": "",
        }
        for run_id, failure_class, _ in runs
    ]
    features = [
        {"day": day, "run_id": run_id, "source": "sdk", "steps": 5, "features": f} for run_id, _, f in runs
    ]
    feats.insert_rows(warehouse, "omium_failure_labels", labels)
    feats.insert_rows(warehouse, "omium_run_features", features)


def _classifier_checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


def test_a_classifier_no_better_than_the_majority_fails_its_check_and_names_no_class(
    warehouse: ClickHouseWarehouse, tmp_path: Path
) -> None:
    """Features that say nothing about the class: the classifier cannot beat always naming the
    most common class, so its check fails (an error, not a warning) and every run is "unknown",
    those of known class too (their label is not a result)."""
    import random

    from omium.models import taxonomy

    rng = random.Random(18)
    classes = [taxonomy.SPECIFICATION] * 30 + [taxonomy.TOOL_INVOCATION] * 10 + [taxonomy.UNKNOWN] * 5
    _failed_runs(
        warehouse,
        [(f"noise-{i}", c, {f"f{j}": rng.random() for j in range(6)}) for i, c in enumerate(classes)],
        sources={f"noise-{i}": "tau_bench" for i in range(0, 45, 2)},
    )
    result = dg.materialize([A.failure_classifier], resources=resources(warehouse, tmp_path))
    check = _classifier_checks(result)["classifier_beats_majority"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert "class unknown" in (check.description or "")
    assert "omium" in (check.description or "") and "tau_bench" in (check.description or "")
    assigned = warehouse.query_rows("SELECT failure_class, confidence FROM omium_failure_classes FINAL")
    assert len(assigned) == 45 and all(
        r == {"failure_class": taxonomy.UNKNOWN, "confidence": 0.0} for r in assigned
    )


def test_a_labelled_run_is_classified_out_of_fold_never_by_its_label(
    warehouse: ClickHouseWarehouse, tmp_path: Path
) -> None:
    """Issue 18, item 2: a run of known class gets the class a model fitted without it derived
    (its evaluation fold's), never its label copied as a result (model_version 'label', confidence
    1.0); a run of unknown class gets the classifier's, fitted on the runs of known class. One run
    is labelled specification with a tool failure's features: its out-of-fold class says so."""
    from omium.models import taxonomy
    from omium.pipelines import features as feats

    rng = random_source()
    runs = [(f"spec-{i}", taxonomy.SPECIFICATION, {"tool_errors": rng.gauss(0, 0.3)}) for i in range(20)]
    runs += [
        (f"tool-{i}", taxonomy.TOOL_INVOCATION, {"tool_errors": 3 + rng.gauss(0, 0.3)}) for i in range(20)
    ]
    runs += [("odd", taxonomy.SPECIFICATION, {"tool_errors": 3.1})]
    runs += [(f"new-{i}", taxonomy.UNKNOWN, {"tool_errors": 3 * (i % 2)}) for i in range(4)]
    # Two sources of both classes: each is classified by a model fitted on the other.
    imported = {f"{c}-{i}": "tau_bench" for c in ("spec", "tool") for i in range(10)}
    _failed_runs(warehouse, runs, sources=imported)
    # A build from before the fix left the label as the result: the rebuild replaces it.
    feats.insert_rows(
        warehouse,
        "omium_failure_classes",
        [
            {
                "run_id": "odd",
                "failure_class": taxonomy.SPECIFICATION,
                "confidence": 1.0,
                "model_version": "label",
            }
        ],
        stamp="classified_at",
    )
    result = dg.materialize([A.failure_classifier], resources=resources(warehouse, tmp_path))
    checks = _classifier_checks(result)
    assert all(c.passed for c in checks.values()), [c.description for c in checks.values()]
    assert set(checks) == {
        "classifier_beats_majority",
        "every_failed_run_classified",
        "no_run_classified_by_its_own_model",
    }

    classes = {
        r["run_id"]: r
        for r in warehouse.query_rows(
            "SELECT run_id, failure_class, confidence, model_version FROM omium_failure_classes FINAL"
        )
    }
    assert set(classes) == {r[0] for r in runs}
    assert "label" not in {r["model_version"] for r in classes.values()}
    models = _registered(warehouse)
    for run_id, label, _ in runs:
        row = classes[run_id]
        model = models[row["model_version"]]
        assert run_id not in model["training_runs"]  # no model classifies a run it was fitted on
        if label == taxonomy.UNKNOWN:
            assert model["name"] == "failure_classifier"
        else:
            assert model["name"] == "failure_classifier_cross_fit" and run_id in model["scores"]
            # Its fold is its source: the model was fitted on the other source's runs only.
            assert model["fold"] == imported.get(run_id, "omium")
    assert classes["odd"]["failure_class"] == taxonomy.TOOL_INVOCATION  # derived, not its label
    assert classes["odd"]["confidence"] < 1.0
    assert classes["spec-0"]["failure_class"] == taxonomy.SPECIFICATION
    assert [classes[f"new-{i}"]["failure_class"] for i in range(2)] == [
        taxonomy.SPECIFICATION,
        taxonomy.TOOL_INVOCATION,
    ]
    # The label is kept where labels live, to be shown beside the result as the annotation.
    (kept,) = warehouse.query_rows(
        "SELECT failure_class FROM omium_failure_labels FINAL WHERE run_id = 'odd'"
    )
    assert kept["failure_class"] == taxonomy.SPECIFICATION


def _classifier_evaluation(wh: ClickHouseWarehouse) -> dict[str, Any]:
    (row,) = wh.query_rows(
        "SELECT metrics FROM omium_models FINAL WHERE model_name = 'failure_classifier' "
        "ORDER BY trained_at DESC LIMIT 1"
    )
    return dict(json.loads(row["metrics"]))


def test_a_classifier_of_one_source_is_not_measurable_fails_its_check_and_names_no_class(
    warehouse: ClickHouseWarehouse, tmp_path: Path
) -> None:
    """Issue 18, item 2: live runs only, two classes told apart by their features. Within the one
    source stratified folds would score it well, but no source can be scored by a model fitted on
    the others, so its quality held out per source is not measurable: not claimed. The check fails
    saying so, the stored evaluation says why with no figure, and every run is unknown."""
    from omium.models import taxonomy

    rng = random_source()
    runs = [(f"spec-{i}", taxonomy.SPECIFICATION, {"x": rng.gauss(0, 0.3)}) for i in range(10)]
    runs += [(f"tool-{i}", taxonomy.TOOL_INVOCATION, {"x": 3 + rng.gauss(0, 0.3)}) for i in range(10)]
    runs += [("new-0", taxonomy.UNKNOWN, {"x": 3.0})]
    _failed_runs(warehouse, runs)
    result = dg.materialize([A.failure_classifier], resources=resources(warehouse, tmp_path))
    assert result.success
    checks = _classifier_checks(result)
    check = checks["classifier_beats_majority"]
    assert not check.passed and "not measurable" in (check.description or "")
    assert "at least two sources" in (check.description or "") and "class unknown" in (
        check.description or ""
    )
    assert (
        checks["every_failed_run_classified"].passed and checks["no_run_classified_by_its_own_model"].passed
    )
    evaluation = _classifier_evaluation(warehouse)
    assert evaluation["evaluation"] == "held out per source" and evaluation["held_out"] == []
    assert not evaluation["measurable"] and evaluation["why_not"].startswith("not measurable: 1 source(s)")
    assert "accuracy" not in evaluation  # no figure within the one source is stored as the quality
    rows = warehouse.query_rows(
        "SELECT run_id, failure_class, model_version FROM omium_failure_classes FINAL"
    )
    assert {r["run_id"] for r in rows} == {r[0] for r in runs}
    assert {r["failure_class"] for r in rows} == {taxonomy.UNKNOWN}
    assert "label" not in {r["model_version"] for r in rows}


def test_the_classifier_is_judged_per_source_held_out_never_pooled(
    warehouse: ClickHouseWarehouse, tmp_path: Path
) -> None:
    """Issue 18, item 2: live runs tell their classes apart by a tool-error signal; on the imported
    source most runs are specification with that signal high. Pooled, stratified folds beat the
    pooled majority class (the live runs carry it); held out, the imported source is classified by
    a model fitted on the live runs only and falls below its own majority class (always naming
    specification). The check fails naming it, and the stored figures are one row per source."""
    from omium.models import taxonomy

    rng = random_source()
    runs = [(f"spec-{i}", taxonomy.SPECIFICATION, {"tool_errors": rng.gauss(0, 0.3)}) for i in range(20)]
    runs += [
        (f"tool-{i}", taxonomy.TOOL_INVOCATION, {"tool_errors": 3 + rng.gauss(0, 0.3)}) for i in range(20)
    ]
    imported = [
        (f"tau-spec-{i}", taxonomy.SPECIFICATION, {"tool_errors": 3 + rng.gauss(0, 0.3)}) for i in range(9)
    ]
    imported += [("tau-tool-0", taxonomy.TOOL_INVOCATION, {"tool_errors": rng.gauss(0, 0.3)})]
    _failed_runs(warehouse, runs + imported, sources={r[0]: "tau_bench" for r in imported})
    result = dg.materialize([A.failure_classifier], resources=resources(warehouse, tmp_path))
    assert result.success
    check = _classifier_checks(result)["classifier_beats_majority"]
    assert not check.passed and "class unknown" in (check.description or "")
    assert "tau_bench 0.00 vs 0.90" in (check.description or "")
    evaluation = _classifier_evaluation(warehouse)
    by_source = {r["held_out"]: r for r in evaluation["held_out"]}
    assert set(by_source) == {"omium", "tau_bench"} and "accuracy" not in evaluation
    tau = by_source["tau_bench"]
    assert (tau["runs"], tau["training_runs"], tau["majority_class"]) == (10, 40, taxonomy.SPECIFICATION)
    assert tau["accuracy"] == 0.0 and tau["majority_accuracy"] == 0.9
    assert evaluation["measurable"] and not evaluation["beats_majority"]
    assert evaluation["worst_source"] == "tau_bench" and evaluation["cross_fit_folds"] == "sources"
    classes = {
        r["failure_class"]
        for r in warehouse.query_rows("SELECT failure_class FROM omium_failure_classes FINAL")
    }
    assert classes == {taxonomy.UNKNOWN}


def random_source() -> Any:
    """A seeded random source (the tests' data must not move between runs)."""
    import random

    return random.Random(18)


def test_the_predictor_stores_held_out_figures_per_source(seeded: Seeded, tmp_path: Path) -> None:
    """The registered predictor's metrics are one row per source left out (fitted on the others),
    and the stored AUROC and its check are the lowest of those, never the sources pooled: every
    imported Who&When run is a failure, so pooling lets the source's identity score."""
    from omium.models import prediction

    wh = seeded.warehouse
    res = resources(wh, tmp_path)
    for day in spans.days_with_spans(wh):
        assert dg.materialize(DAILY, partition_key=str(day), resources=res).success
    result = dg.materialize([A.failure_predictor], resources=res)
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    materialised = result.asset_materializations_for_node("failure_predictor")[0].metadata

    labels = {
        r["run_id"]: r["failed"]
        for r in wh.query_rows("SELECT run_id, failed FROM omium_failure_labels FINAL")
    }
    source = {run.run_id: run.source for run in seeded.imported} | {run_id: "omium" for run_id in seeded.live}
    (model,) = wh.query_rows(
        "SELECT metrics, params, training_rows FROM omium_models FINAL WHERE model_name = 'failure_predictor_k4'"
    )
    metrics, params = json.loads(model["metrics"]), json.loads(model["params"])
    assert "auroc_mean" not in metrics and metrics["evaluation"] == "held out per source"
    rows = {r["held_out"]: r for r in metrics["held_out"]}
    assert set(rows) == {"omium", "who_and_when", "tau_bench"} == set(metrics["sources"])
    for name, row in rows.items():
        members = [r for r in labels if source.get(r) == name]
        assert row["runs"] == len(members) == metrics["sources"][name]
        assert row["failed"] == sum(labels[r] for r in members)
        assert row["training_runs"] == len(labels) - len(members)  # fitted on the other sources only
        assert 0.0 <= row["mean_risk"] <= 1.0 and 0.0 <= row["brier"] <= 1.0
    # Every Who&When run is a failure: no AUROC for it, its mean risk and Brier score instead.
    assert rows["who_and_when"]["failed"] == rows["who_and_when"]["runs"]
    assert rows["who_and_when"]["auroc_mean"] is None and "one outcome" in rows["who_and_when"]["note"]
    tau = rows["tau_bench"]
    assert 0.0 <= tau["auroc_low"] <= tau["auroc_high"] <= 1.0 and 0.0 <= tau["auroc_mean"] <= 1.0

    measured = [r for r in rows.values() if r["auroc_mean"] is not None]
    lowest = min(measured, key=lambda r: r["auroc_mean"])
    assert metrics["measurable"] and metrics["auroc_min"] == lowest["auroc_mean"]
    assert metrics["auroc_min_source"] == lowest["held_out"]
    assert materialised["auroc_k4"].value == metrics["auroc_min"]
    assert check.passed == (metrics["auroc_min"] > 0.5)
    assert "held out" in (check.description or "") and lowest["held_out"] in (check.description or "")
    # The registry records what the model was fitted on: every labelled run, of every source.
    assert set(params["training_runs"]) == set(labels) and model["training_rows"] == len(labels)

    # The pooled figure (grouped CV over the same runs, all sources together) is stored nowhere.
    by_run = {run_id: A._turns(run) for (run_id,), run in A._step_frame(wh).group_by(["run_id"])}
    ids = sorted(r for r in labels if r in by_run)
    tasks = {r.run_id: f"{r.source}:{r.task_id}" if r.task_id else r.run_id for r in seeded.imported}
    pooled = prediction.evaluate(
        [by_run[r] for r in ids], [int(labels[r]) for r in ids], [tasks.get(r, r) for r in ids], k=4, seeds=1
    )["auroc_mean"]
    stored = [metrics["auroc_min"], *(r["auroc_mean"] for r in measured)]
    assert all(abs(pooled - figure) > 1e-9 for figure in stored)


def test_the_predictor_check_says_not_measurable_without_two_sources_of_both_outcomes() -> None:
    rows = [
        {
            "held_out": "who_and_when",
            "runs": 40,
            "failed": 40,
            "auroc_mean": float("nan"),
            "note": "no AUROC",
        },
        {
            "held_out": "tau_bench",
            "runs": 80,
            "failed": 30,
            "auroc_mean": 0.5,
            "note": "training runs hold one outcome: the base rate for every run",
        },
    ]
    summary = A._held_out_summary(rows)
    assert not summary["measurable"] and summary["auroc_min"] is None
    assert summary["why_not"].startswith("not measurable: 1 source(s) with both outcomes")
    rows.append({"held_out": "omium", "runs": 7, "failed": 4, "auroc_mean": 0.42, "note": ""})
    rows[1] |= {"auroc_mean": 0.66, "note": ""}
    summary = A._held_out_summary(rows)
    assert summary["measurable"] and (summary["auroc_min"], summary["auroc_min_source"]) == (0.42, "omium")


def test_the_predictor_with_live_runs_only_says_not_measurable(
    warehouse: ClickHouseWarehouse, tmp_path: Path
) -> None:
    """One source (a user's own runs, nothing imported): no source can be held out from a model
    fitted on the others, so no quality is claimed; the model is still trained and registered."""
    from tests.pipelines.conftest import LIVE, record_live_runs

    record_live_runs(warehouse, LIVE)
    res = resources(warehouse, tmp_path)
    for day in spans.days_with_spans(warehouse):
        assert dg.materialize(DAILY, partition_key=str(day), resources=res).success
    result = dg.materialize([A.failure_predictor], resources=res)
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed
    assert "not measurable: 1 source(s) of labelled runs" in (check.description or "")
    (model,) = warehouse.query_rows(
        "SELECT metrics FROM omium_models FINAL WHERE model_name = 'failure_predictor_k4'"
    )
    metrics = json.loads(model["metrics"])
    assert metrics["sources"] == {"omium": len(LIVE)} and metrics["held_out"] == []
    assert metrics["auroc_min"] is None and not metrics["measurable"] and "auroc_mean" not in metrics
    assert "at least two sources are needed" in metrics["why_not"]  # evaluate_held_out's error, said
    # With one source the training runs are scored by models fitted on the other folds of its runs.
    result = dg.materialize(
        [A.failure_predictions],
        resources=res,
        run_config={"ops": {"failure_predictions": {"config": {"all_runs": True}}}},
    )
    assert result.success and all(c.passed for c in result.get_asset_check_evaluations())
    models = _registered(warehouse)
    rows = warehouse.query_rows("SELECT run_id, model_version FROM omium_predictions FINAL WHERE k = 4")
    assert rows and all(r["run_id"] not in models[r["model_version"]]["training_runs"] for r in rows)
    assert {models[r["model_version"]]["fold"] for r in rows} <= {"fold1", "fold2", "fold3"}
    metadata = result.asset_materializations_for_node("failure_predictions")[0].metadata
    assert metadata["skipped_in_training_set_k4"].value == len(LIVE) - len(rows)


def _registered(wh: ClickHouseWarehouse) -> dict[str, dict[str, Any]]:
    """Every registered model version: its name and params (training runs, fold, runs it scores)."""
    return {
        r["model_version"]: {"name": r["model_name"], **json.loads(r["params"])}
        for r in wh.query_rows("SELECT model_name, model_version, params FROM omium_models FINAL")
    }


def test_no_run_gets_a_risk_from_a_model_fitted_on_it(seeded: Seeded, tmp_path: Path) -> None:
    """Issue 18, item 2: a labelled run the predictor was fitted on is scored by the model of its
    source's fold, fitted on the other sources only; a run the predictor never saw by the predictor."""
    from tests.pipelines.conftest import record_live_runs

    wh = seeded.warehouse
    res = resources(wh, tmp_path)
    for day in spans.days_with_spans(wh):
        assert dg.materialize(DAILY, partition_key=str(day), resources=res).success
    assert dg.materialize([A.failure_predictor], resources=res).success
    # Runs that arrive after the predictor was fitted: never in its training set.
    unseen = {"unseen-ok": "ok", "unseen-halluc": "hallucination"}
    record_live_runs(wh, unseen)
    for day in spans.days_with_spans(wh):
        assert dg.materialize(DAILY, partition_key=str(day), resources=res).success
    result = dg.materialize(
        [A.failure_predictions],
        resources=res,
        run_config={"ops": {"failure_predictions": {"config": {"all_runs": True}}}},
    )
    assert result.success
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["no_run_scored_by_its_own_model"].passed

    models = _registered(wh)
    predictor = {
        r["model_version"]
        for r in wh.query_rows(
            "SELECT model_version FROM omium_models FINAL WHERE model_name = 'failure_predictor_k4'"
        )
    }
    (version,) = predictor
    trained = set(models[version]["training_runs"])
    source = {run.run_id: run.source for run in seeded.imported} | dict.fromkeys(seeded.live, "omium")
    assert trained == set(source)  # every labelled run of the seeded warehouse, none of the unseen
    rows = wh.query_rows("SELECT run_id, model_version, k FROM omium_predictions FINAL")
    for row in rows:
        assert row["run_id"] not in set(models[row["model_version"]]["training_runs"]), row
    at_k4 = {r["run_id"]: models[r["model_version"]] for r in rows if r["k"] == 4}
    assert set(at_k4) == trained | set(unseen)  # every run scored: nothing fell through
    for run_id in trained:
        fold = at_k4[run_id]
        assert fold["name"] == "failure_predictor_k4_cross_fit" and fold["fold"] == source[run_id]
        assert run_id in fold["scores"]
        assert not {r for r in fold["training_runs"] if source[r] == source[run_id]}  # other sources only
    for run_id in unseen:
        assert at_k4[run_id]["name"] == "failure_predictor_k4"
    metadata = result.asset_materializations_for_node("failure_predictions")[0].metadata
    assert (
        metadata["cross_fitted_k4"].value == len(trained)
        and metadata["skipped_in_training_set_k4"].value == 0
    )


def test_a_training_run_without_a_model_fitted_without_it_gets_no_risk(
    warehouse: ClickHouseWarehouse, tmp_path: Path
) -> None:
    """The predictions' choice of model: the predictor for runs it never saw, a cross-fitted model
    only for the runs it scores and was not fitted on, nothing otherwise (nor for any run when the
    version did not record its training set)."""
    from sklearn.linear_model import LogisticRegression

    x, y = [[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1]
    directory = tmp_path / "models"

    def save(name: str, c: float, params: dict[str, Any] | None) -> Any:
        model = LogisticRegression(C=c).fit(x, y)
        version = registry.save(warehouse, directory, name, model, training_rows=4, metrics={}, params=params)
        return registry.get(warehouse, name, version.version)

    fold = save("failure_predictor_k4_cross_fit", 1.0, {"training_runs": ["b", "c"], "scores": ["a", "c"]})
    main = save(
        "failure_predictor_k4", 2.0, {"training_runs": ["a", "b", "c"], "cross_fit": {"f": fold.version}}
    )
    scorers, skipped = A._scorers(warehouse, main, 4, ["a", "b", "c", "new"])
    assert [(v, runs) for _, v, runs in scorers] == [(main.version, ["new"]), (fold.version, ["a"])]
    assert skipped == ["b", "c"]  # b: no fold scores it; c: its fold was fitted on it
    legacy = save("failure_predictor_k4", 3.0, None)
    assert A._scorers(warehouse, legacy, 4, ["a", "new"]) == ([], ["a", "new"])
