"""Monitoring (live): today's workflow health, trends, failure rates and the latest execution."""

from __future__ import annotations

import streamlit as st

from omium.dashboards.console import data, model_quality
from omium.dashboards.console.views import handoff_verdicts, steps_table

st.title("Monitoring")
ranges = data.since_choices()
window = st.segmented_control("Window", list(ranges), default="today", key="monitor_window") or "today"
live = st.toggle("Auto-refresh every 5 s", value=False, key="monitor_live")


@st.fragment(run_every=5 if live else None)
def health() -> None:
    since = ranges[window]
    figures = data.health(since)
    executions = int(figures["executions"] or 0)
    completed = int(figures["completed"] or 0)
    cols = st.columns(5)
    cols[0].metric("Total executions", f"{executions:,}")
    cols[1].metric("Successful", f"{completed:,}", f"{completed / executions:.1%}" if executions else None)
    cols[2].metric(
        "Checkpoint rollbacks",
        f"{int(figures['rollbacks'] or 0):,}",
        f"{int(figures['recovered_rollbacks'] or 0):,} recovered",
        delta_color="off",
    )
    cols[3].metric(
        "Human interventions",
        f"{int(figures['interventions'] or 0):,}",
        f"{int(figures['paused'] or 0):,} awaiting review",
        delta_color="off",
    )
    p99 = figures["p99_recovery_s"]
    cols[4].metric("P99 recovery time", f"{p99:.2f} s" if p99 == p99 and p99 is not None else "n/a")
    if executions:
        # One definition of each number, said where it is shown (the pipelines' labels count a
        # recovered run as a failure, which made the two disagree with no explanation).
        recovered = int(figures.get("recovered_runs") or 0)
        paused = int(figures["paused"] or 0)
        failing = int(figures["failing"] or 0) - paused  # "failing" counts paused runs too
        st.caption(
            f"Successful: runs that completed, {recovered:,} of them after recovering from a failure "
            f"(detected, rolled back or retried). Failed: {failing:,} failed or rejected; paused: "
            f"{paused:,} awaiting a human. The pipelines' failure labels count a run that failed at "
            f"any point, recovered ones included: {failing + paused + recovered:,} of {executions:,} "
            "here."
        )
    # Vega-Lite charts: drawn by Streamlit's own bundle, so the page renders fast in the browser.
    trend = data.trend(since, 60 if window in ("last 7 days", "all time") else 5)
    if trend.height:
        st.markdown("**Executions over time**")
        st.bar_chart(
            trend.to_pandas(),
            x="bucket",
            y=["completed", "failing"],
            color=["#2e7d32", "#c62828"],
            x_label="",
            y_label="runs",
        )
    by_workflow, by_agent = data.failures(since)
    left, right = st.columns(2)
    if by_workflow.height:
        left.markdown("**Failure rate by workflow**")
        left.bar_chart(
            by_workflow.to_pandas(), x="workflow", y="failure_rate", x_label="", y_label="failure rate"
        )
    if by_agent.height:
        right.markdown("**Failed calls by agent**")
        right.bar_chart(by_agent.to_pandas(), x="agent", y="failure_rate", x_label="", y_label="failure rate")
    if not executions:
        st.info("No executions in this window yet. Run `omium demo` or point your agents at this server.")
    latest = data.latest_run()
    if latest:
        run = data.run(latest)
        st.subheader(f"Latest execution: {latest}")
        if run is not None:
            st.caption(f"{run.workflow} · {run.status}")
        st.dataframe(steps_table(latest), hide_index=True, width="stretch")
        for line in handoff_verdicts(latest):
            st.markdown(line)
        st.page_link(
            "app_pages/run_detail.py",
            label="Open the run",
            icon=":material/search:",
            query_params={"run": latest},
        )


health()


def prediction_quality() -> None:
    """The failure predictor's AUROC per source held out (issue 18: never a figure pooling sources)."""
    st.subheader("Failure prediction quality")
    version = model_quality.latest_predictor(4)
    if version is None:
        st.caption(
            "No failure predictor yet: `omium pipelines build` trains one and evaluates it held out per "
            "source (each source scored by a model fitted on the others)."
        )
        return
    st.caption(model_quality.caption(version))
    rows = model_quality.table(version)
    if rows.height:
        st.dataframe(rows.to_pandas(), hide_index=True, width="stretch")
    for line in model_quality.warnings(version):
        st.warning(line, icon=":material/warning:")


prediction_quality()
