"""Recovery queue: paused runs — those a guard paused awaiting review (what failed, what was done,
fix, test, retry) and those an operator paused (who; resume or cancel)."""

from __future__ import annotations

import json

import streamlit as st

from omium.dashboards.console import data, views
from omium.recovery.policy import Policy

st.title("Recovery queue")
# What the last action did, said once on the refreshed page (which no longer offers its buttons).
if flash := st.session_state.pop("recovery_flash", None):
    getattr(st, flash[0])(flash[1])
reviewer = st.text_input("Reviewing as", value="on-call", key="recovery_reviewer")
queue = data.paused()
if not queue.height:
    st.success("No run is waiting for a review or paused by an operator.")
    st.stop()
# A run an operator paused waits for an operator, not for a review of a failure.
by_operator = {r["run_id"]: r["paused_by"] for r in queue.iter_rows(named=True) if not r["awaiting"]}
st.caption(
    f"{queue.height - len(by_operator)} run(s) awaiting review, {len(by_operator)} paused by an operator"
)
failures = {r["run_id"]: json.loads(r["failure"] or "{}") for r in queue.iter_rows(named=True)}
st.dataframe(
    [
        {
            "run": r["run_id"],
            "workflow": r["workflow"],
            "awaiting": r["awaiting"] or "resume",
            "paused by": f"operator {r['paused_by']}" if r["run_id"] in by_operator else "guard",
            "trigger": failures[r["run_id"]].get("trigger", ""),
            "what failed": failures[r["run_id"]].get("message", ""),
            "paused at": r["updated_at"],
        }
        for r in queue.iter_rows(named=True)
    ],
    hide_index=True,
    width="stretch",
)


def done(kind: str, message: str) -> None:
    """After an action: refresh the page (the run has left the queue) and say what was done."""
    st.session_state["recovery_flash"] = (kind, message)
    data.paused.clear()
    st.rerun()


def open_run(run_id: str) -> None:
    """A link to the run's detail page."""
    st.page_link(
        "app_pages/run_detail.py",
        label="Open the run",
        icon=":material/search:",
        query_params={"run": run_id},
    )


def operator_paused(run_id: str, workflow: str, operator: str) -> None:
    """A run an operator paused: who, and Resume or Cancel (the operator actions Run detail offers,
    through the control API, audited as what they are)."""
    with st.container(border=True):
        st.markdown(f":material/pause_circle: **{run_id}** · {workflow} · paused by {operator}")
        st.info(
            f"Paused by {operator}: nothing failed and it holds no process. Resume continues it from its "
            "recording (no completed call runs again); Cancel ends it for good."
        )
        resume, cancel = st.columns(4)[:2]
        try:
            if resume.button("Resume", key=f"resume_{run_id}", type="primary"):
                done("success", data.run_action(run_id, "resume", actor=reviewer)["message"])
            if cancel.button("Cancel run", key=f"cancel_{run_id}"):
                done("warning", data.run_action(run_id, "cancel", actor=reviewer)["message"])
        except data.ControlError as refused:  # the run moved on since the page was drawn
            st.error(str(refused))
        open_run(run_id)


# One run is reviewed at a time: the page does the same work however long the queue is.
ids = queue["run_id"].to_list()
wanted = st.query_params.get("run", "")
chosen = st.selectbox("Review", ids, index=ids.index(wanted) if wanted in ids else 0, key="recovery_run")
for row in queue.filter(queue["run_id"] == chosen).iter_rows(named=True):
    run_id = row["run_id"]
    if run_id in by_operator:
        operator_paused(run_id, row["workflow"], by_operator[run_id])
        continue
    failure = failures[run_id]
    policy = Policy.from_json(row["policy"]) if row["policy"] else Policy()
    with st.container(border=True):
        st.markdown(
            f":material/pause_circle: **{run_id}** · {row['workflow']} · {failure.get('trigger', '?')} · "
            f"awaiting {row['awaiting']}"
        )
        cause = views.root_cause(run_id)
        st.markdown(
            f"**What failed:** {failure.get('message', '')} (at step #{failure.get('position', '?')}, "
            f"agent `{failure.get('agent', '')}`)"
        )
        if cause is not None and (cause.expected or cause.actual):
            st.markdown(f"**Expected** `{cause.expected or '—'}` · **actual** `{cause.actual or '—'}`")
        actions = [e for e in data.events(run_id) if e.attributes.get("incident") == row["incident"]]
        st.markdown("**Automatic actions:** " + " → ".join(e.kind for e in actions))
        if cause is not None:
            st.markdown("**Dependency chain:**")
            for link in cause.chain:
                st.markdown(f"- {link}")
        agent = failure.get("agent", "")
        edits: dict[str, str] = {}
        invalid = False  # an edit that cannot be read: nothing is tested or retried without it
        if row["awaiting"] == "review" and agent:
            if "prompt" in policy.allowed_edits:
                prompt = st.text_area(
                    f"{agent}.prompt", value=views.current_prompt(run_id, agent), key=f"prompt_{run_id}"
                )
                if prompt != views.current_prompt(run_id, agent):
                    edits[f"{agent}.prompt"] = prompt
            if "constraints" in policy.allowed_edits:
                constraints = st.text_input(
                    f"{agent}.constraints (JSON, optional)", key=f"constraints_{run_id}"
                )
                if constraints.strip():
                    try:
                        edits[f"{agent}.constraints"] = json.loads(constraints)
                    except ValueError:
                        invalid = True
                        st.error(
                            'constraints must be JSON, e.g. {"apr": {"min": 2.5, "max": 8.5}}: '
                            "fix them (or clear the field) to test or retry"
                        )
            st.caption(
                f"Editable under {policy.source}: {', '.join(policy.allowed_edits) or 'nothing'}; "
                f"forbidden: {', '.join(policy.forbidden_edits) or 'nothing'}"
            )
        buttons = st.columns(4)
        try:
            if buttons[0].button(
                "Test fix", key=f"test_{run_id}", disabled=row["awaiting"] != "review" or invalid
            ):
                with st.spinner("a worker is testing the fix on the failed step…"):
                    queued = data.command(run_id, "test_fix", edits=edits, reviewer=reviewer)
                    result = data.wait_for(run_id, queued["command_id"])
                if result.get("passed"):
                    st.success(f"Test fix passed: {result.get('message')}")
                else:
                    st.error(f"Test fix failed: {result.get('message') or result.get('error')}")
            label = "Approve" if row["awaiting"] == "approval" else "Retry from checkpoint"
            if buttons[1].button(label, key=f"retry_{run_id}", type="primary", disabled=invalid):
                data.review(run_id, "approve", edits, reviewer, reason="approved in the console")
                done(
                    "success",
                    f"{run_id} approved: queued to resume from {row['checkpoint'] or 'where it stopped'}",
                )
            # Checkpoints in run order (a name reached twice counts where it was last), the latest
            # one preselected: the last consistent state before the failure.
            order: dict[str, int] = {}
            for mark in sorted(data.checkpoints(run_id), key=lambda c: c.seq):
                order.pop(mark.name, None)
                order[mark.name] = mark.seq
            marks = list(order)
            target = buttons[2].selectbox(
                "Rollback to",
                marks,
                index=len(marks) - 1 if marks else None,
                key=f"target_{run_id}",
                label_visibility="collapsed",
            )
            if buttons[2].button("Rollback", key=f"rollback_{run_id}", disabled=not marks or invalid):
                data.command(run_id, "retry", checkpoint=target, edits=edits, reviewer=reviewer)
                done("success", f"{run_id}: rollback to {target} and retry queued")
            if buttons[3].button("Reject", key=f"reject_{run_id}"):
                data.review(run_id, "reject", {}, reviewer, reason="rejected in the console")
                done("warning", f"{run_id} rejected")
        except data.ControlError as refused:
            st.error(str(refused))
        open_run(run_id)
