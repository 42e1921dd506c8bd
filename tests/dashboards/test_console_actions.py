"""Run detail's operator actions under Streamlit's AppTest (issue 17, item 4): Pause, Resume and
Cancel offered by the run's state, done through the real server's control API, the page refreshed
after each with what it did."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import omium
from omium.collector.server import RunningServer
from omium.recovery import supervise
from omium.recovery.worker import Worker, submit
from omium.sdk.store import CheckpointStore

APP = str(Path(__file__).resolve().parents[2] / "src/omium/dashboards/console/streamlit_app.py")
ENTERED, RELEASE = threading.Event(), threading.Event()
RAN: list[int] = []


@omium.step(name="console_act_work")
def work(i: int) -> int:
    RAN.append(i)
    if i == 1 and not RELEASE.is_set():
        ENTERED.set()
        assert RELEASE.wait(30)
    return i


@omium.workflow(name="console_act_flow")
def flow(n: int) -> int:
    return sum(work(i) for i in range(n))


@pytest.fixture
def store(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[CheckpointStore]:
    """The server's control store (runs executing here record through it, as a worker on the
    control database would); the console talks to the server."""
    monkeypatch.setenv("OMIUM_SERVER_URL", server.url)
    monkeypatch.setenv("OMIUM_API_TOKEN", "test-token")
    monkeypatch.delenv("OMIUM_CLICKHOUSE_URL", raising=False)
    st.cache_resource.clear()
    st.cache_data.clear()
    ENTERED.clear()
    RELEASE.clear()
    RAN.clear()
    yield server.state.store
    RELEASE.set()
    from omium.dashboards.console import data

    data.warehouse().close()
    data.store().close()
    st.cache_resource.clear()
    st.cache_data.clear()


def detail(run_id: str) -> AppTest:
    st.cache_data.clear()  # what the test changed outside the page is read afresh
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("app_pages/run_detail.py")
    at.query_params.update(run=run_id)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def offered(at: AppTest) -> list[str]:
    return [b.label for b in at.button if str(b.key).startswith("detail_")]


def click(at: AppTest, action: str) -> AppTest:
    at.button(key=f"detail_{action}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_pause_resume_and_cancel_by_state(store: CheckpointStore) -> None:
    RELEASE.set()
    submit(store, "console_act_flow", 3, run_id="ca-queued")
    at = detail("ca-queued")
    assert offered(at) == ["Pause", "Cancel run"]
    at = click(at, "pause")
    assert [s.value for s in at.success] == ["run ca-queued paused"]
    assert offered(at) == ["Resume", "Cancel run"]  # the refreshed page: the run's new state
    assert any("Paused by console" in i.value for i in at.info)
    at = click(at, "resume")
    assert [s.value for s in at.success] == ["run ca-queued queued to resume (a worker continues it)"]
    assert store.get_run("ca-queued").status == "queued"
    Worker(store, {"console_act_flow": flow}, name="console-worker", sleep=lambda s: None).run_until_idle()
    assert store.get_run("ca-queued").status == "completed"
    assert offered(detail("ca-queued")) == []  # a finished run offers no action

    submit(store, "console_act_flow", 3, run_id="ca-cancel")
    at = click(click(detail("ca-cancel"), "pause"), "cancel")
    assert [s.value for s in at.success] == ["run ca-cancel cancelled"]
    assert offered(at) == [] and any("Cancelled by console" in w.value for w in at.warning)
    audit = [e.kind for e in store.events("ca-cancel")]
    assert audit == ["paused", "cancelled"]


def test_pause_on_a_running_run_takes_effect_at_its_next_call(store: CheckpointStore) -> None:
    got: list[Any] = []
    thread = threading.Thread(
        target=lambda: got.append(supervise(flow, 4, run_id="ca-running", store=store)), daemon=True
    )
    thread.start()
    assert ENTERED.wait(30)
    at = detail("ca-running")
    assert offered(at) == ["Pause", "Cancel run"]
    at = click(at, "pause")
    assert [s.value for s in at.success] == ["run ca-running will pause at its next recorded call"]
    RELEASE.set()
    thread.join(30)
    assert got[0].status == "paused" and RAN == [0, 1]
    at = detail("ca-running")
    assert offered(at) == ["Resume", "Cancel run"]


def test_a_click_on_a_page_drawn_before_the_run_finished_changes_nothing(store: CheckpointStore) -> None:
    """The page draws the run as it is when clicked: a finished run offers no action to do."""
    RELEASE.set()
    submit(store, "console_act_flow", 2, run_id="ca-stale")
    at = detail("ca-stale")  # opened while the run is queued...
    assert offered(at) == ["Pause", "Cancel run"]
    Worker(store, {"console_act_flow": flow}, name="console-worker", sleep=lambda s: None).run_until_idle()
    at = click(at, "pause")  # ...and clicked after it completed
    assert offered(at) == [] and not at.success and not at.error
    assert store.get_run("ca-stale").status == "completed" and store.events("ca-stale") == []
