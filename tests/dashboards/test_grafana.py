"""The Grafana dashboards: every panel's SQL runs against a warehouse holding real and live-like data.

The warehouse holds the public Who&When runs and part of tau-bench (through the importers),
customer-onboarding runs as the collector stores them (the demo's span generator, with hand-offs
linked as the SDK links them), their rows in ``omium_runs``, and rows in the tables the pipelines
derive. Each panel's SQL has its macros and variables substituted as the plugin would, runs
through the warehouse, and must return the columns its panel type needs, with rows.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import random
import re
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from typer.testing import CliRunner

from omium import importers
from omium.cli.main import app
from omium.collector import sample
from omium.config import Settings
from omium.dashboards import grafana
from omium.semconv import OTEL_TRACES_COLUMNS
from omium.warehouse import ClickHouseWarehouse, connect
from omium.warehouse.otlp_rows import to_columns

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "grafana"
DATA = ROOT.parent / "shared" / "data"
WHO = DATA / "who_and_when" / "algorithm_generated"
TAU = DATA / "tau_bench" / "gpt-4o-airline.json"

DEMO_RUNS = 40
STATUSES = ("completed", "completed", "completed", "completed", "failed", "running", "paused", "rejected")
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
WIDE = (dt.datetime(2023, 11, 13, tzinfo=dt.UTC), NOW + dt.timedelta(days=1))  # imported runs: 2023-11-14
EMPTY = (dt.datetime(2001, 1, 1, tzinfo=dt.UTC), dt.datetime(2001, 1, 2, tzinfo=dt.UTC))
DASHBOARDS = grafana.dashboards()
# Panels that look a trace up by its id, whatever the time range (as the plugin's trace view does).
LOOKUPS = {
    (grafana.TRACE_EXPLORER_UID, "Trace"),
    (grafana.TRACE_EXPLORER_UID, "Spans of the trace"),
    ("omium-failure-risk", "Failure predictor, held out per source"),  # the latest version, whenever
}
PANELS = [(d["uid"], p) for d in DASHBOARDS for p in d["panels"]]


@dataclass
class Loaded:
    """The test warehouse and what was put into it, for expectations computed without SQL."""

    warehouse: ClickHouseWarehouse
    imported: list[importers.ImportedRun]
    spans: list[Span] = field(default_factory=list)
    status: dict[str, str] = field(default_factory=dict)
    latest_risk: dict[str, float] = field(default_factory=dict)
    trace_id: str = ""  # a demo trace with a failing tool call


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _attr(span: Span, key: str) -> str:
    for kv in span.attributes:
        if kv.key == key:
            value = kv.value
            return value.string_value if value.HasField("string_value") else str(value.int_value)
    return ""


def _demo_runs(rng: random.Random, start_ns: int) -> Iterator[tuple[str, list[Span]]]:
    """Onboarding runs whose agents hand off to the next one, linked as the SDK links them."""
    for index in range(DEMO_RUNS):
        run_id = f"onboard-{index:03d}"
        spans = sample.trace_spans(rng, run_id, start_ns + index * 60 * 10**9, error_rate=0.25)
        agents = [s for s in spans if s.name.startswith("invoke_agent")]
        for producer, consumer in itertools.pairwise(agents):
            producer.attributes.append(_kv("omium.handoff.verdict", "acked"))
            consumer.attributes.append(_kv("omium.handoff.producer_span_id", producer.span_id.hex()))
            consumer.links.add(
                trace_id=producer.trace_id,
                span_id=producer.span_id,
                attributes=[_kv("omium.handoff.seq", "0")],
            )
        yield run_id, spans


def _insert(wh: ClickHouseWarehouse, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
    names = list(rows[0])
    wh.insert(table, [[row[n] for row in rows] for n in names], names)


HELD_OUT = [
    {"held_out": "omium", "runs": 7, "failed": 4, "auroc_mean": 0.42, "auroc_low": 0.1, "auroc_high": 0.8}
    | {"brier": 0.3, "base_rate_brier": 0.26, "mean_risk": 0.61, "note": ""},
    {"held_out": "tau_bench", "runs": 80, "failed": 30, "auroc_mean": 0.6612, "auroc_low": 0.55}
    | {"auroc_high": 0.77, "brier": 0.22, "base_rate_brier": 0.24, "mean_risk": 0.4, "note": ""},
    {"held_out": "who_and_when", "runs": 40, "failed": 40, "auroc_mean": None, "auroc_low": None}
    | {"auroc_high": None, "brier": 0.2, "base_rate_brier": 0.35, "mean_risk": 0.58}
    | {"note": "held-out runs hold one outcome: no AUROC"},
]


def _predictor(trained_at: dt.datetime, metrics: dict[str, Any]) -> dict[str, Any]:
    """A registry row of the failure predictor at k = 4, as omium.pipelines.registry.save writes it."""
    return {
        "model_name": "failure_predictor_k4",
        "model_version": f"v{trained_at:%d%H}",
        "trained_at": trained_at,
        "training_rows": 127,
        "metrics": json.dumps(metrics),
        "params": "{}",
        "artifact_path": "/nowhere",
    }


def _load(wh: ClickHouseWarehouse) -> Loaded:
    imported = importers.read_who_and_when(WHO) + importers.read_tau_bench(TAU)[:40]
    importers.write(wh, imported)
    loaded = Loaded(wh, imported)
    rng = random.Random(20240611)
    start = NOW - dt.timedelta(hours=2)
    runs, predictions, classes, causes = [], [], [], []
    for index, (run_id, spans) in enumerate(_demo_runs(rng, int(start.timestamp()) * 10**9)):
        loaded.spans.extend(spans)
        status = STATUSES[index % len(STATUSES)]
        loaded.status[run_id] = status
        began = start + dt.timedelta(minutes=index)
        ended = None if status in ("running", "paused") else began + dt.timedelta(seconds=4)
        failing = [s for s in spans if s.status.code == s.status.STATUS_CODE_ERROR]
        if failing and not loaded.trace_id:
            loaded.trace_id = spans[0].trace_id.hex()
        # An older version of each run says "running": FINAL must read the latest only.
        for version, row_status in ((1, "running"), (2, status)):
            runs.append(
                {
                    "run_id": run_id,
                    "workflow": "customer_onboarding",
                    "status": row_status,
                    "version": version,
                    "started_at": began,
                    "updated_at": began + dt.timedelta(seconds=version),
                    "ended_at": ended if version == 2 else None,
                    "error": "credit_bureau timed out" if status == "failed" else "",
                }
            )
        # Two predictions: the later one counts, whatever its value.
        early, late = rng.random(), rng.random()
        loaded.latest_risk[run_id] = late
        for minutes, risk, k in ((1, early, 3), (3, late, 6)):
            predictions.append(
                {
                    "run_id": run_id,
                    "model_version": "m1",
                    "k": k,
                    "risk": risk,
                    "steps_seen": k,
                    "predicted_at": began + dt.timedelta(minutes=minutes),
                }
            )
        if status in ("failed", "rejected"):
            cls = "tool_invocation" if status == "failed" else "communication_protocol"
            classes.append(
                {
                    "run_id": run_id,
                    "failure_class": cls,
                    "confidence": 0.8,
                    "model_version": "c1",
                    "classified_at": NOW,
                }
            )
            culprit = failing[0] if failing else spans[1]
            causes.append(
                {
                    "run_id": run_id,
                    "agent": _attr(culprit, "gen_ai.agent.name"),
                    "step_index": int(_attr(culprit, "omium.step_index")),
                    "span_id": culprit.span_id.hex(),
                    "confidence": 0.7,
                    "failure_class": cls,
                    "evidence": f"{culprit.name} failed",
                    "method": "model",
                    "model_version": "a1",
                    "created_at": NOW,
                }
            )
    # Versioned tables hold duplicates until merged: keep them unmerged, so a read without FINAL
    # double-counts. Spans arrive twice (OTLP delivery is at-least-once); runs in two versions.
    for table in ("otel_traces", "omium_runs"):
        wh.command(f"SYSTEM STOP MERGES {table}")
    columns = to_columns(sample.export_request(loaded.spans))
    for _ in range(2):
        wh.insert("otel_traces", columns.columns, OTEL_TRACES_COLUMNS)
    _insert(wh, "omium_runs", [r for r in runs if r["version"] == 1])
    _insert(wh, "omium_runs", [r for r in runs if r["version"] == 2])
    _insert(wh, "omium_predictions", predictions)
    # A row an older build wrote as the label itself: not a result, no panel counts it.
    stale = next(r for r in imported if r.failed)
    classes.append(
        {
            "run_id": stale.run_id,
            "failure_class": "tool_invocation",
            "confidence": 1.0,
            "model_version": "label",
            "classified_at": NOW,
        }
    )
    _insert(wh, "omium_failure_classes", classes)
    # Imported failures: the ground truth's agent and step as root causes and labels.
    labels = []
    day = dt.date(2023, 11, 14)
    for index, run in enumerate(r for r in imported if r.failed):
        labels.append(
            {
                "day": day,
                "run_id": run.run_id,
                "failed": True,
                "failure_class": ("specification", "inter_agent_misalignment", "tool_invocation")[index % 3],
                "mast_code": "FM-1.1" if index % 3 == 0 else "",
                "label_source": run.source,
                "evidence": run.mistake_reason[:200],
                "built_at": NOW,
            }
        )
        if run.mistake_agent:
            causes.append(
                {
                    "run_id": run.run_id,
                    "agent": run.mistake_agent,
                    "step_index": run.mistake_step,
                    "span_id": "",
                    "confidence": 1.0,
                    "failure_class": labels[-1]["failure_class"],
                    "evidence": run.mistake_reason[:200],
                    "method": "attribution_model",
                    "model_version": "",
                    "created_at": NOW - dt.timedelta(hours=1),
                }
            )
    _insert(wh, "omium_failure_labels", labels)
    _insert(wh, "omium_root_causes", causes)
    # The failure predictor, registered twice: before with a figure over all sources pooled, now
    # with one row per source held out (as the failure_predictor asset stores them).
    _insert(wh, "omium_models", [_predictor(NOW - dt.timedelta(days=2), {"k": 4, "auroc_mean": 0.86})])
    _insert(wh, "omium_models", [_predictor(NOW - dt.timedelta(hours=2), {"k": 4, "held_out": HELD_OUT})])
    # The pipeline's daily agent graph, built twice: FINAL keeps the later build.
    edges = [
        ("customer_onboarding", "kyc_verification_agent"),
        ("kyc_verification_agent", "credit_score_agent"),
        ("credit_score_agent", "terms_generator_agent"),
    ]
    for built, calls in ((NOW - dt.timedelta(hours=1), 1), (NOW, DEMO_RUNS)):
        _insert(
            wh,
            "omium_agent_edges",
            [
                {
                    "day": NOW.date(),
                    "source": source,
                    "target": target,
                    "runs": calls,
                    "calls": calls,
                    "errors": 2,
                    "error_rate": 2 / calls,
                    "p50_ms": 900.0,
                    "p95_ms": 950.0,
                    "tokens": 1000 * calls,
                    "built_at": built,
                }
                for source, target in edges
            ],
        )
    return loaded


@pytest.fixture(scope="module")
def loaded(omium_home: Path) -> Iterator[Loaded]:
    """One warehouse database for the module (loading it is the slow part)."""
    settings = Settings(home=omium_home, database=f"t_{uuid.uuid4().hex[:12]}")
    wh = connect(settings, mode="embedded")
    assert isinstance(wh, ClickHouseWarehouse)
    try:
        yield _load(wh)
    finally:
        wh.command("DROP DATABASE IF EXISTS {db:Identifier}", {"db": settings.database})
        wh.close()


# --- Running panels.


def _defaults(dashboard: Mapping[str, Any]) -> dict[str, str | list[str]]:
    """Each variable's value as the dashboard opens (query variables without one: left out)."""
    values: dict[str, str | list[str]] = {}
    for variable in dashboard["templating"]["list"]:
        current = variable.get("current", {})
        if variable["type"] != "datasource" and "value" in current:
            value = current["value"]
            values[variable["name"]] = "$__all" if value == ["$__all"] else value
    return values


def _run(
    loaded: Loaded,
    sql: str,
    variables: Mapping[str, str | list[str]],
    span: tuple[dt.datetime, dt.datetime] = WIDE,
    interval_s: float = 3600,
) -> pa.Table:
    return loaded.warehouse.query_arrow(grafana.substitute_macros(sql, *span, interval_s, variables))


def _types(loaded: Loaded, sql: str, variables: Mapping[str, str | list[str]]) -> dict[str, str]:
    """The result's ClickHouse types, which the plugin reads (Arrow would turn DateTime into UInt32)."""
    query = grafana.substitute_macros(sql, *WIDE, 3600, variables)
    return {r["name"]: r["type"] for r in loaded.warehouse.query_rows(f"DESCRIBE TABLE ({query})")}


def _variables(loaded: Loaded, uid: str, **overrides: str | list[str]) -> dict[str, str | list[str]]:
    dashboard = next(d for d in DASHBOARDS if d["uid"] == uid)
    values = _defaults(dashboard)
    if uid == grafana.TRACE_EXPLORER_UID:
        values["trace_id"] = loaded.trace_id
    values.update(overrides)
    return values


def _frames(loaded: Loaded, uid: str, panel: Mapping[str, Any], **variables: Any) -> dict[str, pa.Table]:
    values = _variables(loaded, uid, **variables)
    return {t["refId"]: _run(loaded, t["rawSql"], values) for t in panel["targets"]}


def _rows(loaded: Loaded, uid: str, title: str, **variables: Any) -> list[dict[str, Any]]:
    panel = next(p for u, p in PANELS if u == uid and p["title"] == title)
    (frame,) = _frames(loaded, uid, panel, **variables).values()
    return frame.to_pylist()


def _bare(kind: str) -> str:
    return re.sub(r"^(Nullable|LowCardinality)\((.*)\)$", r"\2", kind)


def _is_text(kind: str) -> bool:
    return _bare(_bare(kind)) in ("String", "FixedString") or _bare(kind).startswith("FixedString")


def _is_number(kind: str) -> bool:
    return re.match(r"(U?Int\d+|Float\d+|Decimal)", _bare(kind)) is not None


def _is_time(kind: str) -> bool:
    return _bare(kind).startswith(("DateTime", "Date"))


NODE_FIELDS = {"id", "title", "mainstat", "secondarystat", "arc__success", "arc__errors"}
EDGE_FIELDS = {"id", "source", "target", "mainstat"}
TRACE_FIELDS = [
    "traceID",
    "spanID",
    "parentSpanID",
    "serviceName",
    "operationName",
    "startTime",
    "duration",
    "tags",
    "serviceTags",
    "statusCode",
    "logs",
    "references",
]


def _check_frame_for(panel: Mapping[str, Any], frames: Mapping[str, pa.Table], types: dict[str, str]) -> None:
    """The columns the panel type reads (``types``: ClickHouse's, of a one-target panel), with rows."""
    kind = panel["type"]
    for ref_id, frame in frames.items():
        assert frame.num_rows > 0, f"{ref_id} returned no rows"
        assert len(set(frame.column_names)) == frame.num_columns, frame.column_names
    if kind == "nodeGraph":
        assert set(frames) == {"nodes", "edges"}
        nodes, edges = frames["nodes"].to_pylist(), frames["edges"].to_pylist()
        assert NODE_FIELDS <= set(frames["nodes"].column_names)
        assert EDGE_FIELDS <= set(frames["edges"].column_names)
        ids = [n["id"] for n in nodes]
        assert len(ids) == len(set(ids)) and all(ids)
        for node in nodes:
            assert math.isclose(node["arc__success"] + node["arc__errors"], 1.0)
        assert len({e["id"] for e in edges}) == len(edges)
        for edge in edges:  # the panel cannot draw an edge to a node it was not given
            assert edge["source"] in ids and edge["target"] in ids, edge
        return
    (frame,) = frames.values()
    (target,) = panel["targets"]
    assert list(types) == frame.column_names
    if kind == "timeseries":
        assert target["format"] == grafana.Format.TIME_SERIES
        times = [n for n, t in types.items() if _is_time(t)]
        assert times == ["time"], types
        assert any(_is_number(t) for t in types.values()), types
        column = frame.column("time").to_pylist()
        assert column == sorted(column), "the plugin wants time series ordered by time"
    elif kind == "traces":
        assert target["format"] == grafana.Format.TRACE
        assert frame.column_names[: len(TRACE_FIELDS)] == TRACE_FIELDS
        assert _is_number(types["startTime"]) and _is_number(types["duration"])
        tags = frame.column("tags").to_pylist()[0]
        assert tags and all(set(dict(t)) == {"key", "value"} for t in tags)
    elif kind == "stat":
        assert frame.num_rows == 1 and all(_is_number(t) for t in types.values()), types
        assert any(v for v in frame.to_pylist()[0].values()), "every statistic is zero"
    elif kind in ("piechart", "barchart"):
        assert any(_is_text(t) for t in types.values()) and any(_is_number(t) for t in types.values()), types
        if kind == "barchart":
            assert _is_text(types[panel["options"]["xField"]])
    else:
        assert kind == "table", kind
    if kind != "traces":
        assert target["format"] in (grafana.Format.TABLE, grafana.Format.TIME_SERIES)
    for override in panel["fieldConfig"]["overrides"]:  # overrides name columns the SQL returns
        assert override["matcher"]["options"] in frame.column_names, override


@pytest.mark.parametrize(("uid", "panel"), PANELS, ids=[f"{u}/{p['title']}" for u, p in PANELS])
def test_every_panel_returns_what_its_type_needs(loaded: Loaded, uid: str, panel: dict[str, Any]) -> None:
    frames = _frames(loaded, uid, panel)
    target = panel["targets"][0]
    _check_frame_for(panel, frames, _types(loaded, target["rawSql"], _variables(loaded, uid)))


@pytest.mark.parametrize(("uid", "panel"), PANELS, ids=[f"{u}/{p['title']}" for u, p in PANELS])
def test_every_panel_respects_the_time_range(loaded: Loaded, uid: str, panel: dict[str, Any]) -> None:
    if (uid, panel["title"]) in LOOKUPS:
        return
    values = _variables(loaded, uid)
    for target in panel["targets"]:
        frame = _run(loaded, target["rawSql"], values, EMPTY, 60)
        for row in frame.to_pylist():
            for value in row.values():
                assert not isinstance(value, int | float) or not value or math.isnan(value), row


def test_variable_queries_list_agents_and_traces(loaded: Loaded) -> None:
    for dashboard in DASHBOARDS:
        values = _variables(loaded, dashboard["uid"])
        for variable in dashboard["templating"]["list"]:
            if variable["type"] != "query":
                continue
            assert variable["datasource"] == grafana.DATASOURCE_REF
            frame = _run(loaded, variable["query"], values)
            assert frame.num_rows > 0, variable["name"]
            if variable["name"] == "agent":
                imported = {s.agent for r in loaded.imported for s in r.steps}
                assert set(frame.column(0).to_pylist()) == imported | set(sample.AGENTS)
            if variable["name"] == "trace_id":  # value, then label
                assert frame.num_columns == 2 and loaded.trace_id in frame.column(0).to_pylist()
    # Narrowed to one run, the trace variable offers that run's trace.
    explorer = next(d for d in DASHBOARDS if d["uid"] == grafana.TRACE_EXPLORER_UID)
    (traces,) = [v["query"] for v in explorer["templating"]["list"] if v["name"] == "trace_id"]
    frame = _run(loaded, traces, {"run_id": "onboard-000"})
    assert frame.column(1).to_pylist() == ["onboard-000 | invoke_workflow customer_onboarding"]


# --- What the panels say, against what was loaded.


def _demo_expectations(loaded: Loaded, agent: str) -> dict[str, int]:
    spans = [s for s in loaded.spans if _attr(s, "gen_ai.agent.name") == agent]
    failed = [s for s in spans if s.status.code == s.status.STATUS_CODE_ERROR]
    tokens_in = sum(int(_attr(s, "gen_ai.usage.input_tokens") or 0) for s in spans)
    tokens_out = sum(int(_attr(s, "gen_ai.usage.output_tokens") or 0) for s in spans)
    return {
        "spans": len(spans),
        "errors": len(failed),
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
    }


def test_agent_health_counts_what_the_agents_did(loaded: Loaded) -> None:
    uid = "omium-agent-health"
    rows = {r["agent"]: r for r in _rows(loaded, uid, "Agents")}
    expected = _demo_expectations(loaded, "kyc_verification_agent")
    kyc = rows["kyc_verification_agent"]
    assert {k: kyc[k] for k in expected} == expected
    assert kyc["calls"] == DEMO_RUNS and kyc["runs"] == DEMO_RUNS  # one invocation per run
    assert 800 <= kyc["p50_ms"] <= 900 <= kyc["p95_ms"] <= 1000  # invocations, not model or tool calls
    who_agents = Counter(s.agent for r in loaded.imported if r.source == "who_and_when" for s in r.steps)
    tau_agents = Counter(s.agent for r in loaded.imported if r.source == "tau_bench" for s in r.steps)
    agent, count = (who_agents + tau_agents).most_common(1)[0]
    assert rows[agent]["spans"] == count and rows[agent]["errors"] == 0
    # One agent selected: only it.
    only = _rows(loaded, uid, "Agents", agent=["credit_score_agent"])
    assert [r["agent"] for r in only] == ["credit_score_agent"]
    activity = _rows(loaded, uid, "Agent activity")[0]
    agent_spans = sum(1 for s in loaded.spans if _attr(s, "gen_ai.agent.name")) + sum(
        1 for r in loaded.imported for s in r.steps if s.agent
    )
    assert activity["agent_spans"] == agent_spans
    assert activity["runs"] == DEMO_RUNS + sum(1 for r in loaded.imported if r.steps)

    statuses = Counter(loaded.status.values())
    assert _rows(loaded, uid, "Runs") == [
        {
            "completed": statuses["completed"],
            "failed": statuses["failed"] + statuses["rejected"],
            "paused": statuses["paused"],
            "in_flight": statuses["running"],
        }
    ]
    assert {r["status"]: r["runs"] for r in _rows(loaded, uid, "Run outcomes")} == dict(statuses)
    failed = _rows(loaded, uid, "Recent failed runs")
    assert {r["run_id"] for r in failed} == {
        r for r, s in loaded.status.items() if s in ("failed", "rejected")
    }
    assert all(r["duration_s"] == 4.0 for r in failed)
    series = _rows(loaded, uid, "Span rate per agent")
    total = sum(r["spans_per_second"] for r in series if r["agent"] == "kyc_verification_agent") * 3600
    assert round(total) == expected["spans"]


def test_agent_graph_has_calls_and_handoffs(loaded: Loaded) -> None:
    uid = "omium-agent-graph"
    panel = next(p for u, p in PANELS if u == uid and p["type"] == "nodeGraph")
    frames = _frames(loaded, uid, panel)
    nodes = {n["id"]: n for n in frames["nodes"].to_pylist()}
    edges = {(e["source"], e["target"]): e for e in frames["edges"].to_pylist()}
    assert nodes["customer_onboarding"]["subtitle"] == "workflow"
    assert nodes["who_and_when"]["subtitle"] == "workflow"
    kyc = _demo_expectations(loaded, "kyc_verification_agent")
    assert nodes["kyc_verification_agent"]["mainstat"] == kyc["spans"]
    assert math.isclose(nodes["kyc_verification_agent"]["arc__errors"], kyc["errors"] / kyc["spans"])
    call = edges[("customer_onboarding", "kyc_verification_agent")]
    assert (call["mainstat"], call["detail__calls"], call["detail__handoffs"]) == (DEMO_RUNS, DEMO_RUNS, 0)
    handoff = edges[("kyc_verification_agent", "credit_score_agent")]
    assert (handoff["detail__calls"], handoff["detail__handoffs"]) == (0, DEMO_RUNS)
    assert ("email_sender_agent", "kyc_verification_agent") not in edges
    assert not any(source == target for source, target in edges)
    assert any(source == "who_and_when" for source, _ in edges)
    pipeline = _rows(loaded, uid, "Agent edges per day (pipeline)")
    assert len(pipeline) == 3 and all(r["calls"] == DEMO_RUNS for r in pipeline)  # the later build


def test_trace_explorer_shows_the_trace(loaded: Loaded) -> None:
    uid = grafana.TRACE_EXPLORER_UID
    spans = [s for s in loaded.spans if s.trace_id.hex() == loaded.trace_id]
    traces = {r["traceID"]: r for r in _rows(loaded, uid, "Traces")}
    row = traces[loaded.trace_id]
    assert row["run_id"] == "onboard-000" and row["spans"] == len(spans) == 13
    assert row["errors"] == sum(s.status.code == s.status.STATUS_CODE_ERROR for s in spans)
    assert row["root"] == "invoke_workflow customer_onboarding"
    assert math.isclose(row["duration_ms"], 4000)
    assert list(_rows(loaded, uid, "Traces", run_id="ONBOARD-001")[0].values())[1] == "onboard-001"

    trace = _rows(loaded, uid, "Trace")
    by_id = {r["spanID"]: r for r in trace}
    assert set(by_id) == {s.span_id.hex() for s in spans}
    assert [r["parentSpanID"] for r in trace].count("") == 1
    for source in spans:
        shown = by_id[source.span_id.hex()]
        assert shown["traceID"] == loaded.trace_id and shown["operationName"] == source.name
        assert math.isclose(shown["startTime"], source.start_time_unix_nano / 1e6)
        assert math.isclose(
            shown["duration"], (source.end_time_unix_nano - source.start_time_unix_nano) / 1e6
        )
        tags = {t["key"]: t["value"] for t in map(dict, shown["tags"])}
        assert tags["omium.run_id"] == "onboard-000"
        assert {"key": "service.name", "value": "company-x-onboarding"} in map(dict, shown["serviceTags"])
        if source.status.code == source.status.STATUS_CODE_ERROR:
            assert shown["statusCode"] == 2
            assert [log["name"] for log in shown["logs"]] == ["exception"]
            fields = {f["key"]: f["value"] for f in map(dict, shown["logs"][0]["fields"])}
            assert fields["exception.type"] == "ToolError"
        else:
            assert shown["statusCode"] == 1 and shown["logs"] == []
        producer = _attr(source, "omium.handoff.producer_span_id")
        assert [ref["spanID"] for ref in shown["references"]] == ([producer] if producer else [])
    table = _rows(loaded, uid, "Spans of the trace")
    assert len(table) == 13 and sorted(r["step"] for r in table) == [-1, *range(12)]
    assert _rows(loaded, uid, "Trace", trace_id="0" * 32) == []


def test_failure_risk_reads_the_latest_prediction(loaded: Loaded) -> None:
    uid = "omium-failure-risk"
    risk = loaded.latest_risk
    summary = _rows(loaded, uid, "Risk")[0]
    in_flight = {r for r, s in loaded.status.items() if s in ("running", "paused")}
    assert summary["scored_runs"] == DEMO_RUNS
    assert math.isclose(summary["mean_risk"], round(sum(risk.values()) / DEMO_RUNS, 3))
    assert summary["high_risk"] == sum(v >= 0.5 for v in risk.values())
    assert summary["high_risk_in_flight"] == sum(risk[r] >= 0.5 for r in in_flight)
    higher = _rows(loaded, uid, "Risk", risk_threshold="0.9")[0]
    assert higher["high_risk"] == sum(v >= 0.9 for v in risk.values())
    distribution = _rows(loaded, uid, "Risk distribution")
    assert [r["risk"] for r in distribution][:2] == ["0-10%", "10-20%"] and len(distribution) == 10
    assert sum(r["runs"] for r in distribution) == DEMO_RUNS
    at_risk = _rows(loaded, uid, "Runs in flight by risk")
    assert {r["run_id"] for r in at_risk} == in_flight
    assert [r["risk"] for r in at_risk] == sorted((round(risk[r], 3) for r in in_flight), reverse=True)
    assert all(r["steps_seen"] == 6 for r in at_risk)
    classes = {r["failure_class"]: r for r in _rows(loaded, uid, "Failure classes")}
    assert classes["tool_invocation"]["classifier"] == Counter(loaded.status.values())["failed"]
    failed_imported = sum(r.failed for r in loaded.imported)
    assert sum(r["annotation"] for r in classes.values()) == failed_imported
    assert sum(r["runs"] for r in _rows(loaded, uid, "Failure labels")) == failed_imported
    causes = _rows(loaded, uid, "Root causes")
    assert len(causes) == 100 and {"run_id", "agent", "step_index", "confidence", "evidence"} <= set(
        causes[0]
    )
    blamed = Counter(r.mistake_agent for r in loaded.imported if r.failed and r.mistake_agent)
    agents = _rows(loaded, uid, "Root-cause agents")
    top = max(blamed.values())
    assert len(agents) == 15 and agents[0]["runs"] == top and blamed[agents[0]["agent"]] == top


def test_failure_risk_shows_the_predictor_held_out_per_source(loaded: Loaded) -> None:
    rows = _rows(loaded, "omium-failure-risk", "Failure predictor, held out per source")
    latest = f"v{NOW - dt.timedelta(hours=2):%d%H}"
    assert [r["held_out"] for r in rows] == ["omium", "tau_bench", "who_and_when"]
    assert {r["version"] for r in rows} == {latest}  # the latest version only, never the pooled one
    assert 0.86 not in [v for r in rows for v in r.values()]
    by = {r["held_out"]: r for r in rows}
    assert (by["tau_bench"]["auroc"], by["tau_bench"]["auroc_low"], by["tau_bench"]["auroc_high"]) == (
        0.661,
        0.55,
        0.77,
    )
    assert (
        by["tau_bench"]["warning"] == "" and by["omium"]["warning"] == "no better than chance on this source"
    )
    assert by["who_and_when"]["auroc"] is None and by["who_and_when"]["mean_risk"] == 0.58
    assert by["who_and_when"]["warning"] == "no AUROC: held-out runs hold one outcome: no AUROC"
    assert (by["omium"]["runs"], by["omium"]["failed"]) == (7, 4)


# --- The dashboards' JSON, the committed export and the CLI.


def test_dashboards_use_the_datasource_variable_everywhere() -> None:
    uids = [d["uid"] for d in DASHBOARDS]
    assert uids == ["omium-agent-health", "omium-agent-graph", "omium-trace-explorer", "omium-failure-risk"]
    for dashboard in DASHBOARDS:
        assert dashboard["schemaVersion"] >= 39 and dashboard["id"] is None
        variables = dashboard["templating"]["list"]
        assert variables[0] == {**variables[0], "type": "datasource", "name": "datasource"}
        assert variables[0]["query"] == grafana.PLUGIN_ID
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids))
        for panel, target in grafana.panels(dashboard):
            assert panel["datasource"] == target["datasource"] == grafana.DATASOURCE_REF
            assert target["editorType"] == "sql" and target["rawSql"] and target["refId"]
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24
    kinds = {p["type"] for d in DASHBOARDS for p in d["panels"]}
    assert {"nodeGraph", "traces", "timeseries", "table", "stat", "piechart", "barchart"} <= kinds


def test_sql_holds_only_macros_and_variables() -> None:
    macros = {"timeFilter", "dateFilter", "timeInterval", "interval_s", "conditionalAll"}
    for dashboard in DASHBOARDS:
        declared = {v["name"] for v in dashboard["templating"]["list"]}
        queries = [t["rawSql"] for _, t in grafana.panels(dashboard)]
        queries += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
        for sql in queries:
            for name in re.findall(r"\$\{?(\w+)", sql):
                assert name[2:] in macros if name.startswith("__") else name in declared, name
            assert not re.search(r"\{\w+:\w+", sql), "server-side parameters do not exist in Grafana"
            assert "{" not in sql and "}" not in sql, "a brace is an f-string slip"
            assert not re.search(r"\b1[5-9]\d{8}\b|\d{4}-\d{2}-\d{2}", sql), "a time is written into the SQL"


def test_macros_are_substituted_as_the_plugin_does() -> None:
    start = dt.datetime.fromtimestamp(1415792726.371, dt.UTC)
    end = dt.datetime.fromtimestamp(1447328726.456, dt.UTC)
    sub = grafana.substitute_macros
    assert (
        sub("$__timeFilter(time)", start, end)
        == "time >= toDateTime(1415792726) AND time <= toDateTime(1447328726)"
    )
    assert sub("$__timeFilter_ms(t)", start, end) == (
        "t >= fromUnixTimestamp64Milli(1415792726371) AND t <= fromUnixTimestamp64Milli(1447328726456)"
    )
    assert sub("$__dateFilter(d)", start, end) == "d >= toDate('2014-11-12') AND d <= toDate('2015-11-12')"
    assert (
        sub("$__fromTime $__toTime_ms", start, end)
        == "toDateTime(1415792726) fromUnixTimestamp64Milli(1447328726456)"
    )
    assert sub("$__timeInterval(ts) / $__interval_s", start, end, 20) == (
        "toStartOfInterval(toDateTime(ts), INTERVAL 20 second) / 20"
    )
    assert sub("$__interval_s", start, end, 0.2) == "1"
    assert sub("a IN ($agent)", start, end, variables={"agent": ["x", "y"]}) == "a IN ('x','y')"
    assert sub("'${trace}' = '$trace'", start, end, variables={"trace": "ab"}) == "'ab' = 'ab'"
    cond = "WHERE $__conditionalAll(a IN ($agent), $agent)"
    assert sub(cond, start, end, variables={"agent": "$__all"}) == "WHERE 1=1"
    assert sub(cond, start, end, variables={"agent": ["x"]}) == "WHERE a IN ('x')"
    assert sub("$unknown", start, end) == "$unknown"
    with pytest.raises(ValueError, match="unknown macro"):
        sub("$__timeFiltr(x)", start, end)
    with pytest.raises(ValueError, match="needs arguments"):
        sub("$__timeFilter", start, end)
    with pytest.raises(ValueError, match="is All"):
        sub("a IN ($agent)", start, end, variables={"agent": "$__all"})


def _tree(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): p.read_text() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_committed_dashboards_are_the_export(tmp_path: Path) -> None:
    written = grafana.export(tmp_path)
    assert len(written) == len(DASHBOARDS) + 2
    assert _tree(tmp_path) == _tree(DEPLOY), "run `omium export grafana deploy/grafana` and commit the result"
    for path in (tmp_path / "dashboards").iterdir():
        assert json.loads(path.read_text())["uid"] == path.stem


def test_cli_exports_dashboards_and_provisioning(tmp_path: Path) -> None:
    target = tmp_path / "grafana"
    (target / "dashboards").mkdir(parents=True)
    (target / "dashboards" / "mine.json").write_text("{}")
    result = CliRunner().invoke(
        app, ["export", "grafana", str(target), "--datasource-host", "ch.internal", "--database", "traces"]
    )
    assert result.exit_code == 0, result.output
    for dashboard in DASHBOARDS:
        path = target / "dashboards" / f"{dashboard['uid']}.json"
        assert json.loads(path.read_text()) == json.loads(json.dumps(dashboard))
        assert str(path) in result.output
    assert (target / "dashboards" / "mine.json").read_text() == "{}"  # other files are left alone
    source = yaml.safe_load((target / "provisioning/datasources/clickhouse.yaml").read_text())["datasources"][
        0
    ]
    assert source["uid"] == grafana.DATASOURCE_UID and source["type"] == grafana.PLUGIN_ID
    assert source["jsonData"]["host"] == "ch.internal"
    assert (
        source["jsonData"]["defaultDatabase"] == source["jsonData"]["traces"]["defaultDatabase"] == "traces"
    )
    provider = yaml.safe_load((target / "provisioning/dashboards/omium.yaml").read_text())["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_cli_refuses_a_file_for_a_directory(tmp_path: Path) -> None:
    file = tmp_path / "grafana"
    file.write_text("not a directory")
    runner = CliRunner(env={"COLUMNS": "300"})  # rich would wrap the error box at 80
    result = runner.invoke(app, ["export", "grafana", str(file)])
    assert result.exit_code == 2
    assert "is a file" in result.output
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "dashboards").write_text("")
    result = runner.invoke(app, ["export", "grafana", str(blocked)])
    assert result.exit_code == 2 and "dashboards is a file" in result.output
    result = runner.invoke(app, ["export", "grafana", str(tmp_path / "x"), "--protocol", "grpc"])
    assert result.exit_code == 2 and "native" in result.output
