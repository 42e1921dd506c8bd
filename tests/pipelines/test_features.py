"""Edges, features and labels from spans, on small hand-made runs."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl

from omium.pipelines import features, labels

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def span(run: str, sid: str, agent: str, i: int, **extra: object) -> dict[str, object]:
    row: dict[str, object] = {
        "day": T0.date(),
        "run_id": run,
        "trace_id": run,
        "span_id": sid,
        "parent_span_id": "",
        "ts": T0 + dt.timedelta(seconds=i),
        "duration_ms": 10.0,
        "span_name": f"step {i}",
        "agent": agent,
        "operation": "invoke_agent",
        "status": "ok",
        "error_type": "",
        "step_index": i,
        "role": "assistant",
        "handoff_verdict": "",
        "producer_span_id": "",
        "content": "",
        "tool_calls": "",
        "input_tokens": 0,
        "output_tokens": 0,
    }
    return row | extra


def test_edges_of_each_kind() -> None:
    frame = pl.DataFrame(
        [
            span("r", "a", "kyc", 0, span_name="state_write customers/c1"),
            span("r", "b", "kyc", 1, span_name="handoff_send kyc->scorer"),
            span("r", "c", "scorer", 2, producer_span_id="b", handoff_verdict="stale"),
            span("r", "d", "scorer", 3, span_name="state_read customers/c1"),
            span("r", "e", "scorer", 4, span_name="state_read orders/o1"),
            span("r", "f", "tool:x", -1, parent_span_id="d"),
        ]
    )
    edges = {
        (e["source"], e["target"], e["kind"]): e for e in features.run_edges(frame, {"orders/o1": "crm"})
    }
    assert (
        edges[("kyc", "scorer", "handoff")]["errors"] == 1
        and edges[("kyc", "scorer", "handoff")]["detail"] == "stale"
    )
    assert edges[("kyc", "scorer", "state")]["detail"] == "customers/c1"  # written in the run
    assert ("crm", "scorer", "state") in edges  # written by another run, per the shared-state log
    assert edges[("scorer", "tool:x", "parent")]["count"] == 1
    assert edges[("kyc", "scorer", "sequence")]["count"] == 1


def test_run_features_count_what_went_wrong() -> None:
    frame = pl.DataFrame(
        [
            span("r", "a", "a", 0, content="calling the tool", span_name="call"),
            span(
                "r",
                "b",
                "t",
                1,
                role="tool",
                operation="execute_tool",
                status="error",
                content="Traceback: error",
            ),
            span("r", "c", "a", 1, content="retrying", span_name="call"),  # the same step again: a retry
            span("r", "d", "b", 2, handoff_verdict="rejected", input_tokens=10),
            span(
                "r",
                "e",
                "b",
                3,
                handoff_verdict="stale",
                input_tokens=30,
                duration_ms=500.0,
                span_name="call",
            ),
        ]
    )
    (row,) = features.run_features(frame)
    f = row["features"]
    assert f["retries"] == 1 and f["tool_errors"] >= 1 and f["error_spans"] == 1
    assert f["handoffs_rejected"] == 1 and f["handoffs_stale"] == 1
    assert f["token_growth"] > 0 and f["latency_outliers"] == 1 and f["agents"] == 3
    steps = features.step_feature_rows(frame)
    assert [s["features"]["attempts"] for s in steps] == [1.0, 2.0, 2.0, 1.0, 1.0]


def base(**extra: object) -> dict[str, object]:
    return {
        "run_id": "r",
        "imported": False,
        "truth_failed": False,
        "truth_source": "",
        "mistake_reason": "",
        "status": "completed",
        "failure": "",
        "rejected": 0,
        "reject_reason": "",
        "error_types": [],
        "tool_errors": 0,
        "trigger": "",
        "incident_message": "",
    } | extra


def test_labels_prefer_the_strongest_source() -> None:
    assert labels.label(base())[0] is False
    failed, found, source = labels.label(
        base(imported=True, truth_failed=True, mistake_reason="did not verify")
    )
    assert failed and found.mast_code == "FM-3.2" and source == "ground_truth"
    failed, found, source = labels.label(base(rejected=1, reject_reason="wrong schema"))
    assert failed and found.failure_class == "communication_protocol" and source == "review"
    # A recovered run keeps the incident the supervisor detected.
    failed, found, source = labels.label(base(trigger="stale_handoff", incident_message="moved on"))
    assert failed and found.failure_class == "state_synchronisation" and source == "incident"
    # An approval gate alone is not a failure.
    gate = json.dumps({"trigger": "high_value_operation", "message": "above threshold"})
    assert labels.label(base(failure=gate))[0] is False
    failed, found, _ = labels.label(base(status="failed", tool_errors=2))
    assert failed and found.failure_class == "tool_invocation"
