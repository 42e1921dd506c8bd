"""Every console page under Streamlit's AppTest, against a real server and warehouse.

Runs of Company X are recorded through the server's control API; a worker thread executes what
the console queues (test fix, retry, fork), as `omium worker` would.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from omium.collector.server import RunningServer
from omium.examples.company_x import workflow as company_x
from omium.recovery import supervise
from omium.recovery.worker import Worker
from omium.sdk import runs as sdk_runs
from omium.sdk import tracing
from omium.sdk.remote_store import RemoteStore
from omium.sdk.runs import workflow

APP = str(Path(__file__).resolve().parents[2] / "src/omium/dashboards/console/streamlit_app.py")
SCENARIOS = {
    "k-ok": "ok",
    "k-halluc": "hallucination",
    "k-stale": "stale",
    "k-big": "high_value",
    "k-flaky": "flaky_hallucination",
}


@pytest.fixture
def stack(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[RemoteStore]:
    monkeypatch.setenv("OMIUM_SERVER_URL", server.url)
    monkeypatch.setenv("OMIUM_API_TOKEN", "test-token")
    monkeypatch.delenv("OMIUM_CLICKHOUSE_URL", raising=False)
    st.cache_resource.clear()
    st.cache_data.clear()
    store = RemoteStore(server.url, token="test-token")
    # Spans go to the server's OTLP endpoint, as an instrumented app's would (the pipelines read them).
    previous = tracing._provider
    provider = sdk_runs._warehouse_tracer_provider(store)
    tracing.configure(provider)
    for run_id, scenario in SCENARIOS.items():
        company_x.seed_customer(store, f"cust-{run_id}")
        outcome = supervise(
            company_x.onboard_customer,
            f"cust-{run_id}",
            scenario,
            run_id=run_id,
            store=store,
            sleep=lambda s: None,
        )
        assert outcome.status == ("paused" if scenario in ("hallucination", "high_value") else "completed")
    provider.force_flush()
    provider.shutdown()
    tracing.configure(previous)
    assert server.state.shipper is not None
    server.state.shipper.drain()  # the console's analytics read the warehouse's copy
    stop = threading.Event()
    worker = Worker(
        store,
        {"onboard_customer": company_x.onboard_customer},
        name="console-worker",
        poll_interval=0.05,
        sleep=lambda s: None,
    )
    thread = threading.Thread(target=worker.run_forever, args=(stop,), daemon=True)
    thread.start()
    yield store
    stop.set()
    thread.join(30)
    store.close()
    from omium.dashboards.console import data

    data.warehouse().close()  # the cached connections of this test's server
    data.store().close()
    st.cache_resource.clear()
    st.cache_data.clear()


def page(name: str, **query: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page(f"app_pages/{name}.py")
    at.query_params.update(query)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_monitoring_shows_todays_health(stack: RemoteStore) -> None:
    at = page("monitoring")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Total executions"] == "5"
    assert metrics["Successful"] == "3"  # ok, stale (recovered) and flaky (recovered); two paused
    (definitions,) = [c.value for c in at.caption if c.value.startswith("Successful: ")]
    # k-stale and k-flaky recovered after a detected failure; none failed, two paused: the labels
    # count 0 + 2 + 2 of the 5.
    assert "2 of them after recovering" in definitions and "Failed: 0 failed" in definitions
    assert "paused: 2 awaiting" in definitions and "4 of 5 here" in definitions
    assert int(metrics["Checkpoint rollbacks"]) >= 4
    assert metrics["P99 recovery time"].endswith(" s")
    assert len(at.get("vega_lite_chart")) >= 3
    from datetime import UTC, datetime

    from omium.dashboards.console import data

    buckets = data.trend(datetime(2020, 1, 1, tzinfo=UTC), 5)["bucket"]
    assert str(buckets.dtype).startswith("Datetime"), buckets.dtype  # an axis of times, not of epoch numbers
    assert any("Consensus: " in m.value for m in at.markdown)
    at.toggle(key="monitor_live").set_value(True).run()
    assert not at.exception


def test_runs_filter_and_page(stack: RemoteStore) -> None:
    at = page("runs")
    assert at.dataframe[0].value.shape[0] == 5
    at.selectbox(key="runs_status").set_value("paused").run()
    assert sorted(at.dataframe[0].value["run_id"]) == ["k-big", "k-halluc"]
    at.selectbox(key="runs_status").set_value("").run()
    at.text_input(key="runs_text").set_value("k-sta").run()
    assert list(at.dataframe[0].value["run_id"]) == ["k-stale"]
    # A search for a stale hand-off finds the run that had one (its refused hand-off's error),
    # not every run whose stored policy mentions staleness.
    at.text_input(key="runs_text").set_value("stale").run()
    assert list(at.dataframe[0].value["run_id"]) == ["k-stale"]
    at.text_input(key="runs_text").set_value("no-such-thing").run()
    assert any("No run matches" in i.value for i in at.info)


def show(at: AppTest, section: str) -> AppTest:
    at.segmented_control(key="detail_section").set_value(section).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_run_detail_explains_the_failure(stack: RemoteStore) -> None:
    at = page("run_detail", run="k-halluc")
    assert at.text_input(key="detail_run").value == "k-halluc"
    assert any(e.value.startswith("Failed at step ") for e in at.error)
    (timeline,) = at.get("vega_lite_chart")  # wall-clock labels, not fractions of a second
    assert json.loads(timeline.proto.spec)["encoding"]["x"]["axis"]["format"] == "%H:%M:%S"
    text = " ".join(m.value for m in at.markdown)  # a failed run opens on its root cause
    assert "policy_violation in terms_generator" in text
    assert "llm company-x-scripted produced" in text and "0% APR" in text  # traced to the model's output
    assert "Expected: `2.5%-8.5%`" in text and "apr = 0.0" in text
    assert "State the constraint in the producing agent's prompt" in text
    show(at, "Steps").selectbox(key="detail_step").set_value(0).run()
    assert len(at.json) >= 2  # input and output of the inspected step
    show(at, "Time travel").selectbox(key="diff_from").set_value(0).run()
    assert not at.exception and at.json
    # Time travel: the state each checkpoint kept, rebuilt from the calls completed before it
    # (the workflow's checkpoints are empty marker blocks: their own records hold no outputs).
    from omium.dashboards.console import views

    marks = {c.name: c.seq for c in stack.checkpoints("k-halluc")}
    received = views.checkpoint_state("k-halluc", marks["application_received"])
    scored = views.checkpoint_state("k-halluc", marks["credit_scored"])
    assert received["outputs"] == {} and received["name"] == "application_received"
    agents = {key.split()[1] for key in scored["outputs"]}
    assert {"kyc_verification_agent", "credit_scorer"} <= agents, scored["outputs"]
    assert "terms_generator" not in agents  # it ran after the checkpoint
    assert all(value is not None for value in scored["outputs"].values())
    diff = views.checkpoint_diff("k-halluc", marks["kyc_verified"], marks["credit_scored"])
    assert set(diff["change"]) == {"added"} and all("credit_scorer" in k for k in diff["key"])
    at.selectbox(key="detail_checkpoint").set_value(marks["credit_scored"]).run()
    assert any("credit_scorer" in str(j.value) for j in at.json)  # the page shows the outputs
    audit = show(at, "Audit trail").dataframe[0].value
    assert audit.shape[0] >= 5
    assert str(audit["time"].dtype).startswith("datetime64"), audit["time"].dtype  # not microseconds
    assert any("Consensus: " in m.value for m in show(at, "Hand-offs").markdown)
    assert show(at, "Dependency graph").get("plotly_chart")


def test_rollback_of_a_completed_run_to_a_chosen_checkpoint(stack: RemoteStore) -> None:
    """A completed run is rolled back from Run detail to the checkpoint picked (the latest one
    preselected, the list in run order) and a worker re-runs it from there."""
    import time

    at = page("run_detail", run="k-ok")
    choice = at.selectbox(key="rollback_target")
    marks = ["application_received", "kyc_verified", "credit_scored", "terms_generated", "offer_sent"]
    assert choice.options == marks and choice.value == "offer_sent"
    choice.set_value("kyc_verified").run()
    at.button(key="rollback_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert [s.value for s in at.success] == [
        "Rollback to kyc_verified queued: a worker re-runs k-ok from there."
    ]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        events = [e.kind for e in stack.events("k-ok")]
        if "rolled_back" in events and stack.get_run("k-ok").status == "completed":
            break
        time.sleep(0.2)
    assert "rolled_back" in events and stack.get_run("k-ok").status == "completed", events
    steps = stack.steps("k-ok")
    # What ran after the checkpoint ran again, in the next generation; KYC's calls were kept.
    assert {s.generation for s in steps if s.agent == "credit_scorer"} == {1}
    assert {s.generation for s in steps if s.agent == "kyc_verification_agent"} == {0}


def test_a_recovered_run_says_recovered_not_failed(stack: RemoteStore) -> None:
    """k-stale was refused a stale hand-off, rolled back and retried, and completed: no red banner."""
    at = page("run_detail", run="k-stale")
    assert not at.error, [e.value for e in at.error]
    assert [i.value for i in at.info] == ["Recovered from stale_handoff at step 4/17; the run completed"]
    assert "Nothing failed in this run." not in [s.value for s in show(at, "Root cause").success]


@workflow(name="console_type_error")
def console_type_error() -> None:
    raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")


def test_a_run_that_failed_in_workflow_code_shows_its_error(stack: RemoteStore) -> None:
    with pytest.raises(TypeError):
        sdk_runs.run(console_type_error, run_id="k-typeerror", store=stack)
    at = page("run_detail", run="k-typeerror")
    assert any("TypeError: unsupported operand" in e.value for e in at.error), [e.value for e in at.error]
    at = show(at, "Root cause")
    assert not at.success  # never "Nothing failed in this run."
    assert any("failed outside any recorded call" in e.value for e in at.error)


def test_run_detail_flags_the_stale_edge(stack: RemoteStore) -> None:
    at = show(page("run_detail", run="k-stale"), "Dependency graph")
    warnings = [w.value for w in at.warning]
    assert any(
        "Stale hand-off kyc_verification_agent → credit_scorer" in w and "name is now Jane Doe-Smith" in w
        for w in warnings
    ), warnings


def test_run_detail_shows_what_the_pipelines_derived(
    stack: RemoteStore, warehouse: Any, settings: Any, tmp_path: Path
) -> None:
    import dagster as dg

    from omium.pipelines.defs import assets
    from omium.pipelines.defs.resources import WarehouseResource

    resource = WarehouseResource(
        mode="embedded", database=settings.database, home=str(settings.home), models_dir=str(tmp_path)
    )
    (day,) = {
        r["day"] for r in warehouse.query_rows("SELECT DISTINCT toDate(Timestamp) AS day FROM otel_traces")
    }
    daily = [a for a in assets.ALL_ASSETS if a.partitions_def is not None]
    assert dg.materialize(daily, partition_key=str(day), resources={"warehouse": resource}).success
    rest = [a for a in assets.ALL_ASSETS if a.partitions_def is None]
    config = {"ops": {"failure_predictions": {"config": {"all_runs": True}}}}
    assert dg.materialize(rest, resources={"warehouse": resource}, run_config=config).success
    at = show(page("run_detail", run="k-halluc"), "Root cause")
    text = " ".join(m.value for m in at.markdown)
    assert "Pipeline analysis" in text
    # The runtime chain's row: its step and agent, the classifier's class (unknown on this little
    # data) with the incident's class beside it as the annotation, never in its place.
    (chain,) = [m.value for m in at.markdown if m.value.startswith("Root cause: ") and "runtime_chain" in m.value]
    assert "step #7 of **terms_generator** · " in chain and "(annotation: specification, incident)" in chain
    assert " · specification · " not in chain
    assert "Predicted risk of failure: first 2 turns" in text


def test_unknown_run(stack: RemoteStore) -> None:
    at = page("run_detail", run="nope")
    assert any("No run 'nope'" in w.value for w in at.warning)


@pytest.mark.parametrize(("query", "title"), [({"run": "k-halluc"}, "Run detail"), ({}, "Monitoring")])
def test_the_root_url_routes_and_keeps_its_query(
    stack: RemoteStore, query: dict[str, str], title: str
) -> None:
    """``/?run=ID`` (a pause notification's link) opens exactly that run; ``/`` opens Monitoring."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(query)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == title
    if query:
        assert at.text_input(key="detail_run").value == "k-halluc"
        assert at.query_params["run"] in ("k-halluc", ["k-halluc"])  # AppTest may keep a list


def test_a_notification_link_to_an_unknown_run_says_so(stack: RemoteStore) -> None:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["run"] = "nope"
    at.run()
    assert any("No run 'nope'" in w.value for w in at.warning)  # not the latest run in its place


def test_recovery_queue_edit_test_and_retry(stack: RemoteStore) -> None:
    at = page("recovery")
    assert sorted(at.dataframe[0].value["run"]) == ["k-big", "k-halluc"]
    at.selectbox(key="recovery_run").set_value("k-halluc").run()
    prompt = at.text_area(key="prompt_k-halluc")
    assert prompt.value == company_x.TERMS_PROMPT
    at.button(key="test_k-halluc").click().run()
    assert any("Test fix failed" in e.value for e in at.error)  # the old prompt still hallucinates
    at.text_area(key="prompt_k-halluc").set_value(company_x.FIXED_PROMPT).run()
    at.button(key="test_k-halluc").click().run()
    assert any("Test fix passed" in s.value for s in at.success), [e.value for e in at.error]
    at.button(key="retry_k-halluc").click().run()
    assert any("approved: queued to resume" in s.value for s in at.success)
    # The page refreshed: the decided run is no longer offered for a decision.
    assert not [b for b in at.button if b.key and b.key.endswith("_k-halluc")]
    deadline = __import__("time").monotonic() + 30
    while stack.get_run("k-halluc").status != "completed":
        assert __import__("time").monotonic() < deadline, stack.get_run("k-halluc").status
        __import__("time").sleep(0.1)
    reviewed = [e for e in stack.events("k-halluc") if e.kind == "reviewed"]
    assert reviewed and reviewed[-1].actor == "on-call"


def test_recovery_queue_refuses_unreadable_constraints_and_orders_checkpoints(stack: RemoteStore) -> None:
    at = page("recovery", run="k-halluc")
    targets = at.selectbox(key="target_k-halluc")
    in_order = [c.name for c in sorted(stack.checkpoints("k-halluc"), key=lambda c: c.seq)]
    assert targets.options == list(dict.fromkeys(reversed(in_order)))[::-1]  # run order, not a-z
    assert targets.value == in_order[-1]  # the latest checkpoint preselected
    at.text_input(key="constraints_k-halluc").set_value("{apr: 2.5").run()
    assert any("constraints must be JSON" in e.value for e in at.error)
    for action in ("test", "retry", "rollback"):
        assert at.button(key=f"{action}_k-halluc").disabled, action  # never tested or retried without them


def test_recovery_queue_approves_and_rejects(stack: RemoteStore) -> None:
    at = page("recovery", run="k-halluc")
    at.button(key="reject_k-halluc").click().run()
    assert stack.get_run("k-halluc").status == "rejected"
    at = page("recovery", run="k-big")
    at.button(key="retry_k-big").click().run()  # "Approve" for the high-value offer
    assert stack.get_run("k-big").status in ("queued", "running", "completed")


def operator_paused(store: RemoteStore, run_id: str, operator: str) -> None:
    """A Company X run created queued (no worker has claimed it) and paused by ``operator``: at
    once, as nobody executes it."""
    from omium.recovery import actions
    from omium.sdk.store import RunRecord

    customer = f"cust-{run_id}"
    company_x.seed_customer(store, customer)
    attributes = sdk_runs.input_attributes(store, ((customer, "ok"), {}))
    store.create_run(RunRecord(run_id, "onboard_customer", status="queued", attributes=attributes))
    assert actions.pause(run_id, store=store, actor=operator).effect == "done"


def test_recovery_queue_lists_runs_paused_by_an_operator(stack: RemoteStore) -> None:
    """A run an operator paused is in the queue beside the guards' runs, labelled by who paused
    it, with Resume and Cancel (no review of a failure: nothing failed); each is done as what it is."""
    import time

    operator_paused(stack, "k-op-resume", "alice")
    operator_paused(stack, "k-op-cancel", "bob")
    at = page("recovery", run="k-op-resume")
    table = at.dataframe[0].value
    queue = dict(zip(table["run"], table["paused by"], strict=True))
    assert queue == {
        "k-big": "guard",
        "k-halluc": "guard",
        "k-op-resume": "operator alice",
        "k-op-cancel": "operator bob",
    }
    assert at.caption[0].value == "2 run(s) awaiting review, 2 paused by an operator"
    assert any("k-op-resume** · onboard_customer · paused by alice" in m.value for m in at.markdown)
    assert any(i.value.startswith("Paused by alice: nothing failed") for i in at.info)
    assert sorted(b.label for b in at.button) == ["Cancel run", "Resume"]  # no test fix, retry or reject
    at.button(key="resume_k-op-resume").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert [s.value for s in at.success] == ["run k-op-resume queued to resume (a worker continues it)"]
    assert "k-op-resume" not in list(at.dataframe[0].value["run"])  # the refreshed page: it left the queue
    resumed = [e for e in stack.events("k-op-resume") if e.kind == "resumed"]
    assert [(e.actor, json.loads(e.before)["paused_by"]) for e in resumed] == [("on-call", "alice")]
    deadline = time.monotonic() + 60
    while stack.get_run("k-op-resume").status != "completed":
        assert time.monotonic() < deadline, stack.get_run("k-op-resume").status
        time.sleep(0.1)

    at = page("recovery", run="k-op-cancel")
    assert any("paused by bob" in m.value for m in at.markdown)
    at.button(key="cancel_k-op-cancel").click().run()
    assert [w.value for w in at.warning] == ["run k-op-cancel cancelled"]
    assert stack.get_run("k-op-cancel").status == "cancelled"
    assert [(e.kind, e.actor) for e in stack.events("k-op-cancel")] == [
        ("paused", "bob"),
        ("cancelled", "on-call"),
    ]
    assert sorted(at.dataframe[0].value["run"]) == ["k-big", "k-halluc"]


def test_setup_validates_policies_inline(stack: RemoteStore) -> None:
    at = page("setup")
    assert any("onboard_customer" in e.label for e in at.expander)
    text = " ".join(m.value for m in at.markdown)
    assert "`terms_generator`" in text and "`credit_scored`" in text
    at.button(key="policy_validate").click().run()
    assert any("valid — triggers:" in s.value for s in at.success)
    at.text_area(key="policy_text").set_value("retry_policy:\n  max_retries: many\n").run()
    at.button(key="policy_validate").click().run()
    assert any("policy.yaml:2: retry_policy.max_retries" in e.value for e in at.error)


def test_replay_and_fork(stack: RemoteStore) -> None:
    at = page("replay", run="k-ok")
    at.button(key="replay_verify").click().run()
    assert any("identical" in s.value for s in at.success), [e.value for e in at.error]
    at.selectbox(key="fork_checkpoint").set_value("credit_scored").run()
    at.text_area(key="fork_overrides").set_value(f"terms_generator.prompt={company_x.FIXED_PROMPT}").run()
    at.button(key="fork_go").click().run()
    assert any(s.value.startswith("fork ") and "completed" in s.value for s in at.success), (
        [s.value for s in at.success],
        [(b.key, b.disabled) for b in at.button],
        at.exception,
    )
    compared = at.dataframe[0].value
    assert at.text_input(key="compare").value.startswith("k-ok-fork-")
    assert bool(compared["same output"].iloc[0])  # before the fork point the branches agree
