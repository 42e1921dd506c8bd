"""Replay: verify a recorded run, or fork it at a checkpoint with overrides and compare the branches."""

from __future__ import annotations

import streamlit as st

from omium.dashboards.console import data, views
from omium.sdk.branching import parse_overrides

st.title("Replay and fork")
run = views.choose_run("Run", "replay_run")
run_id = run.run_id
marks = sorted({c.name for c in data.checkpoints(run_id)})
try:
    if st.button("Replay and verify", key="replay_verify"):
        with st.spinner("replaying from the recording…"):
            queued = data.command(run_id, "replay")
            result = data.wait_for(run_id, queued["command_id"])
        (st.success if result.get("identical") else st.error)(result.get("summary") or result.get("error"))
    st.subheader("Fork")
    checkpoint = st.selectbox("From checkpoint", marks, key="fork_checkpoint")
    overrides = st.text_area("Overrides, one AGENT.FIELD=VALUE per line", key="fork_overrides")
    if st.button("Fork and run", key="fork_go", disabled=not marks):
        changes = parse_overrides([line for line in overrides.splitlines() if line.strip()])
        with st.spinner("forking…"):
            queued = data.command(run_id, "fork", checkpoint=checkpoint, overrides=changes)
            result = data.wait_for(run_id, queued["command_id"])
        st.session_state["compare"] = result.get("fork", "")  # compare the branch below
        st.success(f"fork {result.get('fork')} {result.get('status', result.get('error', ''))}")
except (data.ControlError, Exception) as refused:  # a bad override is the user's to fix
    st.error(str(refused))
branch = st.text_input("Compare with run", key="compare")
if branch and data.run(branch) is not None:
    left = {s.position: s for s in data.steps(run_id)}
    right = {s.position: s for s in data.steps(branch)}
    rows = [
        {
            "position": p,
            "call": (left.get(p) or right[p]).name,
            run_id: left[p].status if p in left else "",
            branch: right[p].status if p in right else "",
            "same output": p in left and p in right and left[p].output_hash == right[p].output_hash,
        }
        for p in sorted(set(left) | set(right))
    ]
    st.dataframe(rows, hide_index=True, width="stretch")
