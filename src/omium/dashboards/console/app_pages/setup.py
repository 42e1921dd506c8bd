"""Setup: workflows and agents detected, their checkpoints, and their policies (validated inline)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from omium.dashboards.console import data
from omium.errors import ConfigError
from omium.recovery.policy import Policy

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "company_x" / "policy.yaml"

st.title("Setup")
workflows, agents, marks = data.catalogue()
if not workflows.height:
    st.info("No workflow has run yet.")
for row in workflows.iter_rows(named=True):
    with st.expander(f"{row['workflow']} · {row['runs']:,} runs", expanded=True):
        mine = agents.filter(agents["workflow"] == row["workflow"])
        st.markdown("**Agents:** " + ", ".join(f"`{a}`" for a in mine["agent"].to_list()))
        ordered = marks.filter(marks["workflow"] == row["workflow"])
        st.markdown("**Checkpoints:** " + " → ".join(f"`{c}`" for c in ordered["checkpoint"].to_list()))

st.subheader("Policy")
text = st.text_area(
    "Policy YAML", value=EXAMPLE.read_text() if EXAMPLE.exists() else "", height=360, key="policy_text"
)
if st.button("Validate", key="policy_validate"):
    try:
        policy = Policy.from_yaml(text, source="policy.yaml")
    except ConfigError as error:
        st.error(str(error))
    else:
        triggers = ", ".join(k for k, v in policy.triggers.items() if v) or "none"
        st.success(
            f"valid — triggers: {triggers}; retries: {policy.retry.max_retries}; "
            f"edits allowed: {', '.join(policy.allowed_edits)}"
        )
