"""Session: the runs (traces) of one session (``?session=ID``: ``gen_ai.conversation.id``,
``session.id``, a LangGraph thread...) in the order they started, each opening its trace view."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import altair as alt
import polars as pl
import streamlit as st

from omium.dashboards.console import data
from omium.dashboards.console import trace_views as tv

st.title("Session")
cols = st.columns([3, 2])
session = cols[0].text_input("Session id", value=st.query_params.get("session", ""), key="session_id").strip()
today = datetime.now(UTC).date()
days = cols[1].date_input("Started between", (today - timedelta(days=7), today), key="session_days")
if not session:
    st.info("Open a session from Runs, or paste a session id.")
    st.stop()
st.query_params["session"] = session
first, last = days if isinstance(days, tuple) and len(days) == 2 else (today - timedelta(days=7), today)
traces = data.session_traces(
    session, datetime.combine(first, time.min, tzinfo=UTC), datetime.combine(last, time.max, tzinfo=UTC)
)
if not traces.height:
    st.warning(f"No run of session {session!r} started in this time range.")
    st.stop()
costs = [c for c in traces["cost_usd"].to_list() if c is not None]
metrics = st.columns(4)
metrics[0].metric("Runs", f"{traces.height:,}")
metrics[1].metric("Failed", f"{traces.filter(pl.col('status') == 'failed').height:,}")
tokens = sum(int(r["input_tokens"]) + int(r["output_tokens"]) for r in traces.iter_rows(named=True))
metrics[2].metric("Tokens", f"{tokens:,}")
metrics[3].metric("Cost", f"${sum(costs):.6f}" if costs else "unknown")
rows = [
    {
        "#": n + 1,
        "trace": f"trace?trace={r['trace_id']}",
        "started": r["started"].astimezone().replace(tzinfo=None),
        "name": r["name"],
        "status": r["status"],
        "duration_s": r["duration_s"],
        "agents": ", ".join(r["agents"]),
        "tokens_in": r["input_tokens"],
        "tokens_out": r["output_tokens"],
        "cost_usd": r["cost_usd"],
        "error": r["error"],
        "omium_run": r["run_id"],
        "user": r["user"],
        "trace_id": r["trace_id"],
    }
    for n, r in enumerate(traces.iter_rows(named=True))
]
st.caption(f"In the order they started · first {tv.local(traces['started'][0])} (local time)")
chart_rows = [
    {
        "run": f"#{r['#']} {r['name']}",
        "start": r["started"],
        "end": r["started"] + timedelta(seconds=float(r["duration_s"])),
        "status": r["status"],
    }
    for r in rows
]
st.altair_chart(
    alt.Chart(pl.DataFrame(chart_rows).to_pandas(), title="Runs of the session (local time)")
    .mark_bar()
    .encode(
        x=alt.X("start:T", title="", axis=alt.Axis(format="%H:%M:%S")),
        x2="end:T",
        y=alt.Y("run:N", title="", sort=None),
        color=alt.Color(
            "status:N",
            scale=alt.Scale(
                domain=["completed", "failed", "running"], range=["#2e7d32", "#c62828", "#f9a825"]
            ),
        ),
    )
    .properties(height=alt.Step(24)),
    width="stretch",
)
st.dataframe(
    rows,
    hide_index=True,
    width="stretch",
    column_config={
        "trace": st.column_config.LinkColumn("trace", display_text="spans"),
        "started": st.column_config.DatetimeColumn("started", format="YYYY-MM-DD HH:mm:ss"),
        "cost_usd": st.column_config.NumberColumn("cost (USD)", format="$%.6f"),
    },
)
