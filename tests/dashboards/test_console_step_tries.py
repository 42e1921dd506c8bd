"""Run detail tells the truth about history: every try of every step, failed ones included, with
its attempt and generation, under Streamlit's AppTest against a real server and warehouse.

Runs are recorded through the server's control API (its control database's triggers queue each
overwritten try for the warehouse), then shipped, as the server's shipper does within seconds.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import omium
from omium.collector.server import RunningServer
from omium.sdk.remote_store import RemoteStore

APP = str(Path(__file__).resolve().parents[2] / "src/omium/dashboards/console/streamlit_app.py")
AGAIN = omium.RetryPolicy(max_attempts=2, initial_interval=0.0, jitter=0.0)
failures: dict[str, int] = {}  # how many more times a call of this name fails
OFFERS: list[str] = []


@pytest.fixture
def console(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[RemoteStore]:
    """The console pointed at a real server; a store recording runs through its control API."""
    monkeypatch.setenv("OMIUM_SERVER_URL", server.url)
    monkeypatch.setenv("OMIUM_API_TOKEN", "test-token")
    monkeypatch.delenv("OMIUM_CLICKHOUSE_URL", raising=False)
    st.cache_resource.clear()
    st.cache_data.clear()
    failures.clear()
    store = RemoteStore(server.url, token="test-token")
    yield store
    store.close()
    from omium.dashboards.console import data

    data.warehouse().close()
    data.store().close()
    st.cache_resource.clear()
    st.cache_data.clear()


def ship(server: RunningServer) -> None:
    assert server.state.shipper is not None
    server.state.shipper.drain()


def page(name: str, **query: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page(f"app_pages/{name}.py")
    at.query_params.update(query)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def steps(run_id: str) -> AppTest:
    at = page("run_detail", run=run_id)
    at.segmented_control(key="detail_section").set_value("Steps").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def shown(at: AppTest) -> list[object]:
    """What the inspector's JSON panels show (input, then output or error; a string as it is)."""
    values: list[object] = []
    for panel in at.json:
        try:
            values.append(json.loads(panel.value))
        except json.JSONDecodeError:
            values.append(panel.value)
    return values


def tries(at: AppTest) -> list[tuple[int, str, int, int]]:
    table = at.dataframe[0].value
    return list(zip(table["position"], table["status"], table["attempt"], table["generation"], strict=True))


@omium.step(retry=AGAIN)
def fetch(name: str) -> str:
    if failures.get(name, 0) > 0:
        failures[name] -= 1
        raise ValueError(f"{name} failed")
    return f"{name} done"


@omium.workflow(name="console_tries_retry")
def retried(name: str) -> str:
    return fetch(name)


def test_a_step_failing_then_succeeding_on_retry_shows_both_tries(
    console: RemoteStore, server: RunningServer
) -> None:
    failures["quote"] = 1
    assert omium.run(retried, "quote", run_id="c-retry", store=console) == "quote done"
    ship(server)
    at = steps("c-retry")
    assert tries(at) == [(0, "failed", 1, 0), (0, "completed", 2, 0)]
    table = at.dataframe[0].value
    assert list(table.columns[:9]) == [
        "position",
        "call_id",
        "agent",
        "kind",
        "name",
        "status",
        "attempt",
        "generation",
        "error",
    ]
    assert list(table["error"]) == ["ValueError: quote failed", ""]
    assert all(len(s) == 23 and s[4] == "-" for s in table["started"])  # 2026-12-07 21:05:09.123
    assert not at.error  # a completed run: no run error
    # The inspector picks a try: the failed one shows its error, the retry its output.
    inspect = at.selectbox(key="detail_step")
    assert inspect.options == [
        "#0 step fetch · generation 0, attempt 1: failed",
        "#0 step fetch · generation 0, attempt 2: completed",
    ]
    inspect.set_value(0).run()
    assert {"error": "ValueError: quote failed"} in shown(at)
    at.selectbox(key="detail_step").set_value(1).run()
    assert "quote done" in shown(at)


def test_a_failed_run_shows_its_own_error_and_every_failed_try(
    console: RemoteStore, server: RunningServer
) -> None:
    failures["pay"] = 2
    with pytest.raises(ValueError, match="pay failed"):
        omium.run(retried, "pay", run_id="c-failed", store=console)
    ship(server)
    at = steps("c-failed")
    assert tries(at) == [(0, "failed", 1, 0), (0, "failed", 2, 0)]
    assert "Run error: ValueError: pay failed" in [e.value for e in at.error]


@omium.step
def score() -> int:
    return 720


@omium.step
def offer() -> str:
    return OFFERS.pop(0)


@omium.workflow(name="console_tries_rollback")
def onboarding() -> str:
    with omium.Checkpoint("scored"):
        score()
    terms = offer()
    if "0.0%" in terms:
        raise RuntimeError(f"APR outside 2.5%-8.5%: {terms}")
    return terms


def test_a_rolled_back_and_re_executed_run_shows_the_tries_of_both_generations(
    console: RemoteStore, server: RunningServer
) -> None:
    OFFERS[:] = ["APR 0.0%", "APR 4.9%"]
    with pytest.raises(RuntimeError):
        omium.run(onboarding, run_id="c-rolled", store=console)
    omium.rollback("c-rolled", "scored", store=console)
    assert omium.run(onboarding, run_id="c-rolled", store=console) == "APR 4.9%"
    ship(server)
    at = steps("c-rolled")
    # Newest generation last: the re-executed offer after the one the rollback undid.
    assert tries(at) == [(0, "completed", 1, 0), (1, "completed", 1, 0), (1, "completed", 1, 1)]
    at.selectbox(key="detail_step").set_value(1).run()
    assert "APR 0.0%" in shown(at)
    at.selectbox(key="detail_step").set_value(2).run()
    assert "APR 4.9%" in shown(at)


def test_a_step_retried_to_success_is_a_recovered_failure(
    console: RemoteStore, server: RunningServer
) -> None:
    """The control store keeps a call's latest try only (the retry overwrote the failed one): the
    banner and the root cause read every try, so the run says it recovered, never that nothing failed."""
    failures["quote"] = 1
    assert omium.run(retried, "quote", run_id="c-recovered", store=console) == "quote done"
    ship(server)
    at = page("run_detail", run="c-recovered")
    assert not at.error
    assert at.info[0].value == "Recovered from a failed try at step 1/1; the run completed"
    at.segmented_control(key="detail_section").set_value("Root cause").run()
    assert not at.success, [s.value for s in at.success]  # never "Nothing failed in this run."
    assert at.info[1].value.startswith("A try failed at step 1/1 and its retry succeeded")


@omium.step
def send(terms: str) -> str:
    return f"sent {terms}"


@omium.step
def confirm() -> str:
    return "confirmed"


@omium.workflow(name="console_tries_paths")
def routed() -> str:
    with omium.Checkpoint("scored"):
        score()
    terms = offer()
    # A refused offer takes a manual path: its checkpoint exists in that generation only.
    with omium.Checkpoint("manual_terms" if "0.0%" in terms else "auto_terms"):
        sent = send(terms)
    confirm()
    if "0.0%" in terms:
        raise RuntimeError(f"APR outside 2.5%-8.5%: {terms}")
    return sent


def test_each_try_falls_after_a_checkpoint_of_its_own_generation(
    console: RemoteStore, server: RunningServer
) -> None:
    """A re-execution after a rollback took another path: each try is after the checkpoint its own
    execution passed, never one recorded at the same position by another generation."""
    OFFERS[:] = ["APR 0.0%", "APR 4.9%"]
    with pytest.raises(RuntimeError):
        omium.run(routed, run_id="c-paths", store=console)
    omium.rollback("c-paths", "scored", store=console)
    assert omium.run(routed, run_id="c-paths", store=console) == "sent APR 4.9%"
    ship(server)
    table = steps("c-paths").dataframe[0].value
    after = {
        (name, generation): mark
        for name, generation, mark in zip(
            table["name"], table["generation"], table["after_checkpoint"], strict=True
        )
    }
    assert after == {
        ("score", 0): "",
        ("offer", 0): "scored",
        ("send", 0): "scored",
        ("confirm", 0): "manual_terms",
        ("offer", 1): "scored",
        ("send", 1): "scored",
        ("confirm", 1): "auto_terms",
    }


GATE_ENTERED, GATE_OPEN = threading.Event(), threading.Event()


@omium.step
def gate() -> str:
    GATE_ENTERED.set()
    assert GATE_OPEN.wait(30)
    return "through"


@omium.workflow(name="console_tries_paused")
def paused_later(name: str) -> str:
    fetched = fetch(name)
    gate()
    return fetch(f"{fetched} again")


def test_a_run_an_operator_paused_after_a_retried_try_is_not_failed(
    console: RemoteStore, server: RunningServer
) -> None:
    """A failed try its retry recovered is history, not the reason a run an operator paused is
    paused: no "Failed at" banner, the page says who paused it."""
    from omium.recovery import actions, supervise

    failures["lookup"] = 1
    GATE_ENTERED.clear()
    GATE_OPEN.clear()
    got: list[object] = []
    thread = threading.Thread(
        # Recorded on the server's control store itself (as a worker on the control database would):
        # its recorder hears of the pause at the next recorded call, not at a lease renewal.
        target=lambda: got.append(
            supervise(paused_later, "lookup", run_id="c-op-paused", store=server.state.store)
        ),
        daemon=True,
    )
    thread.start()
    try:
        assert GATE_ENTERED.wait(30)
        assert actions.pause("c-op-paused", store=console, actor="alice").effect == "requested"
    finally:
        GATE_OPEN.set()
    thread.join(30)
    assert console.get_run("c-op-paused").status == "paused", got
    ship(server)
    at = page("run_detail", run="c-op-paused")
    assert not at.error, [e.value for e in at.error]
    assert any(i.value.startswith("Paused by alice") for i in at.info)
    assert tries(steps("c-op-paused"))[:2] == [(0, "failed", 1, 0), (0, "completed", 2, 0)]
