"""Runs, Trace and Session pages under Streamlit's AppTest, with third-party traces beside Omium's.

The demo stack of ``test_console`` (Company X runs recorded through a real in-process server) plus
an OpenInference LangGraph trace and an OpenLLMetry trace that a child process sends over OTLP/HTTP
with the official exporter (``third_party_traces.py``): the console reads them from otel_traces as
they land, with no pipeline build between.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from omium.collector.server import RunningServer
from omium.sdk.remote_store import RemoteStore
from tests.dashboards import third_party_traces as sent
from tests.dashboards.test_console import page, stack  # noqa: F401 - the shared demo stack fixture
from tests.instrumentation import fake_openai

THIRD_PARTY = Path(sent.__file__)


@pytest.fixture
def third_party(stack: RemoteStore, server: RunningServer) -> RemoteStore:  # noqa: F811
    """The demo stack plus the two third-party traces, sent by their instrumentation packages."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACELOOP_"))}
    env.update({"PYTHONPATH": "", "OPENAI_API_KEY": "test", "TRACELOOP_TELEMETRY": "false"})
    with fake_openai.serving() as (openai_url, _requests):
        done = subprocess.run(
            [sys.executable, str(THIRD_PARTY), server.url, openai_url],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            cwd=THIRD_PARTY.parents[2],
        )
    assert done.returncode == 0, done.stderr[-4000:]
    st.cache_data.clear()
    return stack


def runs_of(at: AppTest) -> dict[str, dict[str, object]]:
    """The Runs table's rows by run id."""
    return {r["run_id"]: r for r in at.dataframe[0].value.to_dict("records")}


def test_runs_lists_third_party_traces_beside_omium_runs(third_party: RemoteStore) -> None:
    at = page("runs")
    rows = runs_of(at)
    assert {"k-ok", "k-halluc", "k-stale", "k-big", "k-flaky"} <= set(rows)
    # The LangGraph trace: grouped by its thread (the session), agents from its graph nodes.
    graph = rows[sent.SESSION]
    assert graph["grouped_by"] == "session" and graph["source"] == "OTLP client"
    assert graph["agents"] == "researcher, writer"
    assert (graph["tokens_in"], graph["tokens_out"]) == (60, 14)
    assert graph["open"] == f"session?session={sent.SESSION}"
    # The OpenLLMetry trace: no session, so a run of its own trace; priced by genai-prices.
    (billing,) = [r for r in rows.values() if r["name"] == "invoke_agent billing"]
    assert billing["grouped_by"] == "trace" and billing["agents"] == "billing"
    assert (billing["tokens_in"], billing["tokens_out"]) == (200, 40)
    assert float(str(billing["cost_usd"])) > 0
    assert str(billing["trace"]).startswith("trace?trace=")
    # An Omium run keeps its run detail link, and its spans are one click away too.
    assert rows["k-ok"]["open"] == "run?run=k-ok" and rows["k-ok"]["trace"] == "trace?run=k-ok"
    assert rows["k-ok"]["source"] == "SDK" and "terms_generator" in str(rows["k-ok"]["agents"])
    at.selectbox(key="runs_source").set_value("SDK").run()
    assert len(runs_of(at)) == 5
    at.selectbox(key="runs_source").set_value("").run()
    at.text_input(key="runs_agent").set_value("writer").run()
    assert list(runs_of(at)) == [sent.SESSION]


def test_search_finds_message_text_and_never_policy_text(third_party: RemoteStore) -> None:
    at = page("runs")
    at.text_input(key="runs_text").set_value(sent.CUSTOMER).run()
    found = runs_of(at)
    # Only in the user's messages: the LangGraph session and the OpenLLMetry trace.
    assert len(found) == 2 and sent.SESSION in found, list(found)
    # "core_logic" is in the recovery policy stored on every demo run, and nowhere else.
    at.text_input(key="runs_text").set_value("core_logic").run()
    assert any("No run matches" in i.value for i in at.info)
    at.text_input(key="runs_text").set_value("billing").run()
    assert [r["name"] for r in runs_of(at).values()] == ["invoke_agent billing"]


def chat(at: AppTest) -> list[tuple[str, str]]:
    """The conversation shown: (role, text) per chat message."""
    return [(m.name, " ".join(md.value for md in m.markdown)) for m in at.chat_message]


def test_trace_view_renders_a_langgraph_conversation(third_party: RemoteStore) -> None:
    at = page("session", session=sent.SESSION)
    (trace_link,) = at.dataframe[0].value["trace"]
    at = page("trace", trace=trace_link.removeprefix("trace?trace="))
    assert at.metric[0].value == "5"  # graph, two nodes, two model calls
    assert at.get("vega_lite_chart")
    labels = at.selectbox(key="trace_span").options
    assert any("researcher" in o for o in labels) and any("writer" in o for o in labels)
    # Opens on the first model call: the researcher's prompt and answer as a conversation.
    said = chat(at)
    assert said[0] == ("system", "You research account problems.")
    assert said[1] == ("user", sent.QUESTION)
    assert said[-1] == ("assistant", "The account is locked after 5 failed attempts.")
    assert any(f"Session {sent.SESSION}" in str(link.proto.label) for link in at.get("page_link"))


def test_trace_view_renders_tool_calls_and_cost(third_party: RemoteStore) -> None:
    at = page("runs")
    at.text_input(key="runs_text").set_value("billing").run()
    (row,) = runs_of(at).values()
    at = page("trace", trace=str(row["trace"]).removeprefix("trace?trace="))
    assert at.metric[4].value.startswith("$")  # genai-prices knows gpt-4o-mini
    said = chat(at)
    assert ("user", f"Why was {sent.CUSTOMER} charged twice?") in said
    assert any(
        m.name == "assistant" and "lookup_invoice" in " ".join(c.value for c in m.caption)
        for m in at.chat_message
    )
    spans = at.selectbox(key="trace_span")
    (tool,) = [i for i, o in enumerate(spans.options) if "execute_tool lookup_invoice" in o]
    spans.select_index(tool).run()
    assert not at.exception
    shown = [j.value for j in at.json]
    assert any('"charges": 2' in v or "'charges': 2" in v or "charges" in v for v in shown), shown


def test_trace_view_of_an_omium_run_links_steps_both_ways(third_party: RemoteStore) -> None:
    at = page("trace", run="k-halluc")
    assert int(at.metric[0].value) > 10 and int(at.metric[5].value) >= 1
    # Opens on the first failed span, with its exception event beside its status.
    assert "**Events**" in [m.value for m in at.markdown]
    assert any("GuardViolation" in m.value for m in at.markdown if m.value.startswith("- **status**"))
    links = [str(link.proto.label) for link in at.get("page_link")]
    assert any(label.startswith("Omium run k-halluc") for label in links), links
    # Run detail -> a step's span -> back to the step.
    detail = page("run_detail", run="k-halluc")
    detail.segmented_control(key="detail_section").set_value("Steps").run()
    detail.selectbox(key="detail_step").set_value(2).run()
    labels = [str(link.proto.label) for link in detail.get("page_link")]
    assert "Trace view: the run's spans, conversations and costs" in labels
    assert "Step #2's span in the trace view" in labels
    at = page("trace", run="k-halluc", step="2")
    links = [str(link.proto.label) for link in at.get("page_link")]
    assert "Omium step #2 of run k-halluc" in links, links
    back = page("run_detail", run="k-halluc", step="2")  # where that link lands: the step, inspected
    assert back.segmented_control(key="detail_section").value == "Steps"
    assert back.selectbox(key="detail_step").value == 2


def test_unknown_trace_and_session(third_party: RemoteStore) -> None:
    assert any("No spans for 'nope'" in w.value for w in page("trace", trace="nope").warning)
    assert any("No run of session 'nope'" in w.value for w in page("session", session="nope").warning)


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"},  # one event per message
        {  # one gen_ai.client.inference.operation.details event with the whole exchange
            "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "event_only",
        },
    ],
    ids=["events", "details-event"],
)
def test_trace_view_reads_conversations_from_event_logs(
    stack: RemoteStore,  # noqa: F811
    server: RunningServer,
    env: dict[str, str],
) -> None:
    """opentelemetry-instrumentation-openai-v2 keeps content only in GenAI event logs (otel_logs):
    the trace view joins them to their spans by trace and span id."""
    scenarios = THIRD_PARTY.parents[1] / "instrumentation" / "scenarios.py"
    child = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    child.update({"PYTHONPATH": "", "OPENAI_API_KEY": "test", **env})
    with fake_openai.serving() as (openai_url, _requests):
        done = subprocess.run(
            [sys.executable, str(scenarios), "openai-v2", server.url, openai_url],
            env=child,
            capture_output=True,
            text=True,
            timeout=240,
            cwd=THIRD_PARTY.parents[2],
        )
    assert done.returncode == 0, done.stderr[-4000:]
    st.cache_data.clear()
    (trace_link,) = page("session", session="sess-1").dataframe[0].value["trace"]
    at = page("trace", trace=trace_link.removeprefix("trace?trace="))
    said = chat(at)  # opens on the first model call: the tool-using chat
    assert ("user", "What is the answer?") in said, said
    assert any(
        m.name == "assistant" and "lookup" in " ".join(c.value for c in m.caption) for m in at.chat_message
    )


def test_imported_runs_list_as_imports_and_open_their_trace(stack: RemoteStore, warehouse: Any) -> None:  # noqa: F811
    """A Who&When history imported into otel_traces (no control-store record): listed with its
    agents as an import, opening its trace view, where its steps read as messages."""
    from datetime import date

    from omium import importers

    run = importers.ImportedRun(
        source="who_and_when",
        source_id="case-1.json",
        run_id="ww-case-1",
        steps=(
            importers.Step("Orchestrator", "assistant", "Find the refund policy for order 99."),
            importers.Step("WebSurfer", "assistant", "The policy page says 30 days."),
        ),
        failed=True,
        mistake_agent="WebSurfer",
        mistake_step=1,
    )
    importers.write(warehouse, [run])
    st.cache_data.clear()
    at = page("runs")
    assert "ww-case-1" not in runs_of(at)  # imported runs carry 2023 clocks: outside the default window
    at.date_input(key="runs_days").set_value((date(2023, 11, 1), date(2023, 11, 30))).run()
    row = runs_of(at)["ww-case-1"]
    assert row["source"] == "import" and {"Orchestrator", "WebSurfer"} <= set(str(row["agents"]).split(", "))
    assert row["open"] == "trace?run=ww-case-1"
    at = page("trace", run="ww-case-1")
    assert int(at.metric[0].value) >= 3


def test_a_long_trace_draws_its_waterfall_a_window_at_a_time(stack: RemoteStore, warehouse: Any) -> None:  # noqa: F811
    """250 spans: the waterfall draws 100 at a time and opens on the window of the span asked for."""
    warehouse.command(
        "INSERT INTO otel_traces (Timestamp, TraceId, SpanId, ParentSpanId, SpanName, ServiceName, Duration) "
        "SELECT now64(9) - 60 + number / 1000, 'long-trace', lower(hex(number + 1)), if(number = 0, '', '1'), "
        "concat('step ', toString(number)), 'agents', 500000 FROM numbers(250)"
    )
    st.cache_data.clear()
    at = page("trace", trace="long-trace", span=format(181, "x"))  # the 181st span in tree order
    (window,) = [s for s in at.selectbox if s.label.startswith("Waterfall: 250 spans")]
    assert window.value == 100 and window.format_func(window.value) == "spans 101 to 200"
    assert at.selectbox(key="trace_span").value == format(181, "x")
    window.set_value(200).run()
    assert not at.exception and window.format_func(200) == "spans 201 to 250"
