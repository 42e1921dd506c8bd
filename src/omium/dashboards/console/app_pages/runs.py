"""Runs: every Omium run and every OTel trace (any instrumentation, live or imported), grouped into
runs by run id, else session, else trace id; filter by status, source, agent, name, errors and time;
search ids, agents, errors and message text; page through the results."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import streamlit as st

from omium.dashboards.console import data
from omium.warehouse.console_queries import SOURCES

PAGE_SIZE = 50
STATUSES = ["", "running", "queued", "paused", "completed", "failed", "rolled_back", "rejected", "cancelled"]

st.title("Runs")
workflows, agents, _ = data.catalogue()
cols = st.columns([2, 2, 2, 2])
status = cols[0].selectbox("Status", STATUSES, format_func=lambda s: s or "all", key="runs_status")
source = cols[1].selectbox("Source", ["", *SOURCES], format_func=lambda s: s or "all", key="runs_source")
# Any agent, Omium's or a third-party one (the catalogue holds Omium's only): a name, exactly.
agent_names = sorted(set(agents["agent"].to_list())) if agents.height else []
agent = cols[2].text_input(
    "Agent",
    key="runs_agent",
    placeholder="any",
    help="e.g. " + ", ".join(agent_names[:4]) if agent_names else None,
)
workflow = cols[3].selectbox(
    "Workflow or trace name",
    ["", *workflows["workflow"].to_list()],
    format_func=lambda w: w or "all",
    key="runs_workflow",
    accept_new_options=True,
)
cols = st.columns([4, 2, 1, 1])
text = cols[0].text_input("Search ids, agents, errors and messages", key="runs_text")
today = datetime.now(UTC).date()
days = cols[1].date_input("Started between", (today - timedelta(days=1), today), key="runs_days")
errors_only = cols[2].toggle("Errors only", key="runs_errors")
first, last = days if isinstance(days, tuple) and len(days) == 2 else (today - timedelta(days=1), today)
since = datetime.combine(first, time.min, tzinfo=UTC)
until = datetime.combine(last, time.max, tzinfo=UTC)
page_number = cols[3].number_input("Page", min_value=1, value=1, step=1, key="runs_page")
frame, total = data.run_list(
    since,
    until,
    status or "",
    agent.strip(),
    source or "",
    workflow or "",
    text.strip(),
    errors_only,
    PAGE_SIZE,
    (int(page_number) - 1) * PAGE_SIZE,
)
pages = max(1, -(-total // PAGE_SIZE))
st.caption(
    f"{total:,} runs match · page {int(page_number)} of {pages} · times in this machine's local time · "
    "third-party traces are grouped by session (or trace) and open in the trace view"
)
if frame.height:
    rows = []
    for r in frame.iter_rows(named=True):
        grouped = r["grouped_by"]
        # An Omium run opens its run detail (a run id without a control-store record, such as an
        # imported one, its trace view); a session its session view; a bare trace its trace view.
        opened = {
            "run": f"run?run={r['run_id']}" if r["recorded"] else f"trace?run={r['run_id']}",
            "session": f"session?session={r['run_id']}",
            "trace": f"trace?trace={r['run_id']}",
        }[grouped]
        trace = f"trace?run={r['run_id']}" if grouped == "run" else f"trace?trace={r['first_trace']}"
        rows.append(
            {
                "open": opened,
                "trace": trace,
                "run_id": r["run_id"],
                "name": r["name"],
                "status": r["status"],
                "source": r["source"],
                "started": r["started"].astimezone().replace(tzinfo=None),
                "duration_s": r["duration_s"],
                "agents": ", ".join(r["agents"]),
                "tokens_in": r["input_tokens"],
                "tokens_out": r["output_tokens"],
                "cost_usd": r["cost_usd"],
                "error": r["error"],
                "grouped_by": grouped,
                "traces": r["traces"],
                "spans": r["spans"],
            }
        )
    st.dataframe(
        rows,
        hide_index=True,
        width="stretch",
        column_config={
            "open": st.column_config.LinkColumn("open", display_text="open"),
            "trace": st.column_config.LinkColumn("trace", display_text="spans"),
            "started": st.column_config.DatetimeColumn("started", format="YYYY-MM-DD HH:mm:ss"),
            "cost_usd": st.column_config.NumberColumn("cost (USD)", format="$%.6f"),
            "duration_s": st.column_config.NumberColumn("duration (s)", format="%.2f"),
        },
    )
    # The same links as page links too: keyboard- and browser-test-friendly (table cells are a canvas).
    by_id = {r["run_id"]: r for r in rows}
    cols = st.columns([3, 2, 2])
    chosen = cols[0].selectbox("Open", list(by_id), key="runs_open", label_visibility="collapsed")
    if chosen is not None:
        target = by_id[chosen]
        kind = str(target["grouped_by"])
        page_of = {"run": "run_detail", "session": "session", "trace": "trace"}[
            str(target["open"]).partition("?")[0]
        ]
        key, _eq, value = str(target["open"]).partition("?")[2].partition("=")
        cols[1].page_link(f"app_pages/{page_of}.py", label=f"Open {kind} {chosen}", query_params={key: value})
        key, _eq, value = str(target["trace"]).partition("?")[2].partition("=")
        cols[2].page_link(
            "app_pages/trace.py",
            label="Trace view",
            query_params={key: value},
            icon=":material/account_tree:",
        )
else:
    st.info("No run matches these filters.")
