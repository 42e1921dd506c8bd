"""Run detail: timeline, dependency graph, step inspector, time travel, hand-offs and root cause."""

from __future__ import annotations

import json
from datetime import datetime

import streamlit as st

from omium.dashboards.console import data, views

st.title("Run detail")
run = views.choose_run("Run id", "detail_run")
run_id = run.run_id
st.query_params["run"] = run_id
status_icon = {
    "completed": "check_circle",
    "paused": "pause_circle",
    "failed": "error",
    "running": "play_circle",
}
st.subheader(f":material/{status_icon.get(run.status, 'cancel')}: {run.workflow} · {run.status}")
st.page_link(
    "app_pages/trace.py",
    label="Trace view: the run's spans, conversations and costs",
    query_params={"run": run_id},
    icon=":material/account_tree:",
)
# An operator's actions, offered by the run's state; after one the page is refreshed (the run's new
# state decides the buttons) and says what the action did, once.
OFFERED = {
    "running": ("pause", "cancel"),
    "queued": ("pause", "cancel"),
    "rolled_back": ("pause", "cancel"),
    "paused": ("resume", "cancel"),
}
LABELS = {"pause": "Pause", "resume": "Resume", "cancel": "Cancel run"}
if flash := st.session_state.pop("detail_flash", None):
    getattr(st, flash[0])(flash[1])
if run.status == "paused" and run.attributes.get("paused_by"):
    st.info(f"Paused by {run.attributes['paused_by']}: it holds no process; Resume continues it.")
elif run.status == "cancelled" and run.attributes.get("cancelled_by"):
    st.warning(f"Cancelled by {run.attributes['cancelled_by']}: it is never resumed.")
offered = OFFERED.get(run.status, ())
if offered:
    for column, action in zip(st.columns(len(offered) + 3)[: len(offered)], offered, strict=True):
        primary = action != "cancel"
        if column.button(LABELS[action], key=f"detail_{action}", type="primary" if primary else "secondary"):
            try:
                done = data.run_action(run_id, action, actor="console")
            except data.ControlError as refused:  # the run moved on since the page was drawn
                st.session_state["detail_flash"] = ("error", f"{LABELS[action]} refused: {refused}")
            else:
                st.session_state["detail_flash"] = ("success", done["message"])
            st.rerun()
# Rollback of a finished or paused run to a checkpoint of its choosing, re-run from there by a
# worker: checkpoints in run order (a name reached twice counts where it was last), the latest one
# preselected. A cancelled run is never resumed, so it is not offered.
if run.status in ("completed", "failed", "paused"):
    order: dict[str, int] = {}
    for mark in sorted(data.checkpoints(run_id), key=lambda c: c.seq):
        order.pop(mark.name, None)
        order[mark.name] = mark.seq
    if order:
        pick, go = st.columns([3, 1], vertical_alignment="bottom")
        target = pick.selectbox(
            "Roll back to checkpoint", list(order), index=len(order) - 1, key="rollback_target"
        )
        if go.button("Rollback and re-run", key="rollback_go"):
            try:
                data.command(run_id, "retry", checkpoint=target, reviewer="console")
            except data.ControlError as refused:
                st.session_state["detail_flash"] = ("error", f"Rollback refused: {refused}")
            else:
                st.session_state["detail_flash"] = (
                    "success",
                    f"Rollback to {target} queued: a worker re-runs {run_id} from there.",
                )
            st.rerun()
banner, said = views.status_banner(run)
if banner == "error":
    st.error(said)
elif banner == "info":
    st.info(said)
where = views.failed_at(run_id)
if run.attributes.get("awaiting"):
    st.page_link(
        "app_pages/recovery.py",
        label=f"Awaiting {run.attributes['awaiting']}: open the recovery queue",
        icon=":material/build:",
    )


chart = views.timeline(run_id)
if chart is not None:
    st.altair_chart(chart, width="stretch")
# One section at a time: the page stays light in the browser however big the run is.
SECTIONS = ["Steps", "Dependency graph", "Time travel", "Hand-offs", "Root cause", "Audit trail"]
asked_step = st.query_params.get("step", "")  # a span's link back to its Omium step (trace view)
default = "Steps" if asked_step.isdigit() else "Root cause" if where else "Steps"
section = st.segmented_control("Section", SECTIONS, default=default, key="detail_section") or default
if section == "Steps":
    if run.error:  # the run's own error: it may have failed outside any recorded call
        st.error(f"Run error: {run.error}")
    st.dataframe(views.steps_table(run_id), hide_index=True, width="stretch")
    tries = data.step_tries(run_id)  # every try, failed ones included, oldest generation first
    if tries:
        # A step asked for by its position (the trace view's link back): its latest try.
        asked = [i for i, s in enumerate(tries) if asked_step.isdigit() and s.position == int(asked_step)]
        index: int = st.selectbox(
            "Inspect try",
            range(len(tries)),
            index=asked[-1] if asked else 0,
            key="detail_step",
            format_func=lambda i: (
                f"#{tries[i].position} {tries[i].kind} {tries[i].name} · generation {tries[i].generation}, "
                f"attempt {tries[i].attempt}: {tries[i].status}"
            ),
        )
        chosen = tries[index]
        position = chosen.position
        st.page_link(
            "app_pages/trace.py",
            label=f"Step #{position}'s span in the trace view",
            query_params={"run": run_id, "step": str(position)},
            icon=":material/account_tree:",
        )
        left, right = st.columns(2)
        left.markdown("**Input**")
        left.json(data.value(chosen.input_hash) or {})
        right.markdown("**Output**" if chosen.status == "completed" else "**Error**")
        right.json(data.value(chosen.output_hash) if chosen.output_hash else {"error": chosen.error})
if section == "Dependency graph":
    graph = views.dependency_graph(run_id)
    st.plotly_chart(views.graph_figure(graph), width="stretch")
    for edge in graph.edges:
        if edge["stale"] and edge["label"] != "read":
            st.warning(f"Stale hand-off {edge['source']} → {edge['target']}: {edge['reason']}")
if section == "Time travel":
    marks = data.checkpoints(run_id)
    if not marks:
        st.info("This run has no checkpoints.")
    else:
        names: dict[int, str] = {c.seq: f"{c.seq}: {c.name} (before step {c.step_index})" for c in marks}
        seq: int = st.selectbox(
            "State at checkpoint", list(names), format_func=lambda seq: names[seq], key="detail_checkpoint"
        )
        st.caption("What a rollback to this checkpoint keeps: the outputs of every call completed before it.")
        st.json(views.checkpoint_state(run_id, seq), expanded=1)
        if len(marks) > 1:
            a, b = st.columns(2)
            first: int = a.selectbox(
                "Compare from", list(names), format_func=lambda seq: names[seq], key="diff_from"
            )
            second: int = b.selectbox(
                "to", list(names), index=len(names) - 1, format_func=lambda seq: names[seq], key="diff_to"
            )
            st.dataframe(views.checkpoint_diff(run_id, first, second), hide_index=True, width="stretch")
if section == "Hand-offs":
    for line in views.handoff_verdicts(run_id):
        st.markdown(line)
    st.dataframe(data.handoffs(run_id).drop("payload_hash"), hide_index=True, width="stretch")
if section == "Root cause":
    cause = views.root_cause(run_id)
    if cause is None and run.status == "failed":
        st.error(f"The run failed outside any recorded call: {run.error or 'no error was recorded'}")
    elif cause is None and where:  # a failed try that its retry recovered: no guard fired
        st.info(f"A try failed at {where} and its retry succeeded: the failed try's error is in Steps.")
    elif cause is None:
        st.success("Nothing failed in this run.")
    else:
        st.markdown(
            f"**{cause.summary}** — the bad data came from step #{cause.position} of **{cause.agent}** "
            f"({cause.method}, traced from the recorded calls)"
        )
        if cause.expected or cause.actual:
            st.markdown(f"Expected: `{cause.expected or '—'}` · actual: `{cause.actual or '—'}`")
        for link in cause.chain:
            st.markdown(f"- {link}")
        st.markdown("**Suggested fixes**")
        for suggestion in cause.suggestions:
            st.markdown(f"- {suggestion}")
    derived = data.analysis(run_id)
    if derived["causes"] or derived["risk"]:
        st.markdown("**Pipeline analysis** (Dagster: root causes, failure class, predicted risk)")
    for found in derived["causes"]:  # one per method that produced a result
        st.markdown(views.method_result(found))
        for line in json.loads(found["evidence"]):
            st.markdown(f"- {line}")
    if derived.get("annotation"):
        note = derived["annotation"]
        why = f" — {note['mistake_reason']}" if note["mistake_reason"] else ""
        st.markdown(
            f"Annotation (the dataset's label, not a result): step #{note['mistake_step']} of "
            f"**{note['mistake_agent']}**{why}"
        )
    if derived["risk"]:
        st.markdown(
            "Predicted risk of failure: "
            + " · ".join(f"first {k} turns {risk:.0%}" for k, risk in derived["risk"].items())
        )
if section == "Audit trail":
    rows = [
        {
            "time": datetime.fromtimestamp(e.ts / 1e6).astimezone(),  # this machine's local time
            "event": e.kind,
            "actor": e.actor,
            "reason": e.reason,
            "before": e.before,
            "after": e.after,
        }
        for e in data.events(run_id)
    ]
    if rows:
        st.dataframe(rows, hide_index=True, width="stretch")
    else:
        st.info("No audit events: nothing went wrong in this run.")
    if run.attributes.get("failure"):
        st.json(json.loads(run.attributes["failure"]), expanded=False)
