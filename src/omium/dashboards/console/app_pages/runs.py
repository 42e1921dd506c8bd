"""Runs: filter by workflow, status, agent, time range and text; page through the results."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import streamlit as st

from omium.dashboards.console import data

PAGE_SIZE = 50
STATUSES = ["", "running", "queued", "paused", "completed", "failed", "rolled_back", "rejected", "cancelled"]

st.title("Runs")
workflows, agents, _ = data.catalogue()
cols = st.columns([2, 2, 2, 3])
workflow = cols[0].selectbox(
    "Workflow", ["", *workflows["workflow"].to_list()], format_func=lambda w: w or "all", key="runs_workflow"
)
status = cols[1].selectbox("Status", STATUSES, format_func=lambda s: s or "all", key="runs_status")
agent_names = sorted(set(agents["agent"].to_list())) if agents.height else []
agent = cols[2].selectbox("Agent", ["", *agent_names], format_func=lambda a: a or "all", key="runs_agent")
text = cols[3].text_input("Search run id, error, attributes", key="runs_text")
today = datetime.now(UTC).date()
days = st.date_input("Started between", (today - timedelta(days=7), today), key="runs_days")
first, last = days if isinstance(days, tuple) and len(days) == 2 else (today - timedelta(days=7), today)
since = datetime.combine(first, time.min, tzinfo=UTC)
until = datetime.combine(last, time.max, tzinfo=UTC)
page_number = st.number_input("Page", min_value=1, value=1, step=1, key="runs_page")
frame, total = data.search(
    since, until, workflow, status, agent, text.strip(), PAGE_SIZE, (int(page_number) - 1) * PAGE_SIZE
)
pages = max(1, -(-total // PAGE_SIZE))
st.caption(f"{total:,} runs match · page {int(page_number)} of {pages}")
if frame.height:
    shown = frame.to_pandas()
    shown.insert(0, "open", [f"run?run={r}" for r in shown["run_id"]])
    st.dataframe(
        shown,
        hide_index=True,
        width="stretch",
        column_config={"open": st.column_config.LinkColumn("open", display_text="open")},
    )
else:
    st.info("No run matches these filters.")
