"""Run detail's pipeline root causes under Streamlit's AppTest (issue 18, item 3): one line per
method that produced a result, each with its method name and confidence, "unknown" where the
method named nothing, and an imported annotation shown apart from every result."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import omium
from omium.collector.server import RunningServer
from omium.dashboards.console import views
from omium.sdk import runs as sdk_runs
from omium.sdk.store import CheckpointStore
from omium.warehouse import ClickHouseWarehouse

APP = str(Path(__file__).resolve().parents[2] / "src/omium/dashboards/console/streamlit_app.py")
RUN = "rc-two-methods"


@omium.step(name="console_rc_lookup")
def lookup(customer: str) -> dict[str, str]:
    return {"customer": customer, "tier": "gold"}


@omium.workflow(name="console_rc_flow")
def flow(customer: str) -> None:
    lookup(customer)
    raise ValueError("the tier was wrong")


@pytest.fixture
def store(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[CheckpointStore]:
    """The server's control store; the console talks to the server."""
    monkeypatch.setenv("OMIUM_SERVER_URL", server.url)
    monkeypatch.setenv("OMIUM_API_TOKEN", "test-token")
    monkeypatch.delenv("OMIUM_CLICKHOUSE_URL", raising=False)
    st.cache_resource.clear()
    st.cache_data.clear()
    yield server.state.store
    from omium.dashboards.console import data

    data.warehouse().close()
    data.store().close()
    st.cache_resource.clear()
    st.cache_data.clear()


def _cause(
    warehouse: ClickHouseWarehouse, method: str, agent: str, step: int, confidence: float, **extra: str
) -> None:
    """A row as the root_causes asset writes it (the verdict left to the table when not given)."""
    evidence = extra.pop("evidence", f"#{step} by {agent}")
    columns = {
        "run_id": RUN,
        "agent": agent,
        "step_index": step,
        "span_id": "",
        "confidence": confidence,
        "failure_class": "specification",
        "evidence": json.dumps(evidence.split("\n")),
        "method": method,
        "model_version": "m@1",
        **extra,
    }
    names = ", ".join(columns)
    values = ", ".join(
        f"{{{k}:{'Int32' if k == 'step_index' else 'Float64' if k == 'confidence' else 'String'}}}"
        for k in columns
    )
    warehouse.command(
        f"INSERT INTO omium_root_causes ({names}, created_at) VALUES ({values}, now64(6))",
        columns,
    )


def _root_cause_section() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("app_pages/run_detail.py")
    at.query_params.update(run=RUN)
    at.run()
    at.segmented_control(key="detail_section").set_value("Root cause").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_each_methods_root_cause_is_shown_with_unknown_said(
    store: CheckpointStore, warehouse: ClickHouseWarehouse
) -> None:
    with pytest.raises(ValueError):
        sdk_runs.run(flow, "cust-1", run_id=RUN, store=store)
    _cause(warehouse, "attribution_model", "lookup_agent", 0, 0.71)
    _cause(
        warehouse,
        "judge_all_at_once",
        "",
        -1,
        0.0,
        evidence="unknown: the answer named no agent of the run",
        verdict="unknown",
    )
    # An older answer of the same method is replaced, not shown beside the new one.
    _cause(warehouse, "attribution_model", "lookup_agent", 0, 0.74)
    warehouse.command(
        "INSERT INTO omium_ground_truth (run_id, source, source_id, failed, mistake_agent, mistake_step, "
        "mistake_reason, imported_at) VALUES ({r:String}, 'who_and_when', 'x.json', true, 'Planner', 3, "
        "'the plan skipped a check', now64(6))",
        {"r": RUN},
    )
    # The run's failure label: its class is an annotation beside each result's (the classifier's).
    warehouse.command(
        "INSERT INTO omium_failure_labels (day, run_id, failed, failure_class, mast_code, label_source, "
        "evidence, built_at) VALUES (today(), {r:String}, true, 'communication_protocol', '', 'review', "
        "'rejected in review', now64(6))",
        {"r": RUN},
    )
    text = [m.value for m in _root_cause_section().markdown]
    results = [line for line in text if line.startswith("Root cause: ")]
    assert results == [
        "Root cause: step #0 of **lookup_agent** · specification (annotation: communication_protocol, "
        "review) · attribution_model (confidence 0.74)",
        "Root cause: **unknown**: no agent and step at or above its threshold · specification "
        "(annotation: communication_protocol, review) · judge_all_at_once (confidence 0.00)",
    ]
    assert "- unknown: the answer named no agent of the run" in text  # the method's own evidence
    # The annotation is shown apart, as what it is, never as a result.
    assert any(
        line.startswith("Annotation (the dataset's label, not a result): step #3 of **Planner**")
        for line in text
    )
    assert not any("Planner" in line for line in results)


def test_a_verified_result_says_so() -> None:
    row = {
        "method": "counterfactual",
        "confidence": 1.0,
        "verdict": "verified",
        "step_index": 2,
        "agent": "Searcher",
        "failure_class": "specification",
    }
    assert views.method_result(row) == (
        "Root cause: step #2 of **Searcher** · specification · counterfactual (confidence 1.00) "
        "· **verified** by counterfactual replay"
    )
