"""Trace: the spans of a trace (``?trace=ID``) or of an Omium run (``?run=ID``) as a tree and a
waterfall, and one span in detail (``&span=ID``): its conversation, tool call, tokens, cost, events
and attributes, with links between an Omium step and its span."""

from __future__ import annotations

import json
from datetime import timedelta

import polars as pl
import streamlit as st

from omium.dashboards.console import data
from omium.dashboards.console import trace_views as tv

st.title("Trace")
asked = st.query_params.get("trace", "") or st.query_params.get("run", "")
wanted = st.text_input("Trace id or Omium run id", value=asked, key="trace_id").strip()
if not wanted:
    st.info("Open a run or trace from Runs, or paste a trace id or an Omium run id.")
    st.stop()
# One query: the id is tried as a trace id and as an Omium run id.
spans = data.trace_spans(trace=wanted, run=wanted)
if not spans.height:
    st.warning(f"No spans for {wanted!r}: no trace or Omium run has that id (or its spans have not landed).")
    st.stop()
st.query_params["trace" if "trace" in st.query_params else "run"] = wanted
tree = tv.span_tree(spans).with_columns(pl.Series("cost_usd", tv.span_costs(spans), dtype=pl.Float64))
rows = list(tree.iter_rows(named=True))
started = min(r["started"] for r in rows)
ended = max(r["started"] + timedelta(milliseconds=r["duration_ms"]) for r in rows)
errors = int(tree["error"].sum())
costs = [c for c in tree["cost_usd"].to_list() if c is not None]
run_ids = sorted({r for r in tree["run_id"].to_list() if r})
sessions = sorted({s for s in tree["session"].to_list() if s})
metrics = st.columns(6)
metrics[0].metric("Spans", f"{tree.height:,}")
metrics[1].metric("Traces", f"{tree['trace_id'].n_unique():,}")
metrics[2].metric("Duration", f"{(ended - started).total_seconds():,.2f} s")
metrics[3].metric(
    "Tokens in / out", f"{int(tree['input_tokens'].sum()):,} / {int(tree['output_tokens'].sum()):,}"
)
metrics[4].metric("Cost", f"${sum(costs):.6f}" if costs else "unknown")
metrics[5].metric("Errors", f"{errors}")
st.caption(f"Started {tv.local(started)} (local time)")
for run_id in run_ids:
    st.page_link(
        "app_pages/run_detail.py", label=f"Omium run {run_id}: run detail", query_params={"run": run_id}
    )
for session in sessions:
    st.page_link(
        "app_pages/session.py",
        label=f"Session {session}: its runs in order",
        query_params={"session": session},
    )

by_id = {r["span_id"]: r for r in rows}
# The span asked for (by id, or as an Omium step), else the first failed one, else the first
# model call, else the root.
default = st.query_params.get("span", "")
step = st.query_params.get("step", "")
if default not in by_id and step.lstrip("-").isdigit():  # an Omium step's span (from Run detail)
    default = next((r["span_id"] for r in rows if r["step_index"] == int(step)), "")
if default not in by_id:
    failed = [r["span_id"] for r in rows if r["error"]]
    calls = [r["span_id"] for r in rows if r["input_tokens"] or r["output_tokens"]]
    default = (failed or calls or [rows[0]["span_id"]])[0]

# The waterfall draws WINDOW spans at a time (a browser draws a few hundred bars slowly), opening on
# the window that holds the span shown below; all spans are in the span list.
WINDOW = 100
windows = list(range(0, tree.height, WINDOW))
offset = 0
if len(windows) > 1:
    position = list(by_id).index(default)
    offset = st.selectbox(
        f"Waterfall: {tree.height:,} spans in tree order, {WINDOW} at a time",
        windows,
        index=position // WINDOW,
        format_func=lambda o: f"spans {o + 1:,} to {min(o + WINDOW, tree.height):,}",
        key=f"trace_window_{wanted}",
    )
st.altair_chart(tv.waterfall(tree, WINDOW, offset), width="stretch")
chosen_id = st.selectbox(
    "Span",
    list(by_id),
    index=list(by_id).index(default),
    format_func=lambda s: tv.label(by_id[s]),
    key="trace_span",
)
st.query_params["span"] = chosen_id
span = by_id[chosen_id]
attributes = tv.attributes_of(span["attributes"])

left, right = st.columns([2, 3])
with left:
    st.subheader(span["name"])
    facts = {
        "status": f"error: {span['status_message']}" if span["error"] else "ok",
        "started": tv.local(span["started"]),
        "duration": f"{span['duration_ms']:,.2f} ms",
        "agent": span["agent"],
        "operation": span["operation"],
        "tool": span["tool"],
        "model": " / ".join(x for x in (span["provider"], span["model"]) if x),
        "tokens": (
            f"{span['input_tokens']:,} in ({span['cached_tokens']:,} cached) · {span['output_tokens']:,} out"
            if span["input_tokens"] or span["output_tokens"]
            else ""
        ),
        "cost": f"${span['cost_usd']:.6f}" if span["cost_usd"] is not None else "",
        "service": span["service"],
        "scope": span["scope"],
        "trace": span["trace_id"],
        "span": span["span_id"],
    }
    st.markdown("\n".join(f"- **{k}**: {v}" for k, v in facts.items() if v))
    if span["run_id"] and span["step_index"] >= 0:
        st.page_link(
            "app_pages/run_detail.py",
            label=f"Omium step #{span['step_index']} of run {span['run_id']}",
            query_params={"run": span["run_id"], "step": str(span["step_index"])},
            icon=":material/link:",
        )
    events = tv.events_table(span["events"])
    if events:
        st.markdown("**Events**")
        st.dataframe(events, hide_index=True, width="stretch")
    with st.expander("Attributes"):
        st.json(attributes, expanded=True)
with right:
    messages = tv.conversation(attributes, span["logs"])
    if messages:
        st.markdown("**Conversation**")
        answered = False
        for message in messages:
            if message.output and not answered:
                st.caption("response")
                answered = True
            avatar = {"tool": ":material/build:", "system": ":material/settings:"}.get(message.role)
            with st.chat_message(message.role, avatar=avatar):
                if message.role not in ("user", "assistant"):
                    st.caption(message.role)
                if message.text:
                    st.markdown(message.text)
                for name, arguments in message.tool_calls:
                    st.caption(f"calls tool {name}")
                    st.code(arguments, language="json")
    elif span["input_content"] or span["output_content"]:
        # A tool call, a chain step: what went in and what came out.
        for title, content in (("Input", span["input_content"]), ("Output", span["output_content"])):
            if content:
                st.markdown(f"**{title}**" + (f" of tool {span['tool']}" if span["tool"] else ""))
                try:
                    st.json(json.loads(content), expanded=True)
                except ValueError:
                    st.code(content, language=None, wrap_lines=True)
    else:
        st.info("This span carries no messages or content.")
